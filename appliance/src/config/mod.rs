//! The pole's configuration file: one TOML file per pole.
//!
//! Loading happens in two steps, as in "parse, then validate": each section
//! is deserialised into a raw struct that mirrors the file (unknown keys are
//! refused), then [`validate`] turns the raw structs into typed
//! [`Settings`], collecting every problem instead of stopping at the first.
//! A problem names the file, the line, the key, the value and the reason:
//! `pole.toml:12 camera.fps = 0: must be between 1 and 120`.

mod analytics;
mod lighting;
mod locate;
mod raw;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::capture::PixelFormat;
use crate::detect::{Accelerator, Backend, Class, DelegateSettings, DetectSettings};
use crate::outbox::{ledger::Limits, OutboxSettings};
use crate::publish::{session::Protocol as MqttProtocol, MqttSettings, TlsSettings};
pub use analytics::PipelineSettings;
pub use raw::{
    RawCamera, RawConfig, RawDetect, RawDevice, RawEvents, RawMqtt, RawOutbox, RawReplay,
};

/// Validated settings of a pole.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The file these settings came from.
    pub file: PathBuf,
    pub device: DeviceSettings,
    pub camera: CameraSettings,
    /// Object detection, when the file has a `[detect]` section.
    pub detect: Option<DetectSettings>,
    /// What the daemon reports (defaults when `[events]` is absent).
    pub events: EventSettings,
    /// The event store, when the file has an `[outbox]` section.
    pub outbox: Option<OutboxSettings>,
    /// The broker, when the file has an `[mqtt]` section.
    pub mqtt: Option<MqttSettings>,
    /// Tracker tuning (`[tracking]`, defaults when absent).
    pub tracking: crate::track::TrackSettings,
    /// Motion gating (`[motion]`, on by default).
    pub motion: crate::motion::MotionSettings,
    /// Zones, lines, flows (`[analytics]`, none by default).
    pub analytics: crate::analytics::AnalyticsSettings,
    /// Whether flows also go out as FIWARE entities (`analytics.fiware`).
    pub fiware: bool,
    /// Queues between threads (`[pipeline]`).
    pub pipeline: PipelineSettings,
    /// The lamp, when the file has a `[lighting]` section.
    pub lighting: Option<crate::light::LightingSettings>,
}

/// `[events]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSettings {
    /// Time between two `health` events.
    pub health_interval: Duration,
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

pub use lighting::load as load_lighting;

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
            "detect" => raw.detect = section(text, &name, value, problems),
            "events" => raw.events = section(text, &name, value, problems),
            "outbox" => raw.outbox = section(text, &name, value, problems),
            "mqtt" => raw.mqtt = section(text, &name, value, problems),
            "tracking" => raw.tracking = section(text, &name, value, problems),
            "motion" => raw.motion = section(text, &name, value, problems),
            "analytics" => raw.analytics = section(text, &name, value, problems),
            "pipeline" => raw.pipeline = section(text, &name, value, problems),
            "lighting" => raw.lighting = section(text, &name, value, problems),
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
    let detect = raw
        .detect
        .map(|detect| validate_detect(base, detect, &mut check));
    let events = validate_events(raw.events, &mut check);
    let has_outbox = raw.outbox.is_some();
    let outbox = raw
        .outbox
        .map(|outbox| validate_outbox(base, outbox, &mut check));
    if raw.mqtt.is_some() && !has_outbox && !parse_failed {
        check.fail(
            "mqtt",
            None,
            "publishing needs an [outbox] section: events wait there until the broker has them",
        );
    }
    let mqtt = raw.mqtt.map(|mqtt| {
        let (site, id) = device
            .as_ref()
            .map(|d| (d.site.as_str(), d.id.as_str()))
            .unwrap_or(("", ""));
        validate_mqtt(base, mqtt, site, id, &mut check)
    });
    let tracking = analytics::validate_tracking(
        raw.tracking,
        detect.as_ref().and_then(|d| d.as_ref()),
        &mut check,
    );
    let motion = analytics::validate_motion(raw.motion, &mut check);
    let (analytics, fiware) = analytics::validate_analytics(raw.analytics, &mut check);
    let pipeline = analytics::validate_pipeline(raw.pipeline, &mut check);
    let lighting = raw.lighting.map(|l| lighting::validate(l, &mut check));
    if let Some(Some(light)) = &lighting {
        presence_names_exist(light, &analytics, &mut check);
    }
    Some(Settings {
        file: file.to_owned(),
        tracking,
        motion,
        analytics,
        fiware,
        pipeline,
        device: device?,
        camera: camera?,
        detect: match detect {
            Some(detect) => Some(detect?),
            None => None,
        },
        events: events?,
        outbox: match outbox {
            Some(outbox) => Some(outbox?),
            None => None,
        },
        mqtt: match mqtt {
            Some(mqtt) => Some(mqtt?),
            None => None,
        },
        lighting: match lighting {
            Some(lighting) => Some(lighting?),
            None => None,
        },
    })
}

