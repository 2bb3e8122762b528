//! The commands behind the CLI, one file each. A command reads the
//! configuration, opens what it needs (camera, detector, lamp, outbox,
//! broker) and hands it to the library; what is shared by several
//! commands (opening the pipeline's stages, the one-line summary of a
//! configuration, the end of a run) lives here.

mod capture;
mod check_config;
mod demo;
mod detect;
mod events;
pub mod fleet;
mod light;
mod manifest;
mod metrics;
mod reload;
mod remote;
mod run;
mod snapshot;
mod update;

use std::process::ExitCode;

use luciole::config::Settings;
use luciole::events::{Body, ErrorCode, ErrorReport, Sink};
use luciole::light::Lighting;
use luciole::pipeline::{self, Lamp, PipelineError, Stages, Summary};
use luciole::publish::reporter::Reporter;
use luciole::shutdown::Shutdown;

use crate::cli::Command;

/// Runs one CLI command.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::CheckConfig { file } => Ok(check_config::run(&file)),
        Command::Manifest { config } => Ok(manifest::run(&config)),
        Command::Capture {
            config,
            frames,
            out,
        } => capture::run(&config, frames, out.as_deref()),
        Command::Snapshot {
            config,
            out,
            frames,
        } => snapshot::run(&config, frames, out.as_deref()),
        Command::Run { config } => run::run(&config),
        Command::Demo {
            config,
            frames,
            broker,
            every_frame,
            json,
        } => demo::run(&config, frames, broker.as_deref(), every_frame, json),
        Command::Detect { config, images } => detect::run(&config, &images),
        Command::Events { config, all, json } => events::run(&config, all, json),
        Command::Light {
            config,
            level,
            safe,
        } => light::run(&config, level, safe),
        Command::Fleet { action } => fleet::run(*action),
        Command::Status { config, raw } => metrics::status(&config, raw),
    }
}

/// One line describing valid settings.
pub fn summary(settings: &Settings) -> String {
    let mut line = format!(
        "{}: OK: site {}, device {}, camera {}",
        settings.file.display(),
        settings.device.site,
        settings.device.device,
        settings.camera.describe()
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
    if let Some(lighting) = &settings.lighting {
        let outputs: Vec<String> = lighting
            .relay
            .iter()
            .map(|r| format!("relay {:?}", r.backend).to_lowercase())
            .chain(
                lighting
                    .dimmer
                    .iter()
                    .map(|d| format!("dimmer {:?}", d.backend).to_lowercase()),
            )
            .collect();
        line += &format!(", lighting ({})", outputs.join(", "));
    }
    line
}

/// The daemon's sink: the outbox (and broker) when configured.
pub fn reporter(
    settings: &Settings,
    inbox: Option<luciole::publish::Inbox>,
) -> anyhow::Result<Option<Reporter>> {
    let Some(outbox) = &settings.outbox else {
        return Ok(None);
    };
    Ok(Some(Reporter::start(
        outbox,
        settings.mqtt.as_ref(),
        settings.device.clone(),
        inbox,
        Some(manifest::bytes(settings)),
    )?))
}

fn error(sink: &mut dyn Sink, code: ErrorCode, message: String) {
    sink.event(Body::Error(ErrorReport { code, message }));
}

/// A `status` event of this daemon.
fn status(state: &str, detail: String) -> Body {
    Body::Status(luciole::events::Status {
        state: state.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        detail,
    })
}

/// Opens the camera, the detector and the lamp the settings describe. A
/// camera or detector that cannot be opened is an error (reported to the
/// sink too); a lamp that cannot be opened is reported and the pipeline
/// runs without it, so the pole keeps counting (its relay, wired fail-on,
/// keeps the lamp lit).
pub fn open_stages(
    settings: &Settings,
    shutdown: &Shutdown,
    sink: &mut dyn Sink,
) -> anyhow::Result<Stages> {
    let source = luciole::capture::open(&settings.camera, shutdown)
        .inspect_err(|err| error(sink, ErrorCode::CameraUnavailable, err.to_string()))?;
    stages_with(settings, source, sink)
}

/// The stages with `source` already opened: opens the detector and the
/// lamp as [`open_stages`] does.
pub fn stages_with(
    settings: &Settings,
    source: Box<dyn luciole::capture::FrameSource>,
    sink: &mut dyn Sink,
) -> anyhow::Result<Stages> {
    let detector = match settings.detector() {
        Some(detect) => {
            let detector = luciole::detect::open(&detect)
                .inspect_err(|err| error(sink, ErrorCode::DetectorUnavailable, err.to_string()))?;
            let status = detector.status();
            tracing::info!(model = %status.model, backend = status.backend.name(), accelerator = %status.accelerator, threads = status.threads, fallback = status.fallback.as_deref().unwrap_or("none"), "detector ready");
            Some(detector)
        }
        None => None,
    };
    let lamp = match &settings.lighting {
        Some(light) => match Lighting::open(light) {
            Ok(lighting) => Some(Lamp {
                lighting,
                presence: light.presence.clone(),
                feed: luciole::light::runner::LightFeed::new(),
            }),
            Err(err) => {
                tracing::error!("lighting: {err}");
                error(sink, ErrorCode::LightingUnavailable, err.to_string());
                None
            }
        },
        None => None,
    };
    Ok(Stages {
        source,
        detector,
        lamp,
    })
}

/// The last events of a run (how it ended), then the log's summary line.
pub fn finish(sink: &mut dyn Sink, outcome: &Result<Summary, PipelineError>, shutdown: &Shutdown) {
    let detail = match outcome {
        Ok(_) if shutdown.requested() => "stopping on signal".to_string(),
        Ok(_) => "source ended".to_string(),
        Err(err) => {
            // Detection and capture failures were reported as they
            // happened; anything else is reported here.
            if !matches!(
                err,
                PipelineError::Detect { .. } | PipelineError::Capture(_)
            ) {
                error(sink, ErrorCode::PipelineFailed, err.to_string());
            }
            format!("stopping: {err}")
        }
    };
    sink.event(status("stopping", detail.clone()));
    if let Ok(done) = outcome {
        let secs = done.elapsed.as_secs_f64();
        tracing::info!(
            frames = done.frames,
            inferences = done.inferences,
            skipped_by_motion = done.skipped_by_motion,
            predicted = done.predicted,
            queue_dropped = done.queue_dropped,
            dropped = done.source.dropped,
            reconnects = done.source.reconnects,
            outage_ms = done.source.outage_ms,
            fps = (done.frames as f64 / secs.max(1e-9) * 10.0).round() / 10.0,
            "pipeline finished"
        );
    }
    tracing::info!("{detail}");
}

/// Runs the pipeline with the settings' stages into `sink`.
pub fn run_pipeline(
    settings: &Settings,
    options: &pipeline::Options,
    shutdown: &Shutdown,
    sink: &mut dyn Sink,
) -> anyhow::Result<Result<Summary, PipelineError>> {
    let stages = open_stages(settings, shutdown, sink)?;
    let outcome = pipeline::run(stages, options, sink, shutdown);
    finish(sink, &outcome, shutdown);
    Ok(outcome)
}

/// A new file (or an emptied one) readable and writable by its owner only.
pub fn private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: set it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Writes `image` as a PNG readable by its owner only (fast compression:
/// `capture` writes many).
pub fn write_png(path: &std::path::Path, image: &luciole::convert::RgbImage) -> anyhow::Result<()> {
    use anyhow::Context;
    let file = private_file(path).with_context(|| format!("{}: cannot create", path.display()))?;
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        std::io::BufWriter::new(file),
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
    .with_context(|| format!("{}: cannot write PNG", path.display()))
}

/// `image` as a JPEG (quality 85): remote snapshots, which must fit an MQTT
/// message.
pub fn jpeg_bytes(image: &luciole::convert::RgbImage) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85),
        &image.data,
        image.width,
        image.height,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| format!("cannot encode the snapshot as JPEG: {e}"))?;
    Ok(out)
}

