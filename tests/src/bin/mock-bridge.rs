//! `mock-bridge`: the 1Password SCIM Bridge emulator as a process, for the demo, benchmarks and
//! manual poking. The bridge listens on `--listen`; a control API (JSON, loopback only) on
//! `--control` changes users, injects faults and shows the request log.

use clap::Parser;
use opsync_tests::bridge::{BridgeConfig, MockBridge, Mode, control_router};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "1Password SCIM Bridge emulator (opsync tests, demo and benchmarks)"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8480")]
    listen: SocketAddr,
    /// Control API address; refused unless it is a loopback address.
    #[arg(long, default_value = "127.0.0.1:8481")]
    control: SocketAddr,
    #[arg(long, default_value_t = 300)]
    users: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "/scim/v2")]
    base_path: String,
    #[arg(long)]
    page_cap: Option<usize>,
    /// Write the bridge's bearer token to this file (mode 0600) instead of printing it.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    #[arg(long, value_parser = ["normal", "google-workspace", "provisioning-off"], default_value = "normal")]
    mode: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.control.ip().is_loopback(),
        "the control API must listen on loopback"
    );
    let mode = match args.mode.as_str() {
        "google-workspace" => Mode::GoogleWorkspace { scim_status: 404 },
        "provisioning-off" => Mode::ProvisioningOff,
        _ => Mode::Normal,
    };
    let base_path = args.base_path.clone();
    let cfg = BridgeConfig {
        users: args.users,
        seed: args.seed,
        base_path: args.base_path,
        page_cap: args.page_cap,
        mode,
        addr: args.listen,
        ..BridgeConfig::default()
    };
    let bridge = Arc::new(MockBridge::start(cfg).await);
    if let Some(path) = &args.token_file {
        write_private(path, &bridge.token())?;
    }
    let control = tokio::net::TcpListener::bind(args.control).await?;
    eprintln!(
        "mock-bridge: {} users at {} (SCIM base {base_path:?}), control API at http://{}",
        args.users,
        bridge.url(),
        control.local_addr()?
    );
    let app = control_router(bridge.clone());
    axum::serve(control, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// Ctrl-C or SIGTERM (what `kill` and the demo send).
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn write_private(path: &std::path::Path, token: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path)?.write_all(token.as_bytes())?;
    Ok(())
}