/// The lamp's presence rule names zones and lines of `[analytics]`.
fn presence_names_exist(
    light: &crate::light::LightingSettings,
    analytics: &crate::analytics::AnalyticsSettings,
    check: &mut Check<'_, '_>,
) {
    for zone in &light.presence.zones {
        if !analytics.zones.iter().any(|z| &z.name == zone) {
            check.fail(
                "lighting.presence.zones",
                Some(format!("{zone:?}")),
                "no [[analytics.zones]] has this name",
            );
        }
    }
    for line in &light.presence.lines {
        if !analytics.lines.iter().any(|l| &l.name == line) {
            check.fail(
                "lighting.presence.lines",
                Some(format!("{line:?}")),
                "no [[analytics.lines]] has this name",
            );
        }
    }
}

fn validate_events(raw: Option<RawEvents>, check: &mut Check<'_, '_>) -> Option<EventSettings> {
    let health_interval_ms = raw.map_or(60_000, |raw| raw.health_interval_ms);
    check
        .range(
            "events.health_interval_ms",
            health_interval_ms,
            100,
            86_400_000,
        )
        .then(|| EventSettings {
            health_interval: Duration::from_millis(health_interval_ms),
        })
}

fn validate_outbox(
    base: &Path,
    raw: RawOutbox,
    check: &mut Check<'_, '_>,
) -> Option<OutboxSettings> {
    let before = check.problems.len();
    let path = config_path(base, "outbox.path", &raw.path, check);
    check.range("outbox.max_bytes", raw.max_bytes, 65_536, 16 << 30);
    check.range("outbox.retention_s", raw.retention_s, 60, 30 * 86_400);
    check.range("outbox.flush_ms", raw.flush_ms, 1, 1000);
    if check.problems.len() > before {
        return None;
    }
    Some(OutboxSettings {
        path: path?,
        limits: Limits {
            max_bytes: raw.max_bytes,
            retention_ms: raw.retention_s * 1000,
        },
        flush_every: Duration::from_millis(raw.flush_ms),
    })
}

