//! The `luciole` binary: parses arguments, sets up logging, runs one
//! command. The commands (one file each in `commands/`) read the
//! configuration, open the devices and hand them to the library.

mod cli;
mod commands;
mod logging;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Held to the end: with JSON logs it keeps native libraries' stderr
    // lines flowing into the log, and forwards the last ones on drop.
    let _logging = match logging::init(cli.log_format, &cli.log_level) {
        Ok(logging) => logging,
        Err(err) => {
            eprintln!("luciole: cannot set up logging: {err}");
            return ExitCode::from(2);
        }
    };
    match commands::run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the whole chain of causes on one line.
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}
