//! The pole's configuration file: one TOML file per pole.
//!
//! Loading happens in two steps, as in "parse, then validate": each section
//! is deserialised into a raw struct that mirrors the file (unknown keys are
//! refused), then [`validate`] turns the raw structs into typed
//! [`Settings`], collecting every problem instead of stopping at the first.
//! A problem names the file, the line, the key, the value and the reason:
//! `pole.toml:12 camera.fps = 0: must be between 1 and 120`.

//!
//! # Layout
//!
//! One file per section, each holding the raw struct that mirrors the file
//! (every optional key an `Option`, unknown keys refused) beside its
//! validation into the owning module's settings type: [`device`],
//! [`camera`], [`detect`], [`events`], [`outbox`], [`mqtt`], [`tracking`],
//! [`motion`], [`analytics`], [`pipeline`], [`lighting`], [`remote`],
//! [`metrics`], [`privacy`]. A default value
//! is never written here: a key left out takes the value of the owning
//! module's `Default` (or constructor). [`check`] holds the problem
//! collector and the checks sections share; this file composes the whole
//! file and checks what crosses sections.
//!
//! Only the command layer (the `luciole` binary) uses this module; it
//! imports the domain modules, never the other way round.

pub mod analytics;
pub mod camera;
pub mod check;
pub mod detect;
pub mod device;
pub mod events;
pub mod lighting;
mod locate;
pub mod metrics;
pub mod motion;
pub mod mqtt;
pub mod outbox;
pub mod pipeline;
pub mod preflight;
pub mod privacy;
pub mod remote;
pub mod tracking;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::analytics::AnalyticsSettings;
use crate::capture::CameraSettings;
use crate::detect::DetectSettings;
use crate::events::{EventSettings, Origin};
use crate::light::LightingSettings;
use crate::metrics::MetricsSettings;
use crate::motion::MotionSettings;
use crate::outbox::OutboxSettings;
use crate::pipeline::pace::PaceSettings;
use crate::pipeline::PipelineSettings;
use crate::privacy::PrivacySettings;
use crate::publish::MqttSettings;
use crate::remote::RemoteSettings;
use crate::track::TrackSettings;
pub use check::expand_vars;
use check::Check;
pub use lighting::load as load_lighting;

/// Validated settings of a pole.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The file these settings came from.
    pub file: PathBuf,
    /// Who this pole is (`[device]`).
    pub device: Origin,
    pub camera: CameraSettings,
    /// Object detection, when the file has a `[detect]` section.
    pub detect: Option<DetectSettings>,
    /// What the daemon reports (defaults when `[events]` is absent).
    pub events: EventSettings,
    /// The event store, when the file has an `[outbox]` section.
    pub outbox: Option<OutboxSettings>,
    /// The broker, when the file has an `[mqtt]` section.
    pub mqtt: Option<MqttSettings>,
    /// How often the model runs (`[detect] adaptive`, `min_fps`,
    /// `max_fps`; adaptive by default).
    pub pace: PaceSettings,
    /// Tracker tuning (`[tracking]`, defaults when absent).
    pub tracking: TrackSettings,
    /// Motion gating (`[motion]`, on by default).
    pub motion: MotionSettings,
    /// Zones, lines, flows, FIWARE (`[analytics]`, none by default).
    pub analytics: AnalyticsSettings,
    /// Queues between threads (`[pipeline]`).
    pub pipeline: PipelineSettings,
    /// The lamp, when the file has a `[lighting]` section.
    pub lighting: Option<LightingSettings>,
    /// Signed commands from the broker, when the file has a `[remote]`
    /// section (it needs `[mqtt]`).
    pub remote: Option<RemoteSettings>,
    /// The OpenMetrics endpoint, when the file has a `[metrics]` section.
    pub metrics: Option<MetricsSettings>,
    /// What leaves the pole (`[privacy]`, counts only by default).
    pub privacy: PrivacySettings,
}

