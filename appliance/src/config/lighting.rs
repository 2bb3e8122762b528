//! `[lighting]`: the raw section and its validation (kept beside each other
//! so that the shared files only gain a line or two each).

use std::time::Duration;

use serde::Deserialize;

use super::Check;
use crate::light::schedule::Schedule;
use crate::light::settings::{self, BoardOutput, BoardProfile};
use crate::light::{
    DimmerBackend, DimmerSettings, LightingSettings, LineRef, Mode, Polarity, PresenceSettings,
    RelayBackend, RelaySettings,
};

/// `[lighting]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLighting {
    /// `"schedule"` (fixed local times) or `"astronomical"` (sunset to
    /// sunrise).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// For `mode = "schedule"`: `{ on = "19:00", off = "07:00", timezone =
    /// "Europe/Paris" }`; `on = "00:00", off = "24:00"` is always night.
    pub schedule: Option<RawSchedule>,
    /// For `mode = "astronomical"`: degrees north.
    pub latitude: Option<f64>,
    /// For `mode = "astronomical"`: degrees east.
    pub longitude: Option<f64>,
    /// Minutes added to sunset (night starts later when positive).
    #[serde(default)]
    pub sunset_offset_min: i64,
    /// Minutes added to sunrise (night ends later when positive).
    #[serde(default)]
    pub sunrise_offset_min: i64,
    /// A board profile of `hw/` (`rpi4`, `rpi5`, `jetson-orin-nano`) whose
    /// named outputs `relay.output` and `dimmer.output` can use.
    pub board: Option<String>,
    /// Night level without presence, percent.
    #[serde(default = "default_night_pct")]
    pub night_pct: f64,
    /// Level while someone is there, percent.
    #[serde(default = "default_full_pct")]
    pub boost_pct: f64,
    /// Fail-safe and safe-exit level, percent.
    #[serde(default = "default_full_pct")]
    pub rated_pct: f64,
    /// Milliseconds for a full-scale rise.
    #[serde(default = "default_ramp_up_ms")]
    pub ramp_up_ms: u64,
    /// Seconds the boost holds after the last presence.
    #[serde(default = "default_hold_s")]
    pub hold_s: u64,
    /// Seconds for a full-scale fall.
    #[serde(default = "default_fade_s")]
    pub fade_s: u64,
    /// Longest boost, in seconds, while presence never stops.
    #[serde(default = "default_boost_cap_s")]
    pub boost_cap_s: u64,
    /// Seconds without a frame at night before the fail-safe.
    #[serde(default = "default_stale_s")]
    pub stale_s: u64,
    /// What counts as presence.
    #[serde(default)]
    pub presence: RawPresence,
    /// The relay switching the lamp.
    pub relay: Option<RawRelay>,
    /// The PWM dimmer.
    pub dimmer: Option<RawDimmer>,
}

/// `[lighting] schedule = { ... }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Local time the night starts, `"HH:MM"`.
    pub on: String,
    /// Local time the night ends, `"HH:MM"` (`"24:00"` allowed).
    pub off: String,
    /// IANA time zone, e.g. `"Europe/Paris"`.
    pub timezone: String,
}

/// `[lighting.presence]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPresence {
    /// Detection classes that count (default: person, bicycle).
    #[serde(default = "default_presence_classes")]
    pub classes: Vec<String>,
    /// Analytics zones in which they count.
    #[serde(default)]
    pub zones: Vec<String>,
    /// Analytics counting lines along which an approach counts.
    #[serde(default)]
    pub lines: Vec<String>,
}

/// A GPIO line by name or offset.
#[derive(Debug)]
pub enum RawLine {
    Offset(u32),
    Name(String),
}

