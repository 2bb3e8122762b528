//! `[camera]` and `[camera.replay]`: where frames come from and in what
//! shape.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::check::Check;
use crate::capture::{
    CameraSettings, Pace, PixelFormat, ReplayKind, ReplaySettings, SourceSettings,
};

/// `[camera]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCamera {
    /// `"v4l2"` for a camera device, `"replay"` for a recording.
    pub source: Option<String>,
    /// V4L2 device node.
    pub device: Option<String>,
    /// Frame width in pixels (V4L2 default 640; replay: the recording's own).
    pub width: Option<u32>,
    /// Frame height in pixels (V4L2 default 480; replay: the recording's own).
    pub height: Option<u32>,
    /// Frames per second asked of the camera, 1 to 120; also the pace of an
    /// image-folder replay.
    pub fps: Option<u32>,
    /// Pixel formats in order of preference: `YUYV`, `MJPG`, `NV12`, `RGB3`,
    /// `GREY`. The first one the device offers at the asked size wins.
    pub pixel_formats: Option<Vec<String>>,
    /// Memory-mapped V4L2 buffers, 2 to 32.
    pub buffers: Option<u32>,
    /// Milliseconds without a frame after which the camera counts as lost
    /// and is reopened.
    pub frame_timeout_ms: Option<u64>,
    /// First delay before reopening a lost camera, in milliseconds; doubles
    /// on each failed attempt, with random jitter.
    pub reconnect_min_ms: Option<u64>,
    /// Longest delay between reopening attempts, in milliseconds.
    pub reconnect_max_ms: Option<u64>,
    /// `[camera.replay]`: the recording, when `source = "replay"`.
    pub replay: Option<RawReplay>,
}

/// `[camera.replay]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplay {
    /// A video file (decoded by `ffmpeg`) or a folder of PNG/JPEG images.
    /// Relative paths start from the configuration file's folder; `${NAME}`
    /// is replaced by the environment variable NAME (e.g. `${HOME}`).
    pub path: String,
    /// `"realtime"` (the recording's frame rate) or `"fast"` (as fast as
    /// frames are consumed).
    pub pace: Option<String>,
    /// Start over at the end instead of stopping.
    pub r#loop: Option<bool>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