impl Settings {
    /// The pipeline's options for these settings (no frame limit).
    pub fn pipeline_options(&self) -> crate::pipeline::Options {
        crate::pipeline::Options {
            queue: self.pipeline.queue,
            lossless: self.camera.lossless(),
            max_frames: None,
            // One second more than the capture's own timeout, so a camera
            // is reported lost once the source has noticed it too.
            camera_lost_after: self.camera.frame_timeout + Duration::from_secs(1),
            health_interval: self.events.health_interval,
            motion: self.motion.clone(),
            pace: self.pace,
            tracking: self.tracking.clone(),
            analytics: self.analytics.clone(),
            profile: self.privacy.publish,
            masks: self.privacy.masks.clone(),
            origin: self.device.clone(),
            inference_time: None,
            snapshots: None,
        }
    }

    /// The detector's settings as the pipeline runs them: reporting down to
    /// the tracker's low score (see [`DetectSettings::reporting_down_to`]).
    pub fn detector(&self) -> Option<DetectSettings> {
        self.detect
            .as_ref()
            .map(|d| d.reporting_down_to(self.tracking.low_score))
    }
}

/// The whole file. Sections are optional here so that a missing one is
/// reported by validation, beside every other problem.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[device]`: who this pole is.
    pub device: Option<device::RawDevice>,
    /// `[camera]`: where frames come from.
    pub camera: Option<camera::RawCamera>,
    /// `[detect]`: the detection model and its runtime.
    pub detect: Option<detect::RawDetect>,
    /// `[events]`: what the daemon reports and how often.
    pub events: Option<events::RawEvents>,
    /// `[outbox]`: where events wait for the broker (without it no events
    /// are kept).
    pub outbox: Option<outbox::RawOutbox>,
    /// `[mqtt]`: the city's broker (needs `[outbox]`).
    pub mqtt: Option<mqtt::RawMqtt>,
    /// `[tracking]`: tracker tuning.
    pub tracking: Option<tracking::RawTracking>,
    /// `[motion]`: motion gating.
    pub motion: Option<motion::RawMotion>,
    /// `[analytics]`: zones, lines, flows.
    pub analytics: Option<analytics::RawAnalytics>,
    /// `[pipeline]`: queues between threads.
    pub pipeline: Option<pipeline::RawPipeline>,
    /// `[lighting]`: the lamp.
    pub lighting: Option<lighting::RawLighting>,
    /// `[remote]`: signed commands from the broker (needs `[mqtt]`).
    pub remote: Option<remote::RawRemote>,
    /// `[metrics]`: the OpenMetrics endpoint on a loopback address.
    pub metrics: Option<metrics::RawMetrics>,
    /// `[privacy]`: the data profile and the purpose.
    pub privacy: Option<privacy::RawPrivacy>,
}

impl RawConfig {
    /// Top-level sections this version understands.
    pub const SECTIONS: [&'static str; 14] = [
        "device",
        "camera",
        "detect",
        "events",
        "outbox",
        "mqtt",
        "tracking",
        "motion",
        "analytics",
        "pipeline",
        "lighting",
        "remote",
        "metrics",
        "privacy",
    ];
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

/// How far loading checks a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// The file's own keys and values (tools that only need the settings:
    /// `light --safe`, `events`, `capture`).
    File,
    /// Also every check the daemon's start-up runs short of opening devices
    /// and the network ([`preflight`]): credentials, certificates, model
    /// files, runtime libraries.
    Startup,
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    load_to(path, Depth::File)
}

/// Reads, parses and validates a configuration file, then runs the
/// start-up checks on it: what the daemon (at start and on SIGHUP) and
/// `check-config` use, so they cannot disagree.
pub fn load_for_daemon(path: &Path) -> Result<Settings, ConfigError> {
    load_to(path, Depth::Startup)
}

fn load_to(path: &Path, depth: Depth) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_to(path, &text, depth)
}

/// Parses and validates configuration text; `path` names it in problems and
/// anchors relative paths inside it.
pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigError> {
    parse_to(path, text, Depth::File)
}

