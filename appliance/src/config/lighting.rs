//! `[lighting]`: the lamp's policy and outputs, and [`load`], which reads
//! this section alone (for the safe-state command).

use std::time::Duration;

use serde::Deserialize;

use super::check::Check;
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
    pub mode: Option<String>,
    /// For `mode = "schedule"`: `{ on = "19:00", off = "07:00", timezone =
    /// "Europe/Paris" }`; `on = "00:00", off = "24:00"` is always night.
    pub schedule: Option<RawSchedule>,
    /// For `mode = "astronomical"`: degrees north.
    pub latitude: Option<f64>,
    /// For `mode = "astronomical"`: degrees east.
    pub longitude: Option<f64>,
    /// Minutes added to sunset (night starts later when positive).
    pub sunset_offset_min: Option<i64>,
    /// Minutes added to sunrise (night ends later when positive).
    pub sunrise_offset_min: Option<i64>,
    /// A board profile of `hw/` (`rpi4`, `rpi5`, `jetson-orin-nano`) whose
    /// named outputs `relay.output` and `dimmer.output` can use.
    pub board: Option<String>,
    /// Night level without presence, percent.
    pub night_pct: Option<f64>,
    /// Level while someone is there, percent.
    pub boost_pct: Option<f64>,
    /// Fail-safe and safe-exit level, percent.
    pub rated_pct: Option<f64>,
    /// The lamp's power at 100 %, watts: the nightly energy report.
    pub lamp_watts: Option<f64>,
    /// Milliseconds for a full-scale rise.
    pub ramp_up_ms: Option<u64>,
    /// Seconds the boost holds after the last presence.
    pub hold_s: Option<u64>,
    /// Seconds for a full-scale fall.
    pub fade_s: Option<u64>,
    /// Longest boost, in seconds, while presence never stops.
    pub boost_cap_s: Option<u64>,
    /// Seconds without a frame at night before the fail-safe.
    pub stale_s: Option<u64>,
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
    pub classes: Option<Vec<String>>,
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
    /// `"cdev"` (GPIO character device), `"rppal"` (feature `rpi`) or
    /// `"simulated"` (no hardware).
    pub backend: Option<String>,
    /// A named output of the board profile instead of chip and line.
    pub output: Option<String>,
    /// gpiochip label (or `gpiochipN`).
    pub chip: Option<String>,
    /// Line name, or offset on the chip (BCM number with rppal).
    pub line: Option<RawLine>,
    /// Line low means lamp on.
    pub active_low: Option<bool>,
    /// `backend = "simulated"`: a file the relay's state is written to.
    pub state_file: Option<String>,
}

/// `[lighting.dimmer]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDimmer {
    /// `"sysfs"` (Linux PWM sysfs), `"rppal"` (feature `rpi`) or
    /// `"simulated"` (no hardware).
    pub backend: Option<String>,
    /// A named output of the board profile instead of chip and channel.
    pub output: Option<String>,
    /// PWM controller device name (`fe20c000.pwm`) or `pwmchipN`.
    pub chip: Option<String>,
    /// Channel on the controller.
    pub channel: Option<u32>,
    /// PWM period in nanoseconds.
    pub period_ns: Option<u64>,
    /// `"normal"` or `"inversed"`.
    pub polarity: Option<String>,
    /// Distinct levels above 0 (default: 1000, or the period if shorter).
    pub steps: Option<u32>,
    /// `backend = "simulated"`: a file the dimmer's state is written to.
    pub state_file: Option<String>,
}

fn pct(check: &mut Check<'_, '_>, key: &str, value: f64) -> f64 {
    if !(0.0..=100.0).contains(&value) {
        check.fail(key, Some(value.to_string()), "must be between 0 and 100");
    }
    value / 100.0
}