impl<'de> Deserialize<'de> for RawLine {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawLine;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a line name (\"lamp-relay\") or an offset on the chip (0 or more)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawLine, E> {
                u32::try_from(v).map(RawLine::Offset).map_err(|_| {
                    E::custom(format!(
                        "line offset {v}: expected an offset from 0 to {}",
                        u32::MAX
                    ))
                })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawLine, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawLine, E> {
                Ok(RawLine::Name(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `[lighting.relay]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    /// `"cdev"` (GPIO character device) or `"rppal"` (feature `rpi`).
    #[serde(default = "default_relay_backend")]
    pub backend: String,
    /// A named output of the board profile instead of chip and line.
    pub output: Option<String>,
    /// gpiochip label (or `gpiochipN`).
    pub chip: Option<String>,
    /// Line name, or offset on the chip (BCM number with rppal).
    pub line: Option<RawLine>,
    /// Line low means lamp on.
    pub active_low: Option<bool>,
}

/// `[lighting.dimmer]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDimmer {
    /// `"sysfs"` (Linux PWM sysfs) or `"rppal"` (feature `rpi`).
    #[serde(default = "default_dimmer_backend")]
    pub backend: String,
    /// A named output of the board profile instead of chip and channel.
    pub output: Option<String>,
    /// PWM controller device name (`fe20c000.pwm`) or `pwmchipN`.
    pub chip: Option<String>,
    /// Channel on the controller.
    pub channel: Option<u32>,
    /// PWM period in nanoseconds.
    #[serde(default = "default_period_ns")]
    pub period_ns: u64,
    /// `"normal"` or `"inversed"`.
    #[serde(default = "default_polarity")]
    pub polarity: String,
    /// Distinct levels above 0 (default: 1000, or the period if shorter).
    pub steps: Option<u32>,
}

fn default_mode() -> String {
    "schedule".into()
}
fn default_night_pct() -> f64 {
    30.0
}
fn default_full_pct() -> f64 {
    100.0
}
fn default_ramp_up_ms() -> u64 {
    500
}
fn default_hold_s() -> u64 {
    30
}
fn default_fade_s() -> u64 {
    10
}
fn default_boost_cap_s() -> u64 {
    600
}
fn default_stale_s() -> u64 {
    5
}
fn default_presence_classes() -> Vec<String> {
    vec!["person".into(), "bicycle".into()]
}
fn default_relay_backend() -> String {
    "cdev".into()
}
fn default_dimmer_backend() -> String {
    "sysfs".into()
}
fn default_period_ns() -> u64 {
    1_000_000
}
fn default_polarity() -> String {
    "normal".into()
}

fn pct(check: &mut Check<'_, '_>, key: &str, value: f64) -> f64 {
    if !(0.0..=100.0).contains(&value) {
        check.fail(key, Some(value.to_string()), "must be between 0 and 100");
    }
    value / 100.0
}

/// `[lighting]` to settings, or the problems found.
pub(super) fn validate(raw: RawLighting, check: &mut Check<'_, '_>) -> Option<LightingSettings> {
    let before = check.problems.len();
    let mode = match raw.mode.as_str() {
        "schedule" => {
            if raw.latitude.is_some() || raw.longitude.is_some() {
                check.fail(
                    "lighting.latitude",
                    None,
                    "latitude and longitude are only used with mode = \"astronomical\"",
                );
            }
            match &raw.schedule {
                None => {
                    check.fail(
                        "lighting.schedule",
                        None,
                        "mode = \"schedule\" needs schedule = { on = \"19:00\", off = \"07:00\", timezone = \"Europe/Paris\" }",
                    );
                    None
                }
                Some(s) => match Schedule::parse(&s.on, &s.off, &s.timezone) {
                    Ok(schedule) => Some(Mode::Schedule(schedule)),
                    Err((key, reason)) => {
                        let value = match key.as_str() {
                            "on" => &s.on,
                            "off" => &s.off,
                            _ => &s.timezone,
                        };
                        check.fail(
                            &format!("lighting.schedule.{key}"),
                            Some(format!("{value:?}")),
                            reason,
                        );
                        None
                    }
                },
            }
        }
        "astronomical" => {
            if raw.schedule.is_some() {
                check.fail(
                    "lighting.schedule",
                    None,
                    "only used with mode = \"schedule\"",
                );
            }
            match (raw.latitude, raw.longitude) {
                (Some(lat), Some(lon)) => {
                    let mut ok = true;
                    if !(-90.0..=90.0).contains(&lat) {
                        check.fail(
                            "lighting.latitude",
                            Some(lat.to_string()),
                            "must be between -90 and 90",
                        );
                        ok = false;
                    }
                    if !(-180.0..=180.0).contains(&lon) {
                        check.fail(
                            "lighting.longitude",
                            Some(lon.to_string()),
                            "must be between -180 and 180",
                        );
                        ok = false;
                    }
                    for (key, value) in [
                        ("lighting.sunset_offset_min", raw.sunset_offset_min),
                        ("lighting.sunrise_offset_min", raw.sunrise_offset_min),
                    ] {
                        if !(-180..=180).contains(&value) {
                            check.fail(
                                key,
                                Some(value.to_string()),
                                "must be between -180 and 180",
                            );
                            ok = false;
                        }
                    }
                    ok.then_some(Mode::Astronomical {
                        latitude: lat,
                        longitude: lon,
                        sunset_offset: raw.sunset_offset_min,
                        sunrise_offset: raw.sunrise_offset_min,
                    })
                }
                _ => {
                    check.fail(
                        "lighting.latitude",
                        None,
                        "mode = \"astronomical\" needs latitude and longitude (degrees north and east)",
                    );
                    None
                }
            }
        }
        other => {
            check.fail(
                "lighting.mode",
                Some(format!("{other:?}")),
                "must be \"schedule\" or \"astronomical\"",
            );
            None
        }
    };
    let night = pct(check, "lighting.night_pct", raw.night_pct);
    let boost = pct(check, "lighting.boost_pct", raw.boost_pct);
    let rated = pct(check, "lighting.rated_pct", raw.rated_pct);
    if raw.rated_pct == 0.0 {
        check.fail(
            "lighting.rated_pct",
            Some("0".into()),
            "the fail-safe level must light the lamp (above 0)",
        );
    }
    check.range("lighting.ramp_up_ms", raw.ramp_up_ms, 0, 60_000);
    check.range("lighting.hold_s", raw.hold_s, 0, 3600);
    check.range("lighting.fade_s", raw.fade_s, 0, 600);
    check.range("lighting.boost_cap_s", raw.boost_cap_s, 1, 86_400);
    check.range("lighting.stale_s", raw.stale_s, 1, 3600);
    for (key, list) in [
        ("lighting.presence.zones", &raw.presence.zones),
        ("lighting.presence.lines", &raw.presence.lines),
    ] {
        if list.iter().any(|name| name.is_empty()) {
            check.fail(key, None, "names must not be empty");
        }
    }
    for class in &raw.presence.classes {
        if let Err(reason) = class.parse::<crate::detect::Class>() {
            check.fail(
                "lighting.presence.classes",
                Some(format!("{class:?}")),
                reason,
            );
        }
    }

    let board = raw
        .board
        .as_deref()
        .and_then(|name| match settings::board(name) {
            Ok(profile) => Some(profile),
            Err(reason) => {
                check.fail("lighting.board", Some(format!("{name:?}")), reason);
                None
            }
        });
    let relay = raw
        .relay
        .map(|relay| validate_relay(relay, raw.board.is_some(), board.as_ref(), check));
    let dimmer = raw
        .dimmer
        .map(|dimmer| validate_dimmer(dimmer, raw.board.is_some(), board.as_ref(), check));
    if relay.is_none() && dimmer.is_none() {
        check.fail(
            "lighting",
            None,
            "needs an output: [lighting.relay], [lighting.dimmer] or both",
        );
    }
    if check.problems.len() > before {
        return None;
    }
    let dimmer: Option<(DimmerSettings, u32)> = dimmer.flatten();
    let steps = dimmer.as_ref().map_or(1, |(_, steps)| *steps);
    Some(LightingSettings {
        mode: mode?,
        night,
        boost,
        rated,
        ramp_up: Duration::from_millis(raw.ramp_up_ms),
        hold: Duration::from_secs(raw.hold_s),
        fade: Duration::from_secs(raw.fade_s),
        boost_cap: Duration::from_secs(raw.boost_cap_s),
        stale: Duration::from_secs(raw.stale_s),
        presence: PresenceSettings {
            classes: raw.presence.classes,
            zones: raw.presence.zones,
            lines: raw.presence.lines,
        },
        relay: relay.flatten(),
        dimmer: dimmer.map(|(d, _)| d),
        steps,
    })
}

/// A profile output by name, or a problem naming the ones there are.
fn profile_output<'p>(
    key: &str,
    name: &str,
    has_board: bool,
    board: Option<&'p BoardProfile>,
    check: &mut Check<'_, '_>,
) -> Option<&'p BoardOutput> {
    let Some(board) = board else {
        if !has_board {
            check.fail(
                key,
                Some(format!("{name:?}")),
                "needs lighting.board to name a profile",
            );
        }
        return None;
    };
    let found = board.outputs.get(name);
    if found.is_none() {
        let names: Vec<&str> = board.outputs.keys().map(String::as_str).collect();
        check.fail(
            key,
            Some(format!("{name:?}")),
            format!(
                "the board profile has no such output: it has {}",
                names.join(", ")
            ),
        );
    }
    found
}

fn validate_relay(
    raw: RawRelay,
    has_board: bool,
    board: Option<&BoardProfile>,
    check: &mut Check<'_, '_>,
) -> Option<RelaySettings> {
    let backend = match raw.backend.as_str() {
        "cdev" => RelayBackend::Cdev,
        "rppal" => RelayBackend::Rppal,
        other => {
            check.fail(
                "lighting.relay.backend",
                Some(format!("{other:?}")),
                "must be \"cdev\" or \"rppal\"",
            );
            return None;
        }
    };
    let (chip, line, active_low) = match (&raw.output, raw.chip, raw.line) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            check.fail(
                "lighting.relay.output",
                None,
                "set either output or chip and line, not both",
            );
            return None;
        }
        (Some(name), None, None) => {
            match profile_output("lighting.relay.output", name, has_board, board, check)? {
                BoardOutput::Gpio {
                    chip,
                    line,
                    gpio,
                    active_low,
                    ..
                } => {
                    let line = match (backend, gpio) {
                        (RelayBackend::Rppal, Some(gpio)) => LineRef::Offset(*gpio),
                        _ => LineRef::Name(line.clone()),
                    };
                    (chip.clone(), line, raw.active_low.unwrap_or(*active_low))
                }
                BoardOutput::Pwm { .. } => {
                    check.fail(
                        "lighting.relay.output",
                        Some(format!("{name:?}")),
                        "is a PWM output, not a GPIO line",
                    );
                    return None;
                }
            }
        }
        (None, chip, line) => {
            let chip = chip.unwrap_or_default();
            if chip.is_empty() && backend == RelayBackend::Cdev {
                check.fail(
                    "lighting.relay.chip",
                    None,
                    "must name the gpiochip label (see `gpiodetect`), or use output with a board",
                );
            }
            let line = match line {
                Some(RawLine::Offset(offset)) => LineRef::Offset(offset),
                Some(RawLine::Name(name)) if !name.is_empty() => LineRef::Name(name),
                Some(RawLine::Name(_)) | None => {
                    check.fail(
                        "lighting.relay.line",
                        None,
                        "must be a line name or an offset",
                    );
                    return None;
                }
            };
            (chip, line, raw.active_low.unwrap_or(false))
        }
    };
    if backend == RelayBackend::Rppal {
        if !matches!(line, LineRef::Offset(0..=27)) {
            check.fail(
                "lighting.relay.line",
                Some(line.to_string()),
                "with backend = \"rppal\" the line is a BCM GPIO number, 0 to 27",
            );
        }
        if !cfg!(feature = "rpi") {
            check.fail(
                "lighting.relay.backend",
                Some("\"rppal\"".into()),
                "this build has no rppal support (cargo feature `rpi`)",
            );
        }
    }
    Some(RelaySettings {
        backend,
        chip,
        line,
        active_low,
    })
}

fn validate_dimmer(
    raw: RawDimmer,
    has_board: bool,
    board: Option<&BoardProfile>,
    check: &mut Check<'_, '_>,
) -> Option<(DimmerSettings, u32)> {
    let backend = match raw.backend.as_str() {
        "sysfs" => Some(DimmerBackend::Sysfs),
        "rppal" => Some(DimmerBackend::Rppal),
        other => {
            check.fail(
                "lighting.dimmer.backend",
                Some(format!("{other:?}")),
                "must be \"sysfs\" or \"rppal\"",
            );
            None
        }
    };
    let polarity = match raw.polarity.as_str() {
        "normal" => Some(Polarity::Normal),
        "inversed" => Some(Polarity::Inversed),
        other => {
            check.fail(
                "lighting.dimmer.polarity",
                Some(format!("{other:?}")),
                "must be \"normal\" or \"inversed\"",
            );
            None
        }
    };
    check.range(
        "lighting.dimmer.period_ns",
        raw.period_ns,
        1000,
        1_000_000_000,
    );
    let (chip, channel) = match (&raw.output, raw.chip, raw.channel) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            check.fail(
                "lighting.dimmer.output",
                None,
                "set either output or chip and channel, not both",
            );
            return None;
        }
        (Some(name), None, None) => {
            match profile_output("lighting.dimmer.output", name, has_board, board, check)? {
                BoardOutput::Pwm { chip, channel, .. } => (chip.clone(), *channel),
                BoardOutput::Gpio { .. } => {
                    check.fail(
                        "lighting.dimmer.output",
                        Some(format!("{name:?}")),
                        "is a GPIO line, not a PWM output",
                    );
                    return None;
                }
            }
        }
        (None, chip, channel) => {
            let chip = chip.unwrap_or_default();
            if chip.is_empty() && backend == Some(DimmerBackend::Sysfs) {
                check.fail("lighting.dimmer.chip", None, "must name the PWM controller (e.g. \"fe20c000.pwm\") or \"pwmchipN\", or use output with a board");
            }
            (chip, channel.unwrap_or(0))
        }
    };
    if backend == Some(DimmerBackend::Rppal) && !cfg!(feature = "rpi") {
        check.fail(
            "lighting.dimmer.backend",
            Some("\"rppal\"".into()),
            "this build has no rppal support (cargo feature `rpi`)",
        );
    }
    let steps = raw.steps.unwrap_or_else(|| raw.period_ns.min(1000) as u32);
    if raw.steps.is_some() && !(1..=raw.period_ns.min(1_000_000)).contains(&u64::from(steps)) {
        check.fail(
            "lighting.dimmer.steps",
            Some(steps.to_string()),
            "must be between 1 and the period in nanoseconds (at most 1000000)",
        );
    }
    Some((
        DimmerSettings {
            backend: backend?,
            chip,
            channel,
            period_ns: raw.period_ns,
            polarity: polarity?,
        },
        steps,
    ))
}