fn validate_mqtt(
    base: &Path,
    raw: RawMqtt,
    site: &str,
    device: &str,
    check: &mut Check<'_, '_>,
) -> Option<MqttSettings> {
    let before = check.problems.len();
    if raw.host.is_empty() || raw.host.contains(['/', ' ']) {
        check.fail(
            "mqtt.host",
            Some(format!("{:?}", raw.host)),
            "must be a host name or IP address (no scheme, port or path)",
        );
    }
    let protocol = match raw.protocol.as_str() {
        "3.1.1" => Some(MqttProtocol::V311),
        "5" => Some(MqttProtocol::V5),
        other => {
            check.fail(
                "mqtt.protocol",
                Some(format!("{other:?}")),
                "must be \"3.1.1\" or \"5\"",
            );
            None
        }
    };
    if raw.port == Some(0) {
        check.fail("mqtt.port", Some("0".into()), "must be between 1 and 65535");
    }
    let file = |key: &str, value: &Option<String>, check: &mut Check<'_, '_>| {
        let path = config_path(base, key, value.as_deref()?, check)?;
        if !path.is_file() {
            check.fail(
                key,
                value.as_ref().map(|v| format!("{v:?}")),
                format!("{}: no such file", path.display()),
            );
        }
        Some(path)
    };
    let ca_file = file("mqtt.ca_file", &raw.ca_file, check);
    let cert = file("mqtt.client_cert_file", &raw.client_cert_file, check);
    let key = file("mqtt.client_key_file", &raw.client_key_file, check);
    let password_file = file("mqtt.password_file", &raw.password_file, check);
    let tls = if raw.tls {
        if raw.ca_file.is_none() {
            check.fail(
                "mqtt.ca_file",
                None,
                "TLS needs the CA that signed the broker's certificate; set mqtt.ca_file (or mqtt.tls = false for a plaintext broker)",
            );
        }
        if raw.client_cert_file.is_some() != raw.client_key_file.is_some() {
            check.fail(
                "mqtt.client_key_file",
                None,
                "mqtt.client_cert_file and mqtt.client_key_file go together: set both or neither",
            );
        }
        Some(TlsSettings {
            ca_file: ca_file.clone().unwrap_or_default(),
            client_cert: cert.clone().zip(key.clone()),
        })
    } else {
        for (name, value) in [
            ("mqtt.ca_file", &raw.ca_file),
            ("mqtt.client_cert_file", &raw.client_cert_file),
            ("mqtt.client_key_file", &raw.client_key_file),
        ] {
            if value.is_some() {
                check.fail(name, None, "only used with mqtt.tls = true");
            }
        }
        None
    };
    if raw.password_file.is_some() && raw.username.is_none() {
        check.fail("mqtt.password_file", None, "only used with mqtt.username");
    }
    let client_id = raw
        .client_id
        .clone()
        .unwrap_or_else(|| format!("luciole-{site}-{device}"));
    if client_id.is_empty() || client_id.len() > 128 {
        check.fail(
            "mqtt.client_id",
            Some(format!("{client_id:?}")),
            "must be 1 to 128 characters",
        );
    }
    if raw.topic_prefix.is_empty()
        || raw.topic_prefix.starts_with('/')
        || raw.topic_prefix.ends_with('/')
        || raw.topic_prefix.contains(['+', '#'])
    {
        check.fail(
            "mqtt.topic_prefix",
            Some(format!("{:?}", raw.topic_prefix)),
            "must be a non-empty topic without wildcards (+, #) or leading/trailing '/'",
        );
    }
    check.range("mqtt.keep_alive_s", raw.keep_alive_s, 5, 3600);
    check.range("mqtt.reconnect_min_ms", raw.reconnect_min_ms, 10, 600_000);
    if check.range("mqtt.reconnect_max_ms", raw.reconnect_max_ms, 10, 3_600_000)
        && raw.reconnect_max_ms < raw.reconnect_min_ms
    {
        check.fail(
            "mqtt.reconnect_max_ms",
            Some(raw.reconnect_max_ms.to_string()),
            format!(
                "must not be below mqtt.reconnect_min_ms ({})",
                raw.reconnect_min_ms
            ),
        );
    }
    check.range("mqtt.inflight", raw.inflight.into(), 1, 1000);
    if check.problems.len() > before {
        return None;
    }
    Some(MqttSettings {
        protocol: protocol?,
        port: raw.port.unwrap_or(if raw.tls { 8883 } else { 1883 }),
        host: raw.host,
        tls,
        username: raw.username,
        password_file,
        client_id,
        topic_prefix: raw.topic_prefix,
        keep_alive: Duration::from_secs(raw.keep_alive_s),
        reconnect: crate::backoff::Backoff {
            min: Duration::from_millis(raw.reconnect_min_ms),
            max: Duration::from_millis(raw.reconnect_max_ms),
        },
        inflight: raw.inflight,
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
    let expanded = match expand_vars(&raw.path, |name| std::env::var(name).ok()) {
        Ok(expanded) => expanded,
        Err(reason) => {
            check.fail(
                "camera.replay.path",
                Some(format!("{:?}", raw.path)),
                reason,
            );
            return None;
        }
    };
    let path = base.join(expanded);
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

/// Replaces `${NAME}` with the value `lookup` gives for NAME; an unknown
/// or malformed reference is an error naming it.
pub fn expand_vars(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "has an unclosed ${...}".to_string())?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("${{{name}}} is not a valid variable reference"));
        }
        let value =
            lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands `${NAME}` in a path and resolves it against the config folder.
fn config_path(base: &Path, key: &str, raw: &str, check: &mut Check<'_, '_>) -> Option<PathBuf> {
    match expand_vars(raw, |name| std::env::var(name).ok()) {
        Ok(expanded) => Some(base.join(expanded)),
        Err(reason) => {
            check.fail(key, Some(format!("{raw:?}")), reason);
            None
        }
    }
}

/// A library: a bare file name is left for the system loader to find.
fn library_path(base: &Path, key: &str, raw: &str, check: &mut Check<'_, '_>) -> Option<PathBuf> {
    if raw.contains('/') || raw.contains("${") {
        config_path(base, key, raw, check)
    } else if raw.is_empty() {
        check.fail(key, Some("\"\"".into()), "must name a library");
        None
    } else {
        Some(PathBuf::from(raw))
    }
}

fn validate_detect(
    base: &Path,
    raw: RawDetect,
    check: &mut Check<'_, '_>,
) -> Option<DetectSettings> {
    let before = check.problems.len();
    let model = config_path(base, "detect.model", &raw.model, check);
    if let Some(model) = &model {
        if !model.is_file() {
            check.fail(
                "detect.model",
                Some(format!("{:?}", raw.model)),
                format!("{}: no such manifest file", model.display()),
            );
        }
    }
    let model_dir = match &raw.model_dir {
        Some(dir) => config_path(base, "detect.model_dir", dir, check),
        None => model
            .as_ref()
            .map(|m| m.parent().unwrap_or(Path::new(".")).to_owned()),
    };
    let backend = match raw.backend.as_str() {
        "litert" => Some(Backend::Litert),
        "tflite" => Some(Backend::Tflite),
        other => {
            check.fail(
                "detect.backend",
                Some(format!("{other:?}")),
                "must be \"litert\" or \"tflite\"",
            );
            None
        }
    };
    let runtime = match (&raw.runtime, backend) {
        (Some(runtime), _) => library_path(base, "detect.runtime", runtime, check),
        (None, Some(backend)) => Some(PathBuf::from(backend.default_library())),
        (None, None) => None,
    };
    let mut accelerator = match raw.accelerator.as_str() {
        "cpu" => Some(Accelerator::Cpu),
        "gpu" => Some(Accelerator::Gpu),
        "npu" => Some(Accelerator::Npu),
        other => {
            check.fail(
                "detect.accelerator",
                Some(format!("{other:?}")),
                "must be \"cpu\", \"gpu\" or \"npu\"",
            );
            None
        }
    };
    if backend == Some(Backend::Tflite)
        && matches!(accelerator, Some(Accelerator::Gpu | Accelerator::Npu))
    {
        check.fail(
            "detect.accelerator",
            Some(format!("{:?}", raw.accelerator)),
            "the tflite backend reaches accelerators through detect.delegate; use \"cpu\" with a delegate, or backend = \"litert\"",
        );
    }
    if raw.npu_dispatch_dir.is_some() && accelerator != Some(Accelerator::Npu) {
        check.fail(
            "detect.npu_dispatch_dir",
            None,
            "only used with detect.accelerator = \"npu\"",
        );
    }
    let npu_dispatch_dir = raw
        .npu_dispatch_dir
        .as_deref()
        .and_then(|dir| config_path(base, "detect.npu_dispatch_dir", dir, check));
    check.range("detect.threads", raw.threads.into(), 1, 16);
    let delegate = match (&raw.delegate, backend) {
        (Some(_), Some(Backend::Litert)) => {
            check.fail(
                "detect.delegate",
                None,
                "external delegates need backend = \"tflite\"",
            );
            None
        }
        (Some(library), _) => {
            library_path(base, "detect.delegate", library, check).map(|library| {
                accelerator = Some(Accelerator::Delegate);
                DelegateSettings {
                    library,
                    options: raw.delegate_options.clone().into_iter().collect(),
                }
            })
        }
        (None, _) => {
            if !raw.delegate_options.is_empty() {
                check.fail(
                    "detect.delegate_options",
                    None,
                    "only used with detect.delegate",
                );
            }
            None
        }
    };
    let score_ok = |v: f32| (0.0..=1.0).contains(&v);
    if !score_ok(raw.min_score) {
        check.fail(
            "detect.min_score",
            Some(raw.min_score.to_string()),
            "must be between 0 and 1",
        );
    }
    let mut min_scores = std::collections::BTreeMap::new();
    if raw.classes.is_empty() {
        check.fail(
            "detect.classes",
            Some("[]".into()),
            "must name at least one class",
        );
    }
    for name in &raw.classes {
        match name.parse::<Class>() {
            Ok(class) if min_scores.contains_key(&class) => check.fail(
                "detect.classes",
                Some(format!("{name:?}")),
                "is listed twice",
            ),
            Ok(class) => {
                min_scores.insert(class, raw.min_score);
            }
            Err(reason) => check.fail("detect.classes", Some(format!("{name:?}")), reason),
        }
    }
    for (name, &score) in &raw.min_scores {
        let key = format!("detect.min_scores.{name}");
        match name.parse::<Class>() {
            Ok(class) if min_scores.contains_key(&class) => {
                if score_ok(score) {
                    min_scores.insert(class, score);
                } else {
                    check.fail(&key, Some(score.to_string()), "must be between 0 and 1");
                }
            }
            Ok(_) => check.fail(
                &key,
                Some(score.to_string()),
                "this class is not in detect.classes",
            ),
            Err(reason) => check.fail(&key, Some(score.to_string()), reason),
        }
    }
    if check.problems.len() > before {
        return None;
    }
    Some(DetectSettings {
        model: model?,
        model_dir: model_dir?,
        backend: backend?,
        runtime: runtime?,
        accelerator: accelerator?,
        npu_dispatch_dir,
        threads: raw.threads,
        delegate,
        min_scores,
        letterbox: raw.letterbox,
    })
}

#[cfg(test)]
mod tests;
