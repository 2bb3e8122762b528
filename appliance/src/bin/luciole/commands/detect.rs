//! `luciole detect`: image files through the configured detector, one JSON
//! line per detection.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use luciole::capture::{self, PixelFormat};
use luciole::config;
use serde::Serialize;

/// One line of `detect`'s output.
#[derive(Debug, Serialize)]
struct DetectionRecord<'a> {
    image: &'a Path,
    label: luciole::detect::Class,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

pub fn run(config: &Path, images: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let settings = config::load(config)?;
    let Some(detect) = &settings.detect else {
        anyhow::bail!(
            "{}: no [detect] section: add one naming the model manifest (detect.model)",
            config.display()
        );
    };
    let mut detector = luciole::detect::open(detect)?;
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
