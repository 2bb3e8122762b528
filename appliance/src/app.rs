//! The commands behind the CLI, each wiring stages for one job.
//!
//! - `check-config`: load and validate, print a summary or every problem.
//! - `capture`: frames from the configured source to PNG files, for
//!   installers; conversion runs on the capture thread straight from the
//!   driver's buffer, PNG encoding on a writer thread behind a bounded queue.
//! - `detect`: image files through the configured detector, one JSON line
//!   per detection.
//! - `run`: the daemon: the [`crate::pipeline`] until a signal; with an
//!   `[outbox]`, its events go to the outbox and, with `[mqtt]`, to the
//!   broker.
//! - `demo`: the pipeline on real footage, printing events and a table of
//!   counts.
//! - `events`: what the outbox holds, for installers.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::capture::{self, PixelFormat, SourceInfo};
use crate::cli::Command;
use crate::config::{self, ConfigError, Settings, SourceSettings};
use crate::convert::{Converter, RgbImage};
use crate::events::{Body, ErrorReport, Origin, Sink};
use crate::outbox::Outbox;
use crate::pipeline;
use crate::publish::reporter::Reporter;
use crate::shutdown::Shutdown;

/// Runs one CLI command.
pub fn run_command(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::CheckConfig { file } => Ok(check_config(&file)),
        Command::Capture {
            config,
            frames,
            out,
        } => capture_frames(&config, frames, &out),
        Command::Run { config } => run(&config),
        Command::Demo {
            config,
            frames,
            broker,
            no_motion,
            json,
        } => demo(&config, frames, broker.as_deref(), no_motion, json),
        Command::Detect { config, images } => detect_images(&config, &images),
        Command::Events { config, all } => list_events(&config, all),
        Command::Light {
            config,
            level,
            safe,
        } => crate::light::command::run(&config, level, safe),
    }
}

/// One line describing valid settings.
pub fn summary(settings: &Settings) -> String {
    let camera = &settings.camera;
    let source = match &camera.source {
        SourceSettings::V4l2 { device } => format!("v4l2 {}", device.display()),
        SourceSettings::Replay(replay) => format!("replay {}", replay.path.display()),
    };
    let size = camera
        .size
        .map(|(w, h)| format!("{w}x{h}"))
        .unwrap_or_else(|| "native size".into());
    let rate = match &camera.source {
        SourceSettings::Replay(replay) if replay.kind == config::ReplayKind::Video => {
            "at the recording's rate".to_string()
        }
        _ => format!("@ {} fps", camera.fps),
    };
    let formats: Vec<&str> = camera.pixel_formats.iter().map(|f| f.name()).collect();
    let mut line = format!(
        "{}: OK: site {}, device {}, camera {source} {size} {rate} ({})",
        settings.file.display(),
        settings.device.site,
        settings.device.id,
        formats.join(", ")
    );
    if let Some(detect) = &settings.detect {
        let model = detect
            .model
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy();
        line += &format!(
            ", detect {model} on {} {} x{}",
            detect.backend.name(),
            detect.accelerator,
            detect.threads
        );
    }
    if let Some(outbox) = &settings.outbox {
        line += &format!(", outbox {}", outbox.path.display());
    }
    if let Some(mqtt) = &settings.mqtt {
        let tls = if mqtt.tls.is_some() { "mqtts" } else { "mqtt" };
        line += &format!(", {tls}://{}:{}", mqtt.host, mqtt.port);
    }
    line
}