pub(super) fn validate(raw: RawCamera, check: &mut Check<'_, '_>) -> Option<CameraSettings> {
    let d = CameraSettings::default();
    let before = check.count();
    let fps = raw.fps.unwrap_or(d.fps);
    let buffers = raw.buffers.unwrap_or(d.buffers);
    let frame_timeout_ms = raw.frame_timeout_ms.unwrap_or(ms(d.frame_timeout));
    check.range("camera.fps", fps.into(), 1, 120);
    check.range("camera.buffers", buffers.into(), 2, 32);
    check.range("camera.frame_timeout_ms", frame_timeout_ms, 100, 60_000);
    let reconnect = check.backoff(
        "camera",
        (raw.reconnect_min_ms, raw.reconnect_max_ms),
        d.reconnect,
        (60_000, 600_000),
    );
    if fps > 0 && frame_timeout_ms > 0 && frame_timeout_ms < 2 * 1000 / u64::from(fps) {
        check.fail(
            "camera.frame_timeout_ms",
            Some(frame_timeout_ms.to_string()),
            format!("must cover at least two frame intervals at {fps} fps"),
        );
    }
    for (key, value, max) in [
        ("camera.width", raw.width, 7680),
        ("camera.height", raw.height, 4320),
    ] {
        if let Some(value) = value {
            if check.range(key, value.into(), 16, max) && value % 2 != 0 {
                check.fail(
                    key,
                    Some(value.to_string()),
                    "must be even (4:2:0 and 4:2:2 formats need it)",
                );
            }
        }
    }
    if raw.width.is_some() != raw.height.is_some() {
        let key = if raw.width.is_some() {
            "camera.height"
        } else {
            "camera.width"
        };
        check.fail(
            key,
            None,
            "camera.width and camera.height go together: set both or neither",
        );
    }

    let mut pixel_formats = Vec::new();
    match &raw.pixel_formats {
        None => pixel_formats = d.pixel_formats.clone(),
        Some(names) => {
            if names.is_empty() {
                check.fail(
                    "camera.pixel_formats",
                    Some("[]".into()),
                    "must name at least one format",
                );
            }
            for name in names {
                match name.parse::<PixelFormat>() {
                    Ok(format) if pixel_formats.contains(&format) => check.fail(
                        "camera.pixel_formats",
                        Some(format!("{name:?}")),
                        "is listed twice",
                    ),
                    Ok(format) => pixel_formats.push(format),
                    Err(reason) => {
                        check.fail("camera.pixel_formats", Some(format!("{name:?}")), reason)
                    }
                }
            }
        }
    }

    let source = match raw.source.as_deref().unwrap_or("v4l2") {
        "v4l2" => {
            if raw.replay.is_some() {
                check.fail(
                    "camera.replay",
                    None,
                    "only used with camera.source = \"replay\"",
                );
            }
            let device = match (&raw.device, &d.source) {
                (Some(device), _) => PathBuf::from(device),
                (None, SourceSettings::V4l2 { device }) => device.clone(),
                (None, SourceSettings::Replay(_)) => PathBuf::new(),
            };
            if !device.is_absolute() {
                check.fail(
                    "camera.device",
                    Some(format!("{:?}", device.display().to_string())),
                    "must be an absolute device path such as /dev/video0",
                );
            }
            Some(SourceSettings::V4l2 { device })
        }
        "replay" => match raw.replay {
            None => {
                check.fail(
                    "camera.replay",
                    None,
                    "camera.source = \"replay\" needs a [camera.replay] table with `path`",
                );
                None
            }
            Some(replay) => validate_replay(replay, &pixel_formats, check),
        },
        other => {
            check.fail(
                "camera.source",
                Some(format!("{other:?}")),
                "must be \"v4l2\" or \"replay\"",
            );
            None
        }
    };
    let size = match (&source, raw.width, raw.height) {
        (_, Some(w), Some(h)) => Some((w, h)),
        (Some(SourceSettings::V4l2 { .. }), _, _) => d.size,
        _ => None,
    };
    if check.count() > before {
        return None;
    }
    Some(CameraSettings {
        source: source?,
        size,
        fps,
        pixel_formats,
        buffers,
        frame_timeout: Duration::from_millis(frame_timeout_ms),
        reconnect: reconnect?,
    })
}

fn validate_replay(
    raw: RawReplay,
    pixel_formats: &[PixelFormat],
    check: &mut Check<'_, '_>,
) -> Option<SourceSettings> {
    let path = check.path("camera.replay.path", &raw.path)?;
    let kind = match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Some(ReplayKind::Images),
        Ok(_) => Some(ReplayKind::Video),
        Err(err) => {
            check.fail(
                "camera.replay.path",
                Some(format!("{:?}", raw.path)),
                format!("cannot read {}: {err}", path.display()),
            );
            None
        }
    };
    let defaults = ReplaySettings::new(path.clone(), ReplayKind::Video);
    let pace = match raw.pace.as_deref() {
        None => Some(defaults.pace),
        Some("realtime") => Some(Pace::Realtime),
        Some("fast") => Some(Pace::Fast),
        Some(other) => {
            check.fail(
                "camera.replay.pace",
                Some(format!("{other:?}")),
                "must be \"realtime\" or \"fast\"",
            );
            None
        }
    };
    if kind == Some(ReplayKind::Video) && pixel_formats.iter().all(|f| *f == PixelFormat::Mjpeg) {
        check.fail(
            "camera.pixel_formats",
            None,
            "a video replay produces YUYV, NV12, RGB3 or GREY: list at least one of them",
        );
    }
    Some(SourceSettings::Replay(ReplaySettings {
        path,
        kind: kind?,
        pace: pace?,
        looping: raw.r#loop.unwrap_or(defaults.looping),
    }))
}
