//! The `opsync` binary: parses the command line, sets up logging and hands over to a command.
//! Everything of substance lives in `opsync-shared`; this crate only wires it.

mod cli;
mod commands;
mod exit;
mod health;
mod output;
mod telemetry;
mod verify;

use clap::Parser;
use cli::Command;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let _telemetry = telemetry::init(cli.command.default_log_level());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::INTERNAL.into();
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Verify(a) => verify::run(a).await,
            Command::Migrate(a) => commands::admin::migrate(a).await,
            Command::Setup(a) => commands::admin::setup(a).await,
            Command::Keygen => commands::admin::keygen(),
            Command::Integration(c) => commands::integration::run(c).await,
            Command::Enqueue(a) => commands::enqueue::run(a).await,
            Command::Sync(a) => commands::sync::run(a).await,
            Command::Worker(a) => commands::worker::run(a).await,
            Command::Dlq(c) => commands::dlq::run(c).await,
            Command::Report(c) => commands::report::run(c).await,
            Command::Users(a) => commands::report::users(a).await,
            Command::User(a) => commands::report::user(a).await,
        }
    });
    std::process::ExitCode::from(code)
}
