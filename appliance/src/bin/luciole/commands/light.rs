//! `luciole light`: drive the lamp by hand, or put it in its safe state.
//!
//! It reads only the `[lighting]` section, so a mistake elsewhere in the
//! file (say, a broken `[mqtt]` pushed remotely) cannot keep systemd's
//! `ExecStopPost=luciole light --safe` from lighting the lamp. A file
//! without `[lighting]` (a pole without a lamp) makes `--safe` a no-op that
//! succeeds, so that the unit's `ExecStopPost` does not fail on every stop.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use luciole::light::{Lighting, OutputReport};
use luciole::shutdown::Shutdown;

/// Runs `luciole light --config FILE (--level PERCENT | --safe)`.
pub fn run(config: &Path, level: Option<f64>, safe: bool) -> anyhow::Result<ExitCode> {
    if level.is_none() && safe && !has_lighting(config) {
        // systemd's ExecStopPost on a pole without a lamp: nothing to do.
        tracing::info!(
            "{}: no [lighting] section: no lamp to put in its safe state",
            config.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let settings = luciole::config::load_lighting(config)?;
    if let Some(level) = level {
        if !(0.0..=100.0).contains(&level) {
            bail!("--level {level}: must be a percentage between 0 and 100");
        }
    }
    // Signals first: a SIGTERM right after the first line must not be lost.
    let shutdown = Shutdown::from_signals().context("cannot install signal handlers")?;
    let mut lighting = Lighting::open(&settings).context("cannot open the lighting outputs")?;
    match (level, safe) {
        (Some(level), _) => {
            lighting
                .write(level / 100.0)
                .context("cannot write the level")?;
            print_report(&lighting.report())?;
            while shutdown.sleep(Duration::from_secs(3600)) {}
            tracing::info!("stopping on signal: applying the safe state");
            lighting.safe().context("cannot apply the safe state")?;
            print_report(&lighting.report())?;
        }
        (None, _) => {
            lighting.safe().context("cannot apply the safe state")?;
            print_report(&lighting.report())?;
        }
    }
    drop(lighting);
    Ok(ExitCode::SUCCESS)
}

/// Whether the file has a `[lighting]` table. A file that cannot be read
/// or parsed counts as having one, so the loader reports the problem.
fn has_lighting(config: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(config) else {
        return true;
    };
    match toml::from_str::<toml::Table>(&text) {
        Ok(table) => table.contains_key("lighting"),
        Err(_) => true,
    }
}

fn print_report(report: &OutputReport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(report)?)?;
    out.flush()?;
    Ok(())
}
