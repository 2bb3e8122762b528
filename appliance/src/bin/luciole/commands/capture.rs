//! `luciole capture`: frames from the configured source to PNG files, for
//! installers and engineers (focus, exposure, the camera's formats).
//! Conversion runs on the capture thread straight from the driver's
//! buffer, PNG encoding on a writer thread behind a bounded queue. The
//! privacy masks (`privacy.masks`) are filled in every frame, in its own
//! pixel format as the pipeline does, before it is converted; with the
//! pole's `[detect]`, every person and vehicle the detector finds and
//! every moving region is then pixelated as in a snapshot (without
//! `[detect]`, a camera check on a bench, only the masks are filled, and
//! the command says so). It writes only in `privacy.images_dir` (deleted
//! after `privacy.image_retention_s`), makes its files readable by their
//! owner only (0600) and leaves an audit record that the daemon publishes.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use luciole::capture::{self, PixelFormat, SourceInfo};
use luciole::config;
use luciole::convert::{Converter, RgbImage};
use luciole::privacy::mask::Masker;
use luciole::privacy::snapshot::{self, Watch, MOTION_FRAMES};
use luciole::shutdown::Shutdown;
use serde::Serialize;

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
    /// Whether people and movement were pixelated (the pole has
    /// `[detect]`), and how many blocks in all.
    pixelated: bool,
    pixelated_blocks: usize,
}

pub fn run(config: &Path, frames: u64, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::from_signals().context("installing signal handlers")?;
    let settings = config::load(config)?;
    let out = super::image_place(
        &settings,
        out,
        &format!("capture-{}", super::file_stamp(luciole::events::now_ms())),
    )?;
    let out = out.as_path();
    let mut detector = match settings.detector() {
        Some(detect) => Some(luciole::detect::open(&detect)?),
        None => None,
    };
    let mut source = capture::open(&settings.camera, &shutdown)?;
    // Audited before anything is written.
    super::audit_image(
        &settings,
        "capture",
        out,
        &format!(
            "up to {frames} frames, {} masks filled, {}",
            settings.privacy.masks.len(),
            if detector.is_some() {
                "people, vehicles and movement pixelated"
            } else {
                "nobody pixelated (no [detect])"
            }
        ),
    )?;
    settings.privacy.images.make_dirs(out)?;
    let info: SourceInfo = source.info();
    let mut masker = Masker::new(&settings.privacy.masks);
    if detector.is_some() {
        tracing::warn!(
            out = %out.display(),
            masks = settings.privacy.masks.len(),
            "writing {frames} frame(s) to local disk at the installer's request: masks filled, people, vehicles and movement pixelated"
        );
    } else {
        tracing::warn!(
            out = %out.display(),
            masks = settings.privacy.masks.len(),
            "writing {frames} frame(s) to local disk at the installer's request: no [detect], so only the privacy masks are filled and nobody is pixelated (a camera check); on a street, use a configuration with [detect]"
        );
    }

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
    let mut scratch = Vec::new();
    let mut watch = Watch::new(&settings.motion);
    let mut detections = Vec::new();
    let mut pixelated = 0usize;
    let mut rate = RateMeter::default();
    let mut index = 0u64;
    let mut skipped = 0u64;
    let mut last_layout = info.layout;
    while index < frames {
        let mut image = recycle_rx.try_recv().unwrap_or_default();
        let mut converted = None;
        let mut record = None;
        let more = source.next_frame(&mut |frame| {
            // Masked in the frame's own format, as the pipeline does, on a
            // copy (the driver's buffer is read-only).
            let masked = match &mut masker {
                Some(masker) => {
                    scratch.clear();
                    scratch.extend_from_slice(frame.data);
                    let mut layout = frame.layout;
                    masker
                        .apply(&mut scratch, &mut layout)
                        .map(|()| Some(layout))
                        .map_err(|e| e.to_string())
                }
                None => Ok(None),
            };
            let view = match &masked {
                Ok(Some(layout)) => capture::FrameRef {
                    data: &scratch,
                    layout: *layout,
                    ..frame
                },
                _ => frame,
            };
            converted = Some(masked.and_then(|_| {
                converter
                    .to_rgb(&view, &mut image)
                    .map_err(|e| e.to_string())?;
                // With the pole's detector, everyone it finds and whatever
                // moved is pixelated, as in a snapshot.
                if let Some(detector) = &mut detector {
                    watch.see(&view, view.timestamp);
                    detector
                        .detect(&view, &mut detections)
                        .map_err(|e| format!("detecting: {e}"))?;
                    pixelated += snapshot::hide(&mut image, &detections, watch.maps());
                }
                Ok(())
            }));
            last_layout = frame.layout;
            record = Some(FrameRecord {
                index,
                file: format!("frame-{index:06}.png"),
                sequence: frame.sequence,
                timestamp_us: frame.timestamp.as_micros() as u64,
                width: frame.layout.width,
                height: frame.layout.height,
                format: frame.layout.format,
                // Of the bytes the PNG was made from (masked, when masks are set).
                hash: format!("{:016x}", fingerprint(view.data)),
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
        // The first frames only show the motion watch what is still: a
        // person walking is hidden from the first frame written on.
        if detector.is_some() && watch.seen() < MOTION_FRAMES as u64 {
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
        pixelated: detector.is_some(),
        pixelated_blocks: pixelated,
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
        super::private_file(&index_path)
            .with_context(|| format!("{}: cannot create", index_path.display()))?,
    );
    let mut written = 0;
    for (record, image) in rx {
        super::write_png(&out.join(&record.file), &image)?;
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
