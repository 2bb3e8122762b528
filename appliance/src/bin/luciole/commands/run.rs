//! `luciole run --config FILE`: the daemon. The pipeline until SIGINT,
//! SIGTERM or the end of a replay; its events go to the outbox and, with
//! `[mqtt]`, to the broker; SIGHUP reloads the configuration
//! ([`super::reload`]). A failed stage ends the run with exit code 1
//! (systemd restarts the daemon).
//!
//! Unlike the other commands, the daemon waits for a camera that is not
//! there at start ([`luciole::capture::open_or_wait`]): it reports it once
//! and keeps its outbox and broker session up meanwhile. Under systemd
//! (`Type=notify`) it says when it is ready, its status, that it is alive
//! (the watchdog) and when it stops ([`luciole::pipeline::supervise`]).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use luciole::config::Settings;
use luciole::events::Sink;
use luciole::pipeline::supervise::{SdNotify, Supervisor, Unsupervised};
use luciole::pipeline::Stages;
use luciole::shutdown::Shutdown;

pub fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::with_reload().context("installing signal handlers")?;
    let mut notify = SdNotify::from_env().context("NOTIFY_SOCKET")?;
    if let Some(period) = notify.as_ref().and_then(|n| n.watchdog_period()) {
        tracing::info!(
            period_ms = period.as_millis() as u64,
            "systemd watchdog: fed while frames are analysed"
        );
    }
    let mut unsupervised = Unsupervised;
    let supervisor: &mut dyn Supervisor = match notify.as_mut() {
        Some(notify) => notify,
        None => &mut unsupervised,
    };
    super::reload::serve(config, &shutdown, supervisor)??;
    Ok(ExitCode::SUCCESS)
}

/// The daemon's stages: the camera opened or waited for, the detector and
/// lamp opened (a detector that cannot open is an error).
pub fn stages(settings: &Settings, stop: &Shutdown, sink: &mut dyn Sink) -> anyhow::Result<Stages> {
    let source = luciole::capture::open_or_wait(&settings.camera, stop);
    let mut stages = super::stages_with(settings, source, sink)?;
    if let Some(fault) = test_fault()? {
        tracing::warn!("{FAULT_VAR} is set: TEST ONLY, the detector is replaced: {fault:?}");
        let scripted = luciole::detect::fake::ScriptedDetector::empty();
        stages.detector = Some(Box::new(match fault {
            Fault::HangAfter(calls) => scripted.hanging_after(calls),
            Fault::FailFrom(frame) => scripted.failing_from(frame),
        }));
    }
    Ok(stages)
}

/// Test-only fault injection (tests/systemd/run, tests/pipeline.rs): with
/// this variable set, the daemon replaces its detector by a scripted one
/// that finds nothing and then, `hang-after:N`, hangs for good in its
/// call after N calls (a hung runtime, for the watchdog), or,
/// `fail-from:N`, fails from frame N on (a broken runtime). The shipped
/// unit never sets it, and the daemon warns loudly when it is set.
const FAULT_VAR: &str = "LUCIOLE_TEST_FAULT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    HangAfter(u64),
    FailFrom(u64),
}

fn test_fault() -> anyhow::Result<Option<Fault>> {
    let Ok(text) = std::env::var(FAULT_VAR) else {
        return Ok(None);
    };
    let bad = || anyhow::anyhow!("{FAULT_VAR}={text:?}: expected hang-after:N or fail-from:N");
    let (kind, n) = text.trim().split_once(':').ok_or_else(bad)?;
    let n: u64 = n.parse().map_err(|_| bad())?;
    match kind {
        "hang-after" => Ok(Some(Fault::HangAfter(n))),
        "fail-from" => Ok(Some(Fault::FailFrom(n))),
        _ => Err(bad()),
    }
}
