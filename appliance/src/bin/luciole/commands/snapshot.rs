//! `luciole snapshot`: one picture for an installer aiming the camera and
//! checking lines on site, made so that nobody in it can be recognised.
//!
//! It reads a few frames from the configured source (to see what moves),
//! fills the privacy masks in each as the pipeline does, runs the
//! configured detector on the last one (down to the tracker's low score),
//! and makes the picture with [`luciole::privacy::snapshot::compose`]:
//! every detection (also those standing in a mask) and every moving region
//! pixelated in coarse blocks, the masks, zones, counting lines and
//! calibration points drawn. It writes one PNG readable by its owner only
//! (0600) in `privacy.images_dir`, where it is deleted after
//! `privacy.image_retention_s`, and leaves an audit record that the daemon
//! publishes. It needs `[detect]`: without a detector a person standing
//! still would not be pixelated.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use luciole::capture::{self, FrameLayout};
use luciole::config;
use luciole::privacy::mask::Masker;
use luciole::privacy::snapshot::{self, Found, Scene, Watch, BLOCK};
use luciole::shutdown::Shutdown;
use serde::Serialize;

/// What `snapshot` prints when it is done.
#[derive(Debug, Serialize)]
struct SnapshotSummary {
    out: PathBuf,
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
    /// Seconds until the picture is deleted.
    retention_s: u64,
}

pub fn run(config: &Path, frames: u64, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::from_signals().context("installing signal handlers")?;
    let settings = config::load(config)?;
    let Some(detect) = settings.detector() else {
        anyhow::bail!(
            "{}: no [detect] section: a snapshot pixelates the people and vehicles the model finds, so it needs one (detect.model)",
            config.display()
        );
    };
    let now = luciole::events::now_ms();
    let out = super::image_place(
        &settings,
        out,
        &format!("snapshot-{}.png", super::file_stamp(now)),
    )?;
    if !out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
    {
        anyhow::bail!(
            "{}: a snapshot is a .png file (the images folder's sweep deletes only pictures)",
            out.display()
        );
    }
    let mut detector = luciole::detect::open(&detect)?;
    let mut source = capture::open(&settings.camera, &shutdown)?;
    let mut masker = Masker::new(&settings.privacy.masks);
    let mut watch = Watch::new(&settings.motion);
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
        watch.see(&frame, timestamp);
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
    let analytics = &settings.analytics;
    let shot = snapshot::compose(
        &frame,
        &detections,
        watch.maps(),
        Scene {
            lines: &analytics.lines,
            zones: &analytics.zones,
            calibration: &analytics.calibration_points,
            masks: &settings.privacy.masks,
            caption: snapshot::caption(&settings.device.site, &settings.device.device, now),
        },
    )
    .context("converting the snapshot's frame")?;
    // Audited before it is written.
    super::audit_image(
        &settings,
        "snapshot",
        &out,
        &format!(
            "{}x{}, {} detections and {} blocks pixelated",
            shot.image.width,
            shot.image.height,
            shot.found.len(),
            shot.pixelated_blocks
        ),
    )?;
    super::write_png(&out, &shot.image)?;
    luciole::privacy::retention::hand_over(&out)?;
    let retention_s = settings.privacy.images.retention.as_secs();
    tracing::warn!(
        out = %out.display(),
        "wrote an installer snapshot (pixelated) to local disk; deleted after {retention_s} s"
    );
    let summary = SnapshotSummary {
        out,
        width: shot.image.width,
        height: shot.image.height,
        frames: seen,
        detections: shot.found,
        block: BLOCK,
        pixelated_blocks: shot.pixelated_blocks,
        masks: settings.privacy.masks.len(),
        lines: analytics.lines.len(),
        zones: analytics.zones.len(),
        calibration_points: analytics.calibration_points.len(),
        retention_s,
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(ExitCode::SUCCESS)
}