/// [`parse`], checking as far as `depth`.
pub fn parse_to(path: &Path, text: &str, depth: Depth) -> Result<Settings, ConfigError> {
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
    let mut locator = locate::Locator::new(text);
    let settings = validate(path, base, raw, &mut locator, &mut problems);
    if let (Some(settings), true, Depth::Startup) = (&settings, problems.is_empty(), depth) {
        let mut check = Check {
            locator: &mut locator,
            problems: &mut problems,
            base,
        };
        preflight::run(settings, &mut check);
    }
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
            "remote" => raw.remote = section(text, &name, value, problems),
            "metrics" => raw.metrics = section(text, &name, value, problems),
            "privacy" => raw.privacy = section(text, &name, value, problems),
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

/// Turns raw sections into settings, or records why it cannot.
fn validate(
    file: &Path,
    base: &Path,
    raw: RawConfig,
    locator: &mut locate::Locator<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Settings> {
    let parse_failed = !problems.is_empty();
    let mut check = Check {
        locator,
        problems,
        base,
    };
    let device = match raw.device {
        Some(raw) => Some(device::validate(raw, &mut check)),
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
        Some(raw) => camera::validate(raw, &mut check),
        None if parse_failed => None,
        None => {
            check.fail("camera", None, "missing section [camera]");
            None
        }
    };
    let raw_detect = raw.detect;
    let events = events::validate(raw.events, &mut check);
    let has_outbox = raw.outbox.is_some();
    let outbox = raw.outbox.map(|raw| outbox::validate(raw, &mut check));
    if raw.mqtt.is_some() && !has_outbox && !parse_failed {
        check.fail(
            "mqtt",
            None,
            "publishing needs an [outbox] section: events wait there until the broker has them",
        );
    }
    let mqtt = raw.mqtt.map(|raw| {
        let nobody = Origin {
            site: String::new(),
            device: String::new(),
        };
        mqtt::validate(raw, device.as_ref().unwrap_or(&nobody), &mut check)
    });
    let raw_tracking = raw.tracking;
    let pace = raw_detect
        .as_ref()
        .map(|raw| detect::pace(raw, tracking::max_coast(&raw_tracking), &mut check))
        .unwrap_or_default();
    let detect = raw_detect.map(|raw| detect::validate(raw, &mut check));
    let tracking = tracking::validate(
        raw_tracking,
        detect.as_ref().and_then(|d| d.as_ref()),
        &mut check,
    );
    let motion = motion::validate(raw.motion, &mut check);
    let analytics = analytics::validate(raw.analytics, &mut check);
    let pipeline = pipeline::validate(raw.pipeline, &mut check);
    let lighting = raw.lighting.map(|raw| lighting::validate(raw, &mut check));
    if raw.remote.is_some() && mqtt.is_none() && !parse_failed {
        check.fail(
            "remote",
            None,
            "commands arrive through the broker: [remote] needs an [mqtt] section",
        );
    }
    let remote = raw.remote.map(|raw| remote::validate(raw, &mut check));
    let metrics = raw.metrics.map(|raw| metrics::validate(raw, &mut check));
    let privacy = privacy::validate(raw.privacy, &mut check);
    if let Some(Some(light)) = &lighting {
        presence_names_exist(light, &analytics, &mut check);
    }
    Some(Settings {
        file: file.to_owned(),
        pace,
        tracking,
        motion,
        analytics,
        pipeline,
        events,
        device: device?,
        camera: camera?,
        detect: detect.map(|d| d.ok_or(())).transpose().ok()?,
        outbox: outbox.map(|o| o.ok_or(())).transpose().ok()?,
        mqtt: mqtt.map(|m| m.ok_or(())).transpose().ok()?,
        lighting: lighting.map(|l| l.ok_or(())).transpose().ok()?,
        remote: remote.map(|r| r.ok_or(())).transpose().ok()?,
        metrics: metrics.map(|m| m.ok_or(())).transpose().ok()?,
        privacy,
    })
}

/// The lamp's presence rule names zones and lines of `[analytics]`.
fn presence_names_exist(
    light: &LightingSettings,
    analytics: &AnalyticsSettings,
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

#[cfg(test)]
mod lighting_tests;
#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
