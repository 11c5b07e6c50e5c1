//! The `opsync` binary: parses the command line, sets up logging and hands over to a command.
//! Everything of substance lives in `opsync-shared`; this crate only wires it.

mod cli;
mod exit;
mod telemetry;
mod verify;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    telemetry::init(cli.command.default_log_level());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::INTERNAL.into();
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            cli::Command::Verify(args) => verify::run(args).await,
        }
    });
    std::process::ExitCode::from(code)
}