/// Where an image command writes: `out` if it lies in `privacy.images_dir`
/// (else a refusal), or `default_name` there. What is past its retention
/// there is deleted first.
pub fn image_place(
    settings: &Settings,
    out: Option<&std::path::Path>,
    default_name: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let images = &settings.privacy.images;
    let path = images.place(out, default_name)?;
    sweep_images(images);
    Ok(path)
}

/// Deletes the images past their retention, saying so in the log.
pub fn sweep_images(images: &luciole::privacy::retention::ImageSettings) {
    let swept = luciole::privacy::retention::sweep(
        &images.dir,
        images.retention,
        std::time::SystemTime::now(),
    );
    for path in &swept.deleted {
        tracing::info!(path = %path.display(), "image past privacy.image_retention_s deleted");
    }
    for failure in &swept.failed {
        tracing::error!("cannot delete an image past privacy.image_retention_s: {failure}");
    }
}

/// Records in the images folder's audit spool that `command` is writing
/// `target`, before it does: the daemon publishes it as an `audit` event.
/// When the record cannot be written, the command must write nothing.
pub fn audit_image(
    settings: &Settings,
    command: &str,
    target: &std::path::Path,
    detail: &str,
) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid().to_string())
        .unwrap_or_else(|_| "?".into());
    let record = luciole::events::Audit {
        key: None,
        role: Some("console".into()),
        command: Some(command.into()),
        outcome: "done".into(),
        code: None,
        detail: format!(
            "{} being written on the pole by uid {uid} at {} ({detail}); deleted after {} s",
            target.display(),
            luciole::events::rfc3339_ms(luciole::events::now_ms()),
            settings.privacy.images.retention.as_secs()
        ),
    };
    luciole::privacy::retention::spool(
        &settings.privacy.images.dir,
        &record,
        luciole::events::now_ms(),
    )
    .map_err(|err| anyhow::anyhow!("{err}: without its audit record nothing is written"))?;
    Ok(())
}

/// A UTC time for file names: `2026-12-04T192000.287Z`.
pub fn file_stamp(ms: u64) -> String {
    luciole::events::rfc3339_ms(ms).replace(':', "")
}
