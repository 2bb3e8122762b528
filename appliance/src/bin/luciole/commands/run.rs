//! `luciole run --config FILE`: the daemon. The pipeline until SIGINT,
//! SIGTERM or the end of a replay; its events go to the outbox and, with
//! `[mqtt]`, to the broker; SIGHUP reloads the configuration
//! ([`super::reload`]). A failed stage ends the run with exit code 1
//! (systemd restarts the daemon).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use luciole::shutdown::Shutdown;

pub fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::with_reload().context("installing signal handlers")?;
    super::reload::serve(config, &shutdown)??;
    Ok(ExitCode::SUCCESS)
}
