//! The pole's configuration file: one TOML file per pole.
//!
//! Loading happens in two steps, as in "parse, then validate": each section
//! is deserialised into a raw struct that mirrors the file (unknown keys are
//! refused), then [`validate`] turns the raw structs into typed
//! [`Settings`], collecting every problem instead of stopping at the first.
//! A problem names the file, the line, the key, the value and the reason:
//! `pole.toml:12 camera.fps = 0: must be between 1 and 120`.

mod locate;
mod raw;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::capture::PixelFormat;
pub use raw::{RawCamera, RawConfig, RawDevice, RawReplay};

/// Validated settings of a pole.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The file these settings came from.
    pub file: PathBuf,
    pub device: DeviceSettings,
    pub camera: CameraSettings,
}

/// Who this pole is. Both names appear in MQTT topics and events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSettings {
    pub site: String,
    pub id: String,
}

/// Where frames come from and in what shape.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraSettings {
    pub source: SourceSettings,
    /// Frame size: asked of a V4L2 camera (always set for one); a replay is
    /// scaled to it when set and keeps its own size otherwise.
    pub size: Option<(u32, u32)>,
    /// Frames per second asked of the camera; the pace of an image-folder
    /// replay.
    pub fps: u32,
    /// Pixel formats in order of preference.
    pub pixel_formats: Vec<PixelFormat>,
    /// V4L2 buffers to map.
    pub buffers: u32,
    /// How long without a frame before the camera counts as lost.
    pub frame_timeout: Duration,
    pub reconnect: Backoff,
}

/// The kind of frame source.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceSettings {
    /// A V4L2 capture device.
    V4l2 { device: PathBuf },
    /// A recording played back as if it were a camera.
    Replay(ReplaySettings),
}

/// A recording to play back.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplaySettings {
    /// The video file or image folder (resolved against the config's folder).
    pub path: PathBuf,
    pub kind: ReplayKind,
    pub pace: Pace,
    /// Start again from the beginning at the end.
    pub looping: bool,
}

/// What a replay path holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayKind {
    /// A video file, decoded by an `ffmpeg` subprocess.
    Video,
    /// A folder of PNG or JPEG images, played in file-name order.
    Images,
}

/// How fast a replay runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// At the recording's frame rate, like a live camera.
    Realtime,
    /// As fast as the consumer takes frames.
    Fast,
}

/// Exponential backoff bounds for reopening a lost camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

/// One thing wrong with a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when the problem can be placed.
    pub line: Option<usize>,
    /// Dotted key path, such as `camera.fps`.
    pub key: Option<String>,
    /// The offending value as written, when there is one.
    pub value: Option<String>,
    pub reason: String,
}

/// Errors of configuration loading.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", Invalid { path, problems })]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// Formats problems one per line, each prefixed with `file:line`.
struct Invalid<'a> {
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.path.display();
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            match problem.line {
                Some(line) => write!(f, "{name}:{line}")?,
                None => write!(f, "{name}")?,
            }
            match (&problem.key, &problem.value) {
                (Some(key), Some(value)) => write!(f, " {key} = {value}")?,
                (Some(key), None) => write!(f, " {key}")?,
                _ => {}
            }
            write!(f, ": {}", problem.reason)?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// The problems found, empty for a read error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and validates configuration text; `path` names it in problems and
/// anchors relative paths inside it.
pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    };
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(err) => {
            return Err(invalid(vec![Problem {
                line: err.span().map(|span| locate::line_of(text, span.start)),
                key: None,
                value: None,
                reason: format!("not valid TOML: {}", err.message().trim()),
            }]))
        }
    };
    let mut problems = Vec::new();
    let raw = read_sections(text, root.into_inner(), &mut problems);
    let base = path.parent().unwrap_or(Path::new("."));
    let settings = validate(
        path,
        base,
        raw,
        &mut locate::Locator::new(text),
        &mut problems,
    );
    // Sections are read in key order; report in file order.
    problems.sort_by_key(|p| p.line.unwrap_or(0));
    match settings {
        Some(settings) if problems.is_empty() => Ok(settings),
        _ => Err(invalid(problems)),
    }
}

/// Deserialises each known section on its own, so that a mistake in one
/// section does not hide the mistakes in another.
fn read_sections(text: &str, root: DeTable<'_>, problems: &mut Vec<Problem>) -> RawConfig {
    let mut raw = RawConfig::default();
    for (key, value) in root {
        let name = key.get_ref().to_string();
        let key_line = locate::line_of(text, key.span().start);
        match name.as_str() {
            "device" => raw.device = section(text, &name, value, problems),
            "camera" => raw.camera = section(text, &name, value, problems),
            other => problems.push(Problem {
                line: Some(key_line),
                key: Some(other.to_string()),
                value: None,
                reason: format!(
                    "unknown section: expected one of {}",
                    RawConfig::SECTIONS.join(", ")
                ),
            }),
        }
    }
    raw
}

fn section<T: DeserializeOwned>(
    text: &str,
    name: &str,
    value: toml::Spanned<DeValue<'_>>,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let start = value.span().start;
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(parsed) => Some(parsed),
        Err(err) => {
            let at = err.span().map(|span| span.start).unwrap_or(start);
            problems.push(Problem {
                line: Some(locate::line_of(text, at)),
                key: Some(name.to_string()),
                value: None,
                reason: err.message().trim().to_string(),
            });
            None
        }
    }
}

