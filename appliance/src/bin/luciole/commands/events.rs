//! `luciole events`: what the outbox holds (events not yet acknowledged by
//! the broker), for installers.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use luciole::config;
use luciole::outbox::Outbox;

pub fn run(config: &Path, all: bool) -> anyhow::Result<ExitCode> {
    let settings = config::load(config)?;
    let Some(outbox) = &settings.outbox else {
        anyhow::bail!(
            "{}: no [outbox] section: this pole keeps no events",
            config.display()
        );
    };
    let outbox = Outbox::inspect(outbox, settings.device.clone())?;
    let summary = outbox.summary()?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: {} event(s), {} bytes",
        outbox.path().display(),
        summary.count,
        summary.bytes
    )?;
    for (label, event) in [("oldest", &summary.oldest), ("newest", &summary.newest)] {
        if let Some(event) = event {
            writeln!(
                out,
                "{label}: id {} at {} ({})",
                event.id,
                event.time,
                event.body.kind()
            )?;
        }
    }
    if all {
        for event in outbox.all() {
            out.write_all(&event?.encode())?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
