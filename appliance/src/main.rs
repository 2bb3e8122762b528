//! The `luciole` binary: parses arguments, sets up logging, runs a command.

use std::process::ExitCode;

use clap::Parser;
use luciole::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = luciole::logging::init(cli.log_format, &cli.log_level) {
        eprintln!("luciole: cannot set up logging: {err}");
        return ExitCode::from(2);
    }
    match luciole::app::run_command(cli.command) {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the whole chain of causes on one line.
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}