/// Reads the `[lighting]` section of a configuration file alone, ignoring
/// the other sections (the safe-state command must work even when another
/// section is broken).
pub fn load(path: &std::path::Path) -> Result<LightingSettings, super::ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| super::ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |problems| super::ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    };
    let root = toml::de::DeTable::parse(&text).map_err(|err| {
        invalid(vec![super::Problem {
            line: err
                .span()
                .map(|span| super::locate::line_of(&text, span.start)),
            key: None,
            value: None,
            reason: format!("not valid TOML: {}", err.message().trim()),
        }])
    })?;
    let mut problems = Vec::new();
    let mut raw = None;
    for (key, value) in root.into_inner() {
        if key.get_ref() == "lighting" {
            raw = super::section::<RawLighting>(&text, "lighting", value, &mut problems);
        }
    }
    if raw.is_none() && problems.is_empty() {
        problems.push(super::Problem {
            line: None,
            key: Some("lighting".into()),
            value: None,
            reason: "missing section [lighting]".into(),
        });
    }
    let mut locator = super::locate::Locator::new(&text);
    let settings = raw.and_then(|raw| {
        validate(
            raw,
            &mut Check {
                locator: &mut locator,
                problems: &mut problems,
            },
        )
    });
    match settings {
        Some(settings) if problems.is_empty() => Ok(settings),
        _ => Err(invalid(problems)),
    }
}
