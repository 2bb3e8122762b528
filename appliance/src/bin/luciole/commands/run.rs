//! `luciole run --config FILE`: the daemon. The pipeline until SIGINT,
//! SIGTERM or the end of a replay; its events go to the outbox and, with
//! `[mqtt]`, to the broker. A failed stage ends the run with exit code 1
//! (systemd restarts the daemon).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use luciole::config;
use luciole::shutdown::Shutdown;

use super::Discard;

pub fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::from_signals().context("installing signal handlers")?;
    let settings = config::load(config)?;
    tracing::info!("{}", super::summary(&settings));
    let options = settings.pipeline_options();
    let outcome = match super::reporter(&settings)? {
        Some(mut reporter) => {
            let outcome = super::run_pipeline(&settings, &options, &shutdown, &mut reporter);
            reporter.finish();
            outcome?
        }
        None => super::run_pipeline(&settings, &options, &shutdown, &mut Discard)?,
    };
    outcome?;
    Ok(ExitCode::SUCCESS)
}
