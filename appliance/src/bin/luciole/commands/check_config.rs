//! `luciole check-config FILE`: load and validate a configuration with the
//! daemon's own start-up checks ([`config::load_for_daemon`]: certificates,
//! password, model files, runtime libraries; no device or network is
//! opened); print a one-line summary, or every problem
//! (`file:line key = value: reason`). A valid file may still get warnings
//! on standard error (`warning: ...`): a `tracks` data profile, a
//! published manifest without a purpose.

use std::path::Path;
use std::process::ExitCode;

use luciole::config::{self, ConfigError};

pub fn run(file: &Path) -> ExitCode {
    match config::load_for_daemon(file) {
        Ok(settings) => {
            for warning in super::manifest::warnings(&settings) {
                eprintln!("warning: {warning}");
            }
            println!("{}", super::summary(&settings));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            if let ConfigError::Invalid { problems, .. } = &err {
                eprintln!("{} problem(s) found", problems.len());
            }
            ExitCode::FAILURE
        }
    }
}
