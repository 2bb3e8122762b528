//! `luciole events`: what the outbox holds (events not yet acknowledged by
//! the broker), for installers.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use luciole::config;
use luciole::outbox::Outbox;

pub fn run(config: &Path, all: bool, json: bool) -> anyhow::Result<ExitCode> {
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
    if json {
        let mut doc = serde_json::json!({
            "path": outbox.path(),
            "summary": summary,
        });
        if all {
            let held = outbox.held().into_iter().collect::<Result<Vec<_>, _>>()?;
            doc["events"] = serde_json::to_value(held)?;
        }
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{}: {} event(s), {} bytes ({} on disk, limit {})",
        outbox.path().display(),
        summary.count,
        summary.bytes,
        summary.size_on_disk,
        summary.max_bytes
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
    for bad in &summary.unreadable {
        writeln!(
            out,
            "unreadable: id {}: {} (set aside when the daemon next starts)",
            bad.id, bad.reason
        )?;
    }
    if !summary.set_aside.is_empty() {
        writeln!(
            out,
            "set aside (unreadable, reported): ids {:?}",
            summary.set_aside
        )?;
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
