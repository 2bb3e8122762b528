//! Validated `[lighting]` settings, and the board profiles of `hw/` that a
//! configuration can name (`board = "rpi4"`) to fill in chips and lines.
//!
//! The profiles are built into the binary, so a pole needs no extra file.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::schedule::Schedule;

/// `[lighting]`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct LightingSettings {
    /// How night is told from day.
    pub mode: Mode,
    /// Night level without presence, 0 to 1.
    pub night: f64,
    /// Level while someone is there, 0 to 1.
    pub boost: f64,
    /// Fail-safe level (also the safe state on exit), 0 to 1.
    pub rated: f64,
    /// Time for a full-scale rise.
    pub ramp_up: Duration,
    /// Boost kept this long after the last presence.
    pub hold: Duration,
    /// Time for a full-scale fall.
    pub fade: Duration,
    /// Longest boost without a break in presence.
    pub boost_cap: Duration,
    /// No frame for this long at night: fail-safe.
    pub stale: Duration,
    pub presence: PresenceSettings,
    pub relay: Option<RelaySettings>,
    pub dimmer: Option<DimmerSettings>,
    /// Distinct output levels above 0 (1 for a relay alone).
    pub steps: u32,
    /// The lamp's power at 100 %, watts; with it, each night's energy is
    /// reported ([`super::energy`]).
    pub lamp_watts: Option<f64>,
}

impl LightingSettings {
    /// Lighting by `mode` with no output yet: 30 % at night, 100 % while
    /// someone is there and as the fail-safe level, a 0.5 s rise, 30 s of
    /// hold, a 10 s fade, boosts of at most 10 minutes, fail-safe after 5 s
    /// without a frame; people and bicycles count as presence (in no zone
    /// and along no line until some are named).
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            night: 0.3,
            boost: 1.0,
            rated: 1.0,
            ramp_up: Duration::from_millis(500),
            hold: Duration::from_secs(30),
            fade: Duration::from_secs(10),
            boost_cap: Duration::from_secs(600),
            stale: Duration::from_secs(5),
            presence: PresenceSettings {
                classes: vec!["person".into(), "bicycle".into()],
                zones: Vec::new(),
                lines: Vec::new(),
            },
            relay: None,
            dimmer: None,
            steps: 1,
            lamp_watts: None,
        }
    }
}

/// Day and night.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// A fixed local-time schedule.
    Schedule(Schedule),
    /// Sunset to sunrise at a position, with offsets (positive: later).
    Astronomical {
        latitude: f64,
        longitude: f64,
        sunset_offset: i64,
        sunrise_offset: i64,
    },
}

/// What counts as presence; the pipeline evaluates it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresenceSettings {
    pub classes: Vec<String>,
    pub zones: Vec<String>,
    pub lines: Vec<String>,
}

/// A GPIO line: by name or by offset on its chip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineRef {
    Name(String),
    Offset(u32),
}

impl std::fmt::Display for LineRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineRef::Name(name) => write!(f, "{name:?}"),
            LineRef::Offset(offset) => write!(f, "offset {offset}"),
        }
    }
}

/// How the relay is driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayBackend {
    /// The Linux GPIO character device.
    Cdev,
    /// rppal on a Raspberry Pi (cargo feature `rpi`); the line is a BCM
    /// GPIO number.
    Rppal,
    /// No hardware: logged, and written to `state_file` when set.
    Simulated,
}

/// `[lighting.relay]`, validated (profile outputs resolved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelaySettings {
    pub backend: RelayBackend,
    /// gpiochip label (or `gpiochipN`).
    pub chip: String,
    pub line: LineRef,
    /// Line low means lamp on.
    pub active_low: bool,
    /// Simulated backend: where the relay's state is written.
    pub state_file: Option<std::path::PathBuf>,
}

/// How the dimmer is driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DimmerBackend {
    /// The Linux PWM sysfs interface.
    Sysfs,
    /// rppal on a Raspberry Pi (cargo feature `rpi`).
    Rppal,
    /// No hardware: logged, and written to `state_file` when set.
    Simulated,
}

/// PWM output polarity, as the kernel names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Polarity {
    Normal,
    Inversed,
}

impl Polarity {
    /// The word the sysfs `polarity` attribute takes.
    pub fn sysfs(self) -> &'static str {
        match self {
            Polarity::Normal => "normal",
            Polarity::Inversed => "inversed",
        }
    }
}

/// `[lighting.dimmer]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DimmerSettings {
    pub backend: DimmerBackend,
    /// PWM controller device name (`fe20c000.pwm`) or `pwmchipN`.
    pub chip: String,
    pub channel: u32,
    pub period_ns: u64,
    pub polarity: Polarity,
    /// Simulated backend: where the dimmer's state is written.
    pub state_file: Option<std::path::PathBuf>,
}

impl DimmerSettings {
    /// Distinct levels above 0 when the configuration names none: 1000, or
    /// the period in nanoseconds when shorter.
    pub fn default_steps(&self) -> u32 {
        self.period_ns.min(1000) as u32
    }
}

impl Default for DimmerSettings {
    /// Channel 0 of no controller yet, through sysfs, at 1 kHz (a period of
    /// 1 ms), normal polarity.
    fn default() -> Self {
        Self {
            backend: DimmerBackend::Sysfs,
            chip: String::new(),
            channel: 0,
            period_ns: 1_000_000,
            polarity: Polarity::Normal,
            state_file: None,
        }
    }
}

/// A board profile (`hw/<name>.toml`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardProfile {
    pub board: BoardInfo,
    /// Named outputs a configuration can use.
    pub outputs: BTreeMap<String, BoardOutput>,
}

/// What the board is and how it is set up.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardInfo {
    pub name: String,
    pub soc: String,
    /// Camera interface(s) and how luciole reaches them.
    pub camera: String,
    /// Device-tree overlays (config.txt lines or jetson-io choices).
    pub overlays: Vec<String>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One named output of a board.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum BoardOutput {
    /// A GPIO line for a relay.
    Gpio {
        chip: String,
        line: String,
        /// Physical pin on the 40-pin header.
        header_pin: u32,
        /// The SoC's GPIO number (BCM numbering on a Pi), for rppal.
        gpio: Option<u32>,
        #[serde(default)]
        active_low: bool,
    },
    /// A PWM channel for a dimmer.
    Pwm {
        chip: String,
        channel: u32,
        header_pin: u32,
        gpio: Option<u32>,
    },
}

/// The profiles built into the binary: (name, TOML text).
pub const BOARDS: [(&str, &str); 3] = [
    ("rpi4", include_str!("../../../hw/rpi4.toml")),
    ("rpi5", include_str!("../../../hw/rpi5.toml")),
    (
        "jetson-orin-nano",
        include_str!("../../../hw/jetson-orin-nano.toml"),
    ),
];

/// The profile of a board name, or why not.
pub fn board(name: &str) -> Result<BoardProfile, String> {
    let (_, text) = BOARDS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
        let names: Vec<&str> = BOARDS.iter().map(|(n, _)| *n).collect();
        format!("unknown board: expected one of {}", names.join(", "))
    })?;
    toml::from_str(text).map_err(|e| format!("profile hw/{name}.toml: {}", e.message()))
}