/// Collects problems with their place in the file.
struct Check<'a, 'b> {
    locator: &'a mut locate::Locator<'b>,
    problems: &'a mut Vec<Problem>,
}

impl Check<'_, '_> {
    fn fail(&mut self, key: &str, value: Option<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            line: self.locator.line(key),
            key: Some(key.to_string()),
            value,
            reason: reason.into(),
        });
    }

    fn range(&mut self, key: &str, value: u64, min: u64, max: u64) -> bool {
        if (min..=max).contains(&value) {
            true
        } else {
            self.fail(
                key,
                Some(value.to_string()),
                format!("must be between {min} and {max}"),
            );
            false
        }
    }

    /// Names that go into MQTT topics: letters, digits, `-`, `_`, `.`.
    fn name(&mut self, key: &str, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            self.fail(
                key,
                Some(format!("{value:?}")),
                "must be 1 to 64 characters among letters, digits, '-', '_' and '.' (it is used in MQTT topics)",
            );
        }
    }
}

/// Turns raw sections into settings, or records why it cannot.
fn validate(
    file: &Path,
    base: &Path,
    raw: RawConfig,
    locator: &mut locate::Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Settings> {
    let parse_failed = !problems.is_empty();
    let mut check = Check { locator, problems };
    let device = match raw.device {
        Some(device) => {
            check.name("device.site", &device.site);
            check.name("device.id", &device.id);
            Some(DeviceSettings {
                site: device.site,
                id: device.id,
            })
        }
        None if parse_failed => None,
        None => {
            check.fail(
                "device",
                None,
                "missing section [device] with `site` and `id`",
            );
            None
        }
    };
    let camera = match raw.camera {
        Some(camera) => validate_camera(base, camera, &mut check),
        None if parse_failed => None,
        None => {
            check.fail("camera", None, "missing section [camera]");
            None
        }
    };
    Some(Settings {
        file: file.to_owned(),
        device: device?,
        camera: camera?,
    })
}

fn validate_camera(
    base: &Path,
    raw: RawCamera,
    check: &mut Check<'_, '_>,
) -> Option<CameraSettings> {
    let before = check.problems.len();
    check.range("camera.fps", raw.fps.into(), 1, 120);
    check.range("camera.buffers", raw.buffers.into(), 2, 32);
    check.range("camera.frame_timeout_ms", raw.frame_timeout_ms, 100, 60_000);
    check.range("camera.reconnect_min_ms", raw.reconnect_min_ms, 10, 60_000);
    if check.range("camera.reconnect_max_ms", raw.reconnect_max_ms, 10, 600_000)
        && raw.reconnect_max_ms < raw.reconnect_min_ms
    {
        check.fail(
            "camera.reconnect_max_ms",
            Some(raw.reconnect_max_ms.to_string()),
            format!(
                "must not be below camera.reconnect_min_ms ({})",
                raw.reconnect_min_ms
            ),
        );
    }
    if raw.fps > 0
        && raw.frame_timeout_ms > 0
        && raw.frame_timeout_ms < 2 * 1000 / u64::from(raw.fps)
    {
        check.fail(
            "camera.frame_timeout_ms",
            Some(raw.frame_timeout_ms.to_string()),
            format!("must cover at least two frame intervals at {} fps", raw.fps),
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
    if raw.pixel_formats.is_empty() {
        check.fail(
            "camera.pixel_formats",
            Some("[]".into()),
            "must name at least one format",
        );
    }
    for name in &raw.pixel_formats {
        match name.parse::<PixelFormat>() {
            Ok(format) if pixel_formats.contains(&format) => check.fail(
                "camera.pixel_formats",
                Some(format!("{name:?}")),
                "is listed twice",
            ),
            Ok(format) => pixel_formats.push(format),
            Err(reason) => check.fail("camera.pixel_formats", Some(format!("{name:?}")), reason),
        }
    }

    let source = match raw.source.as_str() {
        "v4l2" => {
            if raw.replay.is_some() {
                check.fail(
                    "camera.replay",
                    None,
                    "only used with camera.source = \"replay\"",
                );
            }
            if !raw.device.starts_with('/') {
                check.fail(
                    "camera.device",
                    Some(format!("{:?}", raw.device)),
                    "must be an absolute device path such as /dev/video0",
                );
            }
            Some(SourceSettings::V4l2 {
                device: PathBuf::from(&raw.device),
            })
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
            Some(replay) => validate_replay(base, replay, &pixel_formats, check),
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
        (Some(SourceSettings::V4l2 { .. }), _, _) => Some((640, 480)),
        _ => None,
    };
    if check.problems.len() > before {
        return None;
    }
    Some(CameraSettings {
        source: source?,
        size,
        fps: raw.fps,
        pixel_formats,
        buffers: raw.buffers,
        frame_timeout: Duration::from_millis(raw.frame_timeout_ms),
        reconnect: Backoff {
            min: Duration::from_millis(raw.reconnect_min_ms),
            max: Duration::from_millis(raw.reconnect_max_ms),
        },
    })
}

fn validate_replay(
    base: &Path,
    raw: RawReplay,
    pixel_formats: &[PixelFormat],
    check: &mut Check<'_, '_>,
) -> Option<SourceSettings> {
    let path = base.join(&raw.path);
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
    let pace = match raw.pace.as_str() {
        "realtime" => Some(Pace::Realtime),
        "fast" => Some(Pace::Fast),
        other => {
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
        looping: raw.r#loop,
    }))
}

#[cfg(test)]
mod tests;
