//! `luciole demo`: the README's main job. The whole pipeline on real
//! footage (vtest.avi from Debian's opencv-doc samples, which `bash
//! tests/setup` puts in the cache), printing events as they happen and a
//! table of counts per line, direction and class at the end; `--broker`
//! also publishes to a broker, by adding an `[mqtt]` section to the
//! configuration (or replacing the one it has).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use luciole::config::{self, ConfigError};
use luciole::events::{Body, Crossing, Sink};
use luciole::publish::reporter::Reporter;
use luciole::shutdown::Shutdown;

pub fn run(
    config: &Path,
    frames: Option<u64>,
    broker: Option<&str>,
    every_frame: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::from_signals().context("installing signal handlers")?;
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("{}: cannot read the demo configuration", config.display()))?;
    let text = match broker {
        Some(url) => with_broker(&text, url)
            .with_context(|| format!("{}: cannot add --broker {url}", config.display()))?,
        None => text,
    };
    let mut settings = config::parse(config, &text).map_err(footage_hint)?;
    if every_frame {
        settings.motion.enabled = false;
        settings.pace.adaptive = false;
    }
    if settings.detect.is_none() {
        anyhow::bail!(
            "{}: the demo needs a [detect] section (the model to run)",
            config.display()
        );
    }
    tracing::info!("{}", super::summary(&settings));
    let mut options = settings.pipeline_options();
    options.max_frames = frames;
    let mut printer = Printer {
        json,
        out: std::io::stdout(),
        next: super::reporter(&settings, None)?,
    };
    let outcome = super::run_pipeline(&settings, &options, &shutdown, &mut printer);
    if let Some(reporter) = printer.next.take() {
        reporter.finish();
    }
    let done = outcome??;
    let mut out = std::io::stdout().lock();
    let secs = done.elapsed.as_secs_f64();
    if json {
        let counts: Vec<serde_json::Value> = done
            .totals
            .iter()
            .map(|((line, direction, class), count)| {
                serde_json::json!({"line": line, "direction": direction, "class": class, "count": count})
            })
            .collect();
        let line = serde_json::json!({"summary": {
            "frames": done.frames,
            "inferences": done.inferences,
            "skipped_by_motion": done.skipped_by_motion,
            "predicted": done.predicted,
            "queue_dropped": done.queue_dropped,
            "elapsed_s": (secs * 100.0).round() / 100.0,
            "counts": counts,
        }});
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "\n{} frames in {:.1} s ({:.1} fps): the model ran on {}, motion gating spared {}, the tracker predicted {}; {} dropped in the queue",
            done.frames,
            secs,
            done.frames as f64 / secs.max(1e-9),
            done.inferences,
            done.skipped_by_motion,
            done.predicted,
            done.queue_dropped
        )?;
        writeln!(
            out,
            "\n{:<16} {:<24} {:<11} {:>5}",
            "line", "direction", "class", "count"
        )?;
        for ((line, direction, class), count) in &done.totals {
            writeln!(
                out,
                "{line:<16} {direction:<24} {:<11} {count:>5}",
                class.name()
            )?;
        }
        if done.totals.is_empty() {
            writeln!(out, "(no crossings)")?;
        }
        if let Some(outbox) = &settings.outbox {
            writeln!(
                out,
                "\nEvents are in the outbox {}: luciole events --config {} --all",
                outbox.path.display(),
                config.display()
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A missing recording is the demo's footage not fetched yet: say how.
fn footage_hint(err: ConfigError) -> anyhow::Error {
    let missing = err
        .problems()
        .iter()
        .any(|p| p.key.as_deref() == Some("camera.replay.path"));
    let err = anyhow::Error::new(err);
    if missing {
        err.context(
            "the demo's footage is not in the cache: `bash tests/setup` (or `bash tests/assets/fetch-footage`) fetches it (Debian's opencv-doc samples, about 96 MB)",
        )
    } else {
        err
    }
}

/// The configuration text with an `[mqtt]` section for `mqtt://HOST:PORT`
/// (plain MQTT, since the address is given explicitly): added, or put in
/// place of the file's own.
fn with_broker(text: &str, url: &str) -> anyhow::Result<String> {
    let (host, port) = parse_broker(url)?;
    let mut doc: toml_edit::DocumentMut = text.parse().context("not valid TOML")?;
    let mut mqtt = toml_edit::Table::new();
    mqtt["host"] = toml_edit::value(host);
    mqtt["port"] = toml_edit::value(i64::from(port));
    mqtt["tls"] = toml_edit::value(false);
    if let Some(old) = doc.get("mqtt").and_then(|item| item.as_table()) {
        // Keep what does not concern the address and TLS (client id,
        // topic prefix, credentials...).
        for (key, item) in old.iter() {
            if !matches!(
                key,
                "host" | "port" | "tls" | "ca_file" | "client_cert_file" | "client_key_file"
            ) {
                mqtt[key] = item.clone();
            }
        }
    }
    doc["mqtt"] = toml_edit::Item::Table(mqtt);
    Ok(doc.to_string())
}

/// `mqtt://HOST:PORT` → host and port.
fn parse_broker(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url.strip_prefix("mqtt://").ok_or_else(|| {
        anyhow::anyhow!("--broker {url:?}: expected mqtt://HOST:PORT (plain MQTT; use a config file's [mqtt] section for TLS)")
    })?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("--broker {url:?}: missing :PORT"))?;
    let port: u16 = port
        .trim_end_matches('/')
        .parse()
        .map_err(|_| anyhow::anyhow!("--broker {url:?}: {port:?} is not a port number"))?;
    if host.is_empty() || host.contains(['"', '\\', '/']) {
        anyhow::bail!("--broker {url:?}: bad host name");
    }
    Ok((host.to_string(), port))
}

/// Prints the demo's events as they happen, then hands them on (to the
/// outbox, when there is one).
struct Printer {
    json: bool,
    out: std::io::Stdout,
    next: Option<Reporter>,
}

impl Sink for Printer {
    fn event(&mut self, body: Body) {
        self.print(&body);
        if let Some(next) = &mut self.next {
            next.event(body);
        }
    }

    /// Every crossing is shown as it happens, from the pole's own data,
    /// whatever the profile publishes; it goes no further.
    fn seen(&mut self, c: &Crossing) {
        let mut out = self.out.lock();
        if self.json {
            let line = serde_json::json!({"seen": "crossing", "data": c});
            let _ = writeln!(out, "{line}");
            return;
        }
        let track = c
            .track
            .map(|t| format!("track {t:08x}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{}  crossing  {:<12} {:<22} {:<10} {track:<14} {:.0} px/s",
            clock(&c.at),
            c.line,
            c.direction,
            c.class,
            c.speed_px_s
        );
    }
}

impl Printer {
    fn print(&mut self, body: &Body) {
        let mut out = self.out.lock();
        if self.json {
            let _ = serde_json::to_writer(&mut out, body);
            let _ = out.write_all(b"\n");
            return;
        }
        let line = match body {
            Body::Flow(f) => {
                let counts: Vec<String> = f
                    .lines
                    .iter()
                    .map(|c| format!("{} {} {} {}", c.line, c.direction, c.class, c.count))
                    .collect();
                let zones: Vec<String> = f
                    .zones
                    .iter()
                    .map(|z| {
                        format!(
                            "{} {} mean {:.1} max {}",
                            z.zone, z.class, z.occupancy_mean, z.occupancy_max
                        )
                    })
                    .collect();
                format!(
                    "{}  flow      {:.0} s: {}; zones: {}",
                    clock(&f.to),
                    f.interval_s,
                    if counts.is_empty() {
                        "no crossings".into()
                    } else {
                        counts.join(", ")
                    },
                    if zones.is_empty() {
                        "empty".into()
                    } else {
                        zones.join(", ")
                    }
                )
            }
            Body::Error(e) => format!("error     {}: {}", e.code, e.message),
            Body::Fiware(v) => format!(
                "fiware    {} {}",
                v["type"].as_str().unwrap_or("?"),
                v["id"].as_str().unwrap_or("?")
            ),
            _ => return,
        };
        let _ = writeln!(out, "{line}");
    }
}

/// The time of day of an RFC 3339 time (`HH:MM:SS.s`), for the demo's lines.
fn clock(at: &str) -> &str {
    at.get(11..21).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_on_the_command_line_replaces_the_files_own_mqtt_section() {
        let text = "[device]\nsite = \"s\"\nid = \"d\"\n\n[mqtt]\nhost = \"broker.city\"\nca_file = \"ca.pem\"\ntopic_prefix = \"city\"\n\n[outbox]\npath = \"o\"\n";
        let edited = with_broker(text, "mqtt://127.0.0.1:1884").unwrap();
        let doc: toml::Table = toml::from_str(&edited).unwrap();
        let mqtt = doc["mqtt"].as_table().unwrap();
        assert_eq!(mqtt["host"].as_str(), Some("127.0.0.1"));
        assert_eq!(mqtt["port"].as_integer(), Some(1884));
        assert_eq!(mqtt["tls"].as_bool(), Some(false));
        assert!(!mqtt.contains_key("ca_file"), "{edited}");
        assert_eq!(mqtt["topic_prefix"].as_str(), Some("city"));
        assert_eq!(doc["outbox"]["path"].as_str(), Some("o"));
        let added = with_broker("[device]\nsite = \"s\"\nid = \"d\"\n", "mqtt://h:1").unwrap();
        let doc: toml::Table = toml::from_str(&added).unwrap();
        assert_eq!(doc["mqtt"]["host"].as_str(), Some("h"));
    }

    #[test]
    fn broker_addresses_other_than_mqtt_host_port_are_refused_with_the_reason() {
        for (url, reason) in [
            ("http://x:1", "expected mqtt://HOST:PORT"),
            ("mqtt://x", "missing :PORT"),
            ("mqtt://x:port", "is not a port number"),
            ("mqtt://:1883", "bad host name"),
        ] {
            let err = parse_broker(url).unwrap_err().to_string();
            assert!(err.contains(reason), "{url}: {err}");
        }
        assert_eq!(
            parse_broker("mqtt://127.0.0.1:1883/").unwrap(),
            ("127.0.0.1".into(), 1883)
        );
    }
}