/// `[lighting]` to settings, or the problems found.
pub(super) fn validate(raw: RawLighting, check: &mut Check<'_, '_>) -> Option<LightingSettings> {
    // The defaults do not depend on the mode: any will do to read them.
    let d = LightingSettings::new(Mode::Astronomical {
        latitude: 0.0,
        longitude: 0.0,
        sunset_offset: 0,
        sunrise_offset: 0,
    });
    let before = check.count();
    let sunset_offset_min = raw.sunset_offset_min.unwrap_or(0);
    let sunrise_offset_min = raw.sunrise_offset_min.unwrap_or(0);
    let mode = match raw.mode.as_deref().unwrap_or("schedule") {
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
                        ("lighting.sunset_offset_min", sunset_offset_min),
                        ("lighting.sunrise_offset_min", sunrise_offset_min),
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
                        sunset_offset: sunset_offset_min,
                        sunrise_offset: sunrise_offset_min,
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
    let percent = |level: f64| level * 100.0;
    let rated_pct = raw.rated_pct.unwrap_or(percent(d.rated));
    let night = pct(
        check,
        "lighting.night_pct",
        raw.night_pct.unwrap_or(percent(d.night)),
    );
    let boost = pct(
        check,
        "lighting.boost_pct",
        raw.boost_pct.unwrap_or(percent(d.boost)),
    );
    let rated = pct(check, "lighting.rated_pct", rated_pct);
    if rated_pct == 0.0 {
        check.fail(
            "lighting.rated_pct",
            Some("0".into()),
            "the fail-safe level must light the lamp (above 0)",
        );
    }
    let lamp_watts = match raw.lamp_watts {
        Some(w) if !(w > 0.0 && w <= 10_000.0) => {
            check.fail(
                "lighting.lamp_watts",
                Some(w.to_string()),
                "must be above 0 and at most 10000 (watts at 100 %)",
            );
            None
        }
        other => other,
    };
    let ramp_up_ms = raw.ramp_up_ms.unwrap_or(d.ramp_up.as_millis() as u64);
    let hold_s = raw.hold_s.unwrap_or(d.hold.as_secs());
    let fade_s = raw.fade_s.unwrap_or(d.fade.as_secs());
    let boost_cap_s = raw.boost_cap_s.unwrap_or(d.boost_cap.as_secs());
    let stale_s = raw.stale_s.unwrap_or(d.stale.as_secs());
    check.range("lighting.ramp_up_ms", ramp_up_ms, 0, 60_000);
    check.range("lighting.hold_s", hold_s, 0, 3600);
    check.range("lighting.fade_s", fade_s, 0, 600);
    check.range("lighting.boost_cap_s", boost_cap_s, 1, 86_400);
    check.range("lighting.stale_s", stale_s, 1, 3600);
    let classes = raw
        .presence
        .classes
        .clone()
        .unwrap_or(d.presence.classes.clone());
    for (key, list) in [
        ("lighting.presence.zones", &raw.presence.zones),
        ("lighting.presence.lines", &raw.presence.lines),
    ] {
        if list.iter().any(|name| name.is_empty()) {
            check.fail(key, None, "names must not be empty");
        }
    }
    for class in &classes {
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
    if check.count() > before {
        return None;
    }
    let dimmer: Option<(DimmerSettings, u32)> = dimmer.flatten();
    let steps = dimmer.as_ref().map_or(1, |(_, steps)| *steps);
    Some(LightingSettings {
        mode: mode?,
        night,
        boost,
        rated,
        ramp_up: Duration::from_millis(ramp_up_ms),
        hold: Duration::from_secs(hold_s),
        fade: Duration::from_secs(fade_s),
        boost_cap: Duration::from_secs(boost_cap_s),
        stale: Duration::from_secs(stale_s),
        presence: PresenceSettings {
            classes,
            zones: raw.presence.zones,
            lines: raw.presence.lines,
        },
        relay: relay.flatten(),
        dimmer: dimmer.map(|(d, _)| d),
        steps,
        lamp_watts,
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
    let backend = match raw.backend.as_deref().unwrap_or("cdev") {
        "cdev" => RelayBackend::Cdev,
        "rppal" => RelayBackend::Rppal,
        "simulated" => RelayBackend::Simulated,
        other => {
            check.fail(
                "lighting.relay.backend",
                Some(format!("{other:?}")),
                "must be \"cdev\", \"rppal\" or \"simulated\"",
            );
            return None;
        }
    };
    let state_file = state_file(
        "lighting.relay",
        backend == RelayBackend::Simulated,
        &raw.state_file,
        check,
    );
    let (chip, line, active_low) = match (&raw.output, raw.chip, raw.line) {
        (None, None, None) if backend == RelayBackend::Simulated => (
            String::new(),
            LineRef::Offset(0),
            raw.active_low.unwrap_or(false),
        ),
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
        state_file: state_file?,
    })
}

fn validate_dimmer(
    raw: RawDimmer,
    has_board: bool,
    board: Option<&BoardProfile>,
    check: &mut Check<'_, '_>,
) -> Option<(DimmerSettings, u32)> {
    let d = DimmerSettings::default();
    let backend = match raw.backend.as_deref() {
        None => Some(d.backend),
        Some("sysfs") => Some(DimmerBackend::Sysfs),
        Some("rppal") => Some(DimmerBackend::Rppal),
        Some("simulated") => Some(DimmerBackend::Simulated),
        Some(other) => {
            check.fail(
                "lighting.dimmer.backend",
                Some(format!("{other:?}")),
                "must be \"sysfs\", \"rppal\" or \"simulated\"",
            );
            None
        }
    };
    let state_file = state_file(
        "lighting.dimmer",
        backend == Some(DimmerBackend::Simulated),
        &raw.state_file,
        check,
    );
    let polarity = match raw.polarity.as_deref() {
        None => Some(d.polarity),
        Some("normal") => Some(Polarity::Normal),
        Some("inversed") => Some(Polarity::Inversed),
        Some(other) => {
            check.fail(
                "lighting.dimmer.polarity",
                Some(format!("{other:?}")),
                "must be \"normal\" or \"inversed\"",
            );
            None
        }
    };
    let period_ns = raw.period_ns.unwrap_or(d.period_ns);
    check.range("lighting.dimmer.period_ns", period_ns, 1000, 1_000_000_000);
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
            (chip, channel.unwrap_or(d.channel))
        }
    };
    if backend == Some(DimmerBackend::Rppal) && !cfg!(feature = "rpi") {
        check.fail(
            "lighting.dimmer.backend",
            Some("\"rppal\"".into()),
            "this build has no rppal support (cargo feature `rpi`)",
        );
    }
    let settings = DimmerSettings {
        backend: backend?,
        chip,
        channel,
        period_ns,
        polarity: polarity?,
        state_file: state_file?,
    };
    let steps = raw.steps.unwrap_or_else(|| settings.default_steps());
    if raw.steps.is_some() && !(1..=period_ns.min(1_000_000)).contains(&u64::from(steps)) {
        check.fail(
            "lighting.dimmer.steps",
            Some(steps.to_string()),
            "must be between 1 and the period in nanoseconds (at most 1000000)",
        );
    }
    Some((settings, steps))
}

/// `state_file` of a relay or dimmer: a path with the simulated backend,
/// refused with the others (they write real outputs).
fn state_file(
    table: &str,
    simulated: bool,
    raw: &Option<String>,
    check: &mut Check<'_, '_>,
) -> Option<Option<std::path::PathBuf>> {
    let key = format!("{table}.state_file");
    match raw {
        None => Some(None),
        Some(path) if simulated => check.path(&key, path).map(Some),
        Some(path) => {
            check.fail(
                &key,
                Some(format!("{path:?}")),
                "only used with backend = \"simulated\"",
            );
            None
        }
    }
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
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    let settings = raw.and_then(|raw| {
        validate(
            raw,
            &mut Check {
                locator: &mut locator,
                problems: &mut problems,
                base,
            },
        )
    });
    match settings {
        Some(settings) if problems.is_empty() => Ok(settings),
        _ => Err(invalid(problems)),
    }
}