fn check_config(file: &Path) -> ExitCode {
    match config::load(file) {
        Ok(settings) => {
            println!("{}", summary(&settings));
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

/// FNV-1a, 64 bits: a stable fingerprint of a frame's bytes, so that
/// repeated or frozen frames can be told apart without keeping them.
pub fn fingerprint(data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in data {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Frame rate measured from capture timestamps, over each stream separately
/// (timestamps and sequence numbers restart when a camera is reopened).
#[derive(Debug, Default)]
pub struct RateMeter {
    streams: BTreeMap<u32, (Duration, Duration, u64)>,
}

impl RateMeter {
    pub fn add(&mut self, stream: u32, timestamp: Duration) {
        let entry = self
            .streams
            .entry(stream)
            .or_insert((timestamp, timestamp, 0));
        entry.1 = timestamp;
        entry.2 += 1;
    }

    /// Frames per second, or 0 when fewer than two frames share a stream.
    pub fn fps(&self) -> f64 {
        let (intervals, span) =
            self.streams
                .values()
                .fold((0u64, 0f64), |(n, s), (first, last, count)| {
                    (
                        n + count.saturating_sub(1),
                        s + last.saturating_sub(*first).as_secs_f64(),
                    )
                });
        if span > 0.0 {
            intervals as f64 / span
        } else {
            0.0
        }
    }
}

/// One line of `frames.jsonl`.
#[derive(Debug, Serialize)]
struct FrameRecord {
    index: u64,
    file: String,
    sequence: u64,
    timestamp_us: u64,
    width: u32,
    height: u32,
    format: PixelFormat,
    hash: String,
    stream: u32,
}

/// What `capture` prints when it is done.
#[derive(Debug, Serialize)]
struct CaptureSummary {
    frames: u64,
    origin: String,
    format: PixelFormat,
    width: u32,
    height: u32,
    fps_requested: f64,
    fps_negotiated: f64,
    fps_measured: f64,
    dropped: u64,
    skipped: u64,
    reconnects: u64,
    outage_ms: u64,
    out: PathBuf,
}

fn capture_frames(config: &Path, frames: u64, out: &Path) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::from_signals().context("installing signal handlers")?;
    let settings = config::load(config)?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create folder", out.display()))?;
    let mut source = capture::open(&settings.camera, &shutdown)?;
    let info: SourceInfo = source.info();
    tracing::warn!(
        out = %out.display(),
        "writing {frames} unmasked frame(s) to local disk at the installer's request; delete them when done"
    );

    // Enough queue to absorb slow PNG encoding without stalling capture,
    // bounded to about 256 MiB of frames.
    let frame_bytes = (info.layout.width as usize * info.layout.height as usize * 3).max(1);
    let capacity = (256 << 20) / frame_bytes;
    let capacity = capacity.clamp(2, 256);
    let (tx, rx) = crossbeam_channel::bounded::<(FrameRecord, RgbImage)>(capacity);
    // Written images come back for reuse: a fresh 1 MB buffer per frame
    // costs page faults that, on a small or emulated board, drop frames.
    let (recycle_tx, recycle_rx) = crossbeam_channel::bounded::<RgbImage>(capacity);
    let writer = {
        let out = out.to_owned();
        std::thread::Builder::new()
            .name("png-writer".into())
            .spawn(move || write_frames(&out, rx, recycle_tx))
            .context("starting the writer thread")?
    };

    let mut converter = Converter::new();
    let mut rate = RateMeter::default();
    let mut index = 0u64;
    let mut skipped = 0u64;
    let mut last_layout = info.layout;
    while index < frames {
        let mut image = recycle_rx.try_recv().unwrap_or_default();
        let mut converted = None;
        let mut record = None;
        let more = source.next_frame(&mut |frame| {
            converted = Some(converter.to_rgb(&frame, &mut image));
            last_layout = frame.layout;
            record = Some(FrameRecord {
                index,
                file: format!("frame-{index:06}.png"),
                sequence: frame.sequence,
                timestamp_us: frame.timestamp.as_micros() as u64,
                width: frame.layout.width,
                height: frame.layout.height,
                format: frame.layout.format,
                hash: format!("{:016x}", fingerprint(frame.data)),
                stream: frame.stream,
            });
        })?;
        if !more {
            break;
        }
        let (Some(converted), Some(record)) = (converted, record) else {
            continue;
        };
        if let Err(err) = converted {
            skipped += 1;
            tracing::warn!(sequence = record.sequence, "frame skipped: {err}");
            continue;
        }
        rate.add(record.stream, Duration::from_micros(record.timestamp_us));
        if tx.send((record, image)).is_err() {
            break; // the writer failed; its error is reported below
        }
        index += 1;
    }
    drop(tx);
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
    let stats = source.stats();
    let summary = CaptureSummary {
        frames: written,
        origin: info.origin,
        format: last_layout.format,
        width: last_layout.width,
        height: last_layout.height,
        fps_requested: info.fps_requested,
        fps_negotiated: source.info().fps_negotiated,
        fps_measured: (rate.fps() * 100.0).round() / 100.0,
        dropped: stats.dropped,
        skipped,
        reconnects: stats.reconnects,
        outage_ms: stats.outage_ms,
        out: out.to_owned(),
    };
    println!("{}", serde_json::to_string(&summary)?);
    if written < frames && !shutdown.requested() {
        tracing::warn!(
            asked = frames,
            written,
            "the source ended before the asked number of frames"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The writer thread: PNG files plus one `frames.jsonl` line each.
fn write_frames(
    out: &Path,
    rx: crossbeam_channel::Receiver<(FrameRecord, RgbImage)>,
    recycle: crossbeam_channel::Sender<RgbImage>,
) -> anyhow::Result<u64> {
    let index_path = out.join("frames.jsonl");
    let mut index = BufWriter::new(
        File::create(&index_path)
            .with_context(|| format!("{}: cannot create", index_path.display()))?,
    );
    let mut written = 0;
    for (record, image) in rx {
        let path = out.join(&record.file);
        let file =
            File::create(&path).with_context(|| format!("{}: cannot create", path.display()))?;
        let encoder = image::codecs::png::PngEncoder::new_with_quality(
            BufWriter::new(file),
            image::codecs::png::CompressionType::Fast,
            image::codecs::png::FilterType::Adaptive,
        );
        image::ImageEncoder::write_image(
            encoder,
            &image.data,
            image.width,
            image.height,
            image::ExtendedColorType::Rgb8,
        )
        .with_context(|| format!("{}: cannot write PNG", path.display()))?;
        serde_json::to_writer(&mut index, &record)?;
        index.write_all(b"\n")?;
        written += 1;
        // Full or closed: either way the buffer is simply freed.
        let _ = recycle.try_send(image);
    }
    index
        .flush()
        .with_context(|| format!("{}: cannot write", index_path.display()))?;
    Ok(written)
}

/// One line of `detect`'s output.
#[derive(Debug, Serialize)]
struct DetectionRecord<'a> {
    image: &'a Path,
    label: crate::detect::Class,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

fn detect_images(config: &Path, images: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let settings = config::load(config)?;
    let Some(detect) = &settings.detect else {
        anyhow::bail!(
            "{}: no [detect] section: add one naming the model manifest (detect.model)",
            config.display()
        );
    };
    let mut detector = crate::detect::open(detect)?;
    let status = detector.status();
    tracing::info!(
        model = %status.model,
        backend = status.backend.name(),
        accelerator = %status.accelerator,
        threads = status.threads,
        fallback = status.fallback.as_deref().unwrap_or("none"),
        "detector ready"
    );
    let mut out = std::io::stdout().lock();
    let mut detections = Vec::new();
    for (index, path) in images.iter().enumerate() {
        let rgb = image::open(path)
            .with_context(|| format!("{}: cannot read the image", path.display()))?
            .to_rgb8();
        let frame = capture::FrameRef {
            data: rgb.as_raw(),
            layout: capture::FrameLayout {
                format: PixelFormat::Rgb24,
                width: rgb.width(),
                height: rgb.height(),
                stride: rgb.width() * 3,
                yuv: capture::YuvEncoding::default(),
            },
            sequence: index as u64,
            timestamp: Duration::ZERO,
            stream: 0,
        };
        detector
            .detect(&frame, &mut detections)
            .with_context(|| format!("{}: detection failed", path.display()))?;
        for detection in &detections {
            let record = DetectionRecord {
                image: path,
                label: detection.class,
                score: detection.score,
                bbox: detection.bbox,
            };
            serde_json::to_writer(&mut out, &record)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::from_signals().context("installing signal handlers")?;
    let settings = config::load(config)?;
    tracing::info!("{}", summary(&settings));
    let mut reporter = start_reporter(&settings)?;
    let outcome = pipeline::run(
        &settings,
        &pipeline::Options::default(),
        &shutdown,
        reporter.as_mut(),
        &mut pipeline::Quiet,
    );
    close_reporter(reporter, &outcome, &shutdown);
    let done = outcome?;
    log_summary(&done);
    if shutdown.requested() {
        tracing::info!("stopping on signal");
    } else {
        tracing::info!("source ended");
    }
    Ok(ExitCode::SUCCESS)
}

/// The outbox (and publisher) of a pole whose settings have `[outbox]`.
fn start_reporter(settings: &Settings) -> anyhow::Result<Option<Reporter>> {
    let Some(outbox) = &settings.outbox else {
        return Ok(None);
    };
    let origin = Origin {
        site: settings.device.site.clone(),
        device: settings.device.id.clone(),
    };
    Ok(Some(Reporter::start(
        outbox,
        settings.mqtt.as_ref(),
        origin,
    )?))
}

/// The last events of a run: how it ended.
fn close_reporter(
    reporter: Option<Reporter>,
    outcome: &anyhow::Result<pipeline::Summary>,
    shutdown: &Shutdown,
) {
    let Some(mut reporter) = reporter else {
        return;
    };
    match outcome {
        Ok(_) => reporter.status(
            "stopping",
            if shutdown.requested() {
                "stopping on signal"
            } else {
                "source ended"
            },
        ),
        Err(err) => reporter.event(Body::Error(ErrorReport {
            code: "pipeline_failed".into(),
            message: format!("{err:#}"),
        })),
    }
    reporter.finish();
}

fn log_summary(done: &pipeline::Summary) {
    let secs = done.elapsed.as_secs_f64();
    tracing::info!(
        frames = done.frames,
        inferences = done.inferences,
        skipped_by_motion = done.skipped_by_motion,
        queue_dropped = done.queue_dropped,
        dropped = done.source.dropped,
        reconnects = done.source.reconnects,
        outage_ms = done.source.outage_ms,
        fps = (done.frames as f64 / secs.max(1e-9) * 10.0).round() / 10.0,
        "pipeline finished"
    );
}

/// `luciole demo`: the whole pipeline on real footage, for people.
fn demo(
    config: &Path,
    frames: Option<u64>,
    broker: Option<&str>,
    no_motion: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::from_signals().context("installing signal handlers")?;
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("{}: cannot read the demo configuration", config.display()))?;
    let text = match broker {
        Some(url) => {
            let (host, port) = parse_broker(url)?;
            format!("{text}\n[mqtt]\nhost = \"{host}\"\nport = {port}\ntls = false\n")
        }
        None => text,
    };
    let mut settings = config::parse(config, &text)?;
    if let SourceSettings::Replay(replay) = &settings.camera.source {
        if !replay.path.exists() {
            fetch_footage(&replay.path)?;
        }
    }
    if no_motion {
        settings.motion.enabled = false;
    }
    if settings.detect.is_none() {
        anyhow::bail!(
            "{}: the demo needs a [detect] section (the model to run)",
            config.display()
        );
    }
    tracing::info!("{}", summary(&settings));
    let mut reporter = start_reporter(&settings)?;
    let mut printer = DemoPrinter {
        json,
        out: std::io::stdout(),
    };
    let outcome = pipeline::run(
        &settings,
        &pipeline::Options { max_frames: frames },
        &shutdown,
        reporter.as_mut(),
        &mut printer,
    );
    close_reporter(reporter, &outcome, &shutdown);
    let done = outcome?;
    log_summary(&done);
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
            "queue_dropped": done.queue_dropped,
            "elapsed_s": (secs * 100.0).round() / 100.0,
            "counts": counts,
        }});
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "\n{} frames in {:.1} s ({:.1} fps): the model ran on {}, motion gating spared {}; {} dropped in the queue",
            done.frames,
            secs,
            done.frames as f64 / secs.max(1e-9),
            done.inferences,
            done.skipped_by_motion,
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

/// Runs the repository's footage fetcher when the demo's recording is
/// missing (first run).
fn fetch_footage(path: &Path) -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/assets/fetch-footage");
    if !script.is_file() {
        anyhow::bail!(
            "{}: the demo footage is missing and {} is not here to fetch it",
            path.display(),
            script.display()
        );
    }
    tracing::info!(path = %path.display(), "fetching the demo footage (Debian opencv-doc, about 96 MB)");
    let mut command = std::process::Command::new("bash");
    command.arg(&script);
    // The fetcher writes to <cache>/footage/.
    if let Some(cache) = path.parent().and_then(Path::parent) {
        command.env("LUCIOLE_CACHE", cache);
    }
    let status = command
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() || !path.exists() {
        anyhow::bail!(
            "{}: fetching the footage failed ({status}); run bash tests/assets/fetch-footage",
            path.display()
        );
    }
    Ok(())
}

/// Prints the demo's events as they happen.
struct DemoPrinter {
    json: bool,
    out: std::io::Stdout,
}

impl pipeline::Observer for DemoPrinter {
    fn event(&mut self, body: &Body) {
        let mut out = self.out.lock();
        if self.json {
            let _ = serde_json::to_writer(&mut out, body);
            let _ = out.write_all(b"\n");
            return;
        }
        let clock = |at: &str| at.get(11..21).unwrap_or(at).to_string();
        let line = match body {
            Body::Crossing(c) => format!(
                "{}  crossing  {:<12} {:<22} {:<10} track {:08x}  {:.0} px/s",
                clock(&c.at),
                c.line,
                c.direction,
                c.class,
                c.track,
                c.speed_px_s
            ),
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

/// `luciole events`: what the outbox holds.
fn list_events(config: &Path, all: bool) -> anyhow::Result<ExitCode> {
    let settings = config::load(config)?;
    let Some(outbox) = &settings.outbox else {
        anyhow::bail!(
            "{}: no [outbox] section: this pole keeps no events",
            config.display()
        );
    };
    let origin = Origin {
        site: settings.device.site.clone(),
        device: settings.device.id.clone(),
    };
    let outbox = Outbox::inspect(outbox, origin)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_measured_per_stream_so_a_reconnect_does_not_skew_it() {
        let mut meter = RateMeter::default();
        for i in 0..26 {
            meter.add(0, Duration::from_millis(1000 + i * 40));
        }
        // A second stream with a clock that restarted far earlier.
        for i in 0..11 {
            meter.add(1, Duration::from_millis(5 + i * 40));
        }
        assert!((meter.fps() - 25.0).abs() < 1e-9, "{}", meter.fps());
        assert_eq!(RateMeter::default().fps(), 0.0);
    }

    #[test]
    fn fingerprints_differ_for_different_frames() {
        assert_ne!(fingerprint(&[0, 1, 2]), fingerprint(&[0, 1, 3]));
        assert_eq!(fingerprint(b""), 0xcbf2_9ce4_8422_2325);
    }
}
