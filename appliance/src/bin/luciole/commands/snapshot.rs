//! `luciole snapshot`: one picture for an installer aiming the camera and
//! checking lines on site, made so that nobody in it can be recognised.
//!
//! It reads a few frames from the configured source (to see what moves),
//! fills the privacy masks in each as the pipeline does, runs the
//! configured detector on the last one (down to the tracker's low score),
//! pixelates every detection (also those standing in a mask) and every
//! moving region in coarse blocks,
//! draws the masks, zones, counting lines and calibration points
//! ([`luciole::privacy::snapshot`]), and writes one PNG readable by its
//! owner only (0600). It needs `[detect]`: without a detector a person
//! standing still would not be pixelated.

use std::collections::VecDeque;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use luciole::capture::{self, FrameLayout};
use luciole::config;
use luciole::convert::{Converter, RgbImage};
use luciole::detect::Detection;
use luciole::motion::{MotionGate, MotionSettings};
use luciole::privacy::mask::{self, Masker};
use luciole::privacy::snapshot::{self, Overlay, Regions, BLOCK};
use luciole::shutdown::Shutdown;
use serde::Serialize;

/// Frames whose motion is pixelated: the last one and the two before it.
const MOTION_FRAMES: usize = 3;

/// One detection of the snapshot's frame.
#[derive(Debug, Serialize)]
struct Found {
    #[serde(flatten)]
    detection: luciole::detect::Detection,
    /// Standing in a mask: pixelated, not drawn, never tracked.
    in_mask: bool,
}

/// What `snapshot` prints when it is done.
#[derive(Debug, Serialize)]
struct SnapshotSummary<'a> {
    out: &'a Path,
    width: u32,
    height: u32,
    frames: u64,
    /// What the detector found on the last frame, all pixelated.
    detections: Vec<Found>,
    /// Side of the pixelation blocks, and how many were pixelated.
    block: u32,
    pixelated_blocks: usize,
    masks: usize,
    lines: usize,
    zones: usize,
    calibration_points: usize,
}

pub fn run(config: &Path, frames: u64, out: &Path) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::from_signals().context("installing signal handlers")?;
    let settings = config::load(config)?;
    let Some(detect) = settings.detector() else {
        anyhow::bail!(
            "{}: no [detect] section: a snapshot pixelates the people and vehicles the model finds, so it needs one (detect.model)",
            config.display()
        );
    };
    let mut detector = luciole::detect::open(&detect)?;
    let mut source = capture::open(&settings.camera, &shutdown)?;
    let mut masker = Masker::new(&settings.privacy.masks);
    let mut gate = MotionGate::keeping_moving(MotionSettings {
        enabled: true,
        ..settings.motion.clone()
    });
    let mut recent: VecDeque<(u32, u32, Vec<bool>)> = VecDeque::new();
    let mut last: Option<(Vec<u8>, FrameLayout)> = None;
    let mut seen = 0u64;
    let mut failure = None;
    while seen < frames && !shutdown.requested() {
        let mut got = None;
        let more = source.next_frame(&mut |f| {
            let mut data = f.data.to_vec();
            let mut layout = f.layout;
            let masked = match &mut masker {
                Some(masker) => masker.apply(&mut data, &mut layout),
                None => Ok(()),
            };
            got = Some((masked, data, layout, f.timestamp, f.sequence));
        })?;
        if !more {
            break;
        }
        let Some((masked, data, layout, timestamp, sequence)) = got else {
            continue;
        };
        if let Err(err) = masked {
            tracing::warn!(sequence, "frame skipped: {err}");
            failure = Some(err.to_string());
            continue;
        }
        let frame = capture::FrameRef {
            data: &data,
            layout,
            sequence,
            timestamp,
            stream: 0,
        };
        gate.check(&frame, timestamp);
        let (w, h, moving) = gate.moving();
        recent.push_back((w, h, moving.to_vec()));
        if recent.len() > MOTION_FRAMES {
            recent.pop_front();
        }
        last = Some((data, layout));
        seen += 1;
    }
    let Some((data, layout)) = last else {
        anyhow::bail!(
            "{}: no frame could be read{}",
            settings.camera.describe(),
            failure.map(|f| format!(" ({f})")).unwrap_or_default()
        );
    };
    let frame = capture::FrameRef {
        data: &data,
        layout,
        sequence: seen,
        timestamp: std::time::Duration::ZERO,
        stream: 0,
    };
    let mut detections = Vec::new();
    detector
        .detect(&frame, &mut detections)
        .context("detecting on the snapshot's frame")?;
    // Everyone found is pixelated, also those standing in a mask: part of
    // them may show above or beside it. Only those outside are drawn.
    let found: Vec<Found> = detections
        .iter()
        .map(|&detection| Found {
            detection,
            in_mask: mask::covers(&settings.privacy.masks, detection.foot()),
        })
        .collect();
    let drawn: Vec<Detection> = found
        .iter()
        .filter(|f| !f.in_mask)
        .map(|f| f.detection)
        .collect();
    let mut image = RgbImage::default();
    Converter::new()
        .to_rgb(&frame, &mut image)
        .context("converting the snapshot's frame")?;

    let mut regions = Regions::new(image.width, image.height);
    for f in &found {
        regions.add_detection(&f.detection);
    }
    for (w, h, moving) in &recent {
        regions.add_moving(*w, *h, moving);
    }
    let pixelated_blocks = snapshot::pixelate(&mut image, &regions);
    let analytics = &settings.analytics;
    snapshot::draw(
        &mut image,
        &Overlay {
            lines: &analytics.lines,
            zones: &analytics.zones,
            calibration: &analytics.calibration_points,
            masks: &settings.privacy.masks,
            detections: &drawn,
            caption: format!(
                "{}/{} {} - people, vehicles and movement pixelated, masks filled",
                settings.device.site,
                settings.device.device,
                luciole::events::rfc3339_ms(luciole::events::now_ms())
            ),
        },
    );
    super::write_png(out, &image)?;
    tracing::warn!(
        out = %out.display(),
        "wrote an installer snapshot (pixelated) to local disk; delete it when done"
    );
    let summary = SnapshotSummary {
        out,
        width: image.width,
        height: image.height,
        frames: seen,
        detections: found,
        block: BLOCK,
        pixelated_blocks,
        masks: settings.privacy.masks.len(),
        lines: analytics.lines.len(),
        zones: analytics.zones.len(),
        calibration_points: analytics.calibration_points.len(),
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(ExitCode::SUCCESS)
}
