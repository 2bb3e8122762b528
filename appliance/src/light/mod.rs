//! The pole's lighting: a lamp that follows presence at night and fails on.
//!
//! A pure [`policy::Policy`] decides the level from the time (passed in) and
//! what the pipeline sees; [`Lighting`] adds the outputs and writes them
//! only when the quantised level changes. At night, losing the camera or
//! the detector, or a pipeline without frames, sets the rated level
//! (fail-on); so do SIGTERM/SIGINT and dropping a [`Lighting`] (a panic
//! unwinds through it). What a crash cannot do is documented in the README
//! and covered by systemd's `ExecStopPost` (`luciole light --safe`) and by
//! wiring the relay so that a released line means lamp on.
//!
//! # Layout
//!
//! - [`settings`]: validated `[lighting]` settings and board profiles
//!   (`hw/*.toml`, built into the binary).
//! - [`policy`]: day/night, presence boost with ramp, hold, fade and cap,
//!   fail-safe, quantisation, change records.
//! - [`sun`]: sunrise and sunset from the NOAA solar position equations.
//! - [`schedule`]: a fixed local-time schedule in an IANA time zone.
//! - [`gpio`]: the relay on a Linux GPIO character device (`gpiocdev`).
//! - [`pwm`]: the dimmer on the Linux PWM sysfs interface.
//! - `rpi` (cargo feature `rpi`): both through `rppal` on a Raspberry Pi.
//! - [`simulated`]: outputs that touch no hardware (log, state file), for
//!   trying the lighting without a lamp.
//! - [`runner`]: the lighting thread the daemon starts: it feeds the policy
//!   at 20 Hz from what the pipeline reports and applies the safe state on
//!   shutdown.

pub mod energy;
pub mod gpio;
pub mod policy;
pub mod pwm;
#[cfg(feature = "rpi")]
pub mod rpi;
pub mod runner;
pub mod schedule;
pub mod settings;
pub mod simulated;
pub mod sun;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use policy::{Decision, Policy};
pub use settings::{
    DimmerBackend, DimmerSettings, LightingSettings, LineRef, Mode, Polarity, PresenceSettings,
    RelayBackend, RelaySettings,
};

/// Errors of the lighting outputs.
#[derive(Debug, thiserror::Error)]
pub enum LightError {
    /// No GPIO chip has the configured label or name.
    #[error("GPIO chip {chip:?} not found: {reason}; chips found: {}", list(found))]
    ChipNotFound {
        chip: String,
        reason: String,
        found: Vec<String>,
    },
    /// The chip has no line of that name or offset.
    #[error(
        "GPIO line {line} not found on chip {chip:?} ({path}): {reason}; named lines: {}",
        list(found)
    )]
    LineNotFound {
        chip: String,
        path: PathBuf,
        line: String,
        reason: String,
        found: Vec<String>,
    },
    /// The kernel refused a GPIO operation.
    #[error("GPIO {what} on {path}: {source}")]
    Gpio {
        what: String,
        path: PathBuf,
        #[source]
        source: gpiocdev::Error,
    },
    /// No PWM controller of that device name.
    #[error(
        "PWM chip {chip:?} not found under {root}: {reason}; chips found: {}",
        list(found)
    )]
    PwmChipNotFound {
        chip: String,
        root: PathBuf,
        reason: String,
        found: Vec<String>,
    },
    /// A sysfs attribute could not be read or written.
    #[error("cannot {op} {path}: {source}{}", hint(source))]
    Sysfs {
        op: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A PWM channel did not appear after export, or a value made no sense.
    #[error("PWM {path}: {reason}")]
    Pwm { path: PathBuf, reason: String },
    /// The Raspberry Pi backend (feature `rpi`) failed.
    #[error("rppal {what}: {reason}")]
    Rppal { what: String, reason: String },
    /// A simulated output could not write its state file.
    #[error("simulated output: cannot write {path}: {source}")]
    StateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A backend asked for is not built in.
    #[error("{0}")]
    Unsupported(String),
}

fn list(found: &[String]) -> String {
    if found.is_empty() {
        "none".into()
    } else {
        found.join(", ")
    }
}

fn hint(err: &std::io::Error) -> &'static str {
    match err.kind() {
        std::io::ErrorKind::PermissionDenied => {
            " (the luciole user writes them through the gpio group, which the udev rule 60-luciole.rules sets)"
        }
        _ => "",
    }
}

/// What the pipeline tells the lighting, about 20 times a second.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LightInputs {
    /// A configured class is in a configured zone or approaching along a
    /// configured line.
    pub presence: bool,
    /// The camera delivers frames.
    pub camera_ok: bool,
    /// The detector runs.
    pub detector_ok: bool,
    /// Time since the last frame went through the pipeline (`None`: no
    /// frame yet).
    pub last_frame_age: Option<Duration>,
}

impl LightInputs {
    /// Everything fine and nobody there.
    pub fn healthy() -> Self {
        Self {
            presence: false,
            camera_ok: true,
            detector_ok: true,
            last_frame_age: Some(Duration::ZERO),
        }
    }
}

/// Why the light is at its level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LightReason {
    /// Day (off) or night (base level) by the schedule or the sun.
    Schedule,
    /// Someone is there: boost.
    Presence,
    /// Camera, detector or pipeline lost at night: rated level.
    FailSafe,
    /// Set by hand (`luciole light --level`) or by a remote
    /// `light.override`.
    Manual,
    /// The daemon is stopping: rated level.
    SafeExit,
}

/// `light` event body: one change of target level or reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LightState {
    /// The new target level, 0 to 1, quantised to the output's resolution.
    pub level: f64,
    /// The target level before this change.
    pub previous: f64,
    pub reason: LightReason,
    /// Whether it is night by the schedule or the sun.
    pub night: bool,
    /// Free text for people, e.g. "camera lost".
    pub detail: String,
}

/// An on/off line switching the lamp's supply.
pub trait Relay: Send {
    /// Switches the lamp on or off (logical value: active-low is handled
    /// by the implementation).
    fn set(&mut self, on: bool) -> Result<(), LightError>;
    /// The last value set.
    fn is_on(&self) -> bool;
}

/// A PWM dimming output.
pub trait Dimmer: Send {
    /// Sets the level, 0 to 1: duty = level x period, enabled.
    fn set_level(&mut self, level: f64) -> Result<(), LightError>;
    /// Period in nanoseconds.
    fn period_ns(&self) -> u64;
    /// The last duty cycle written, in nanoseconds.
    fn duty_ns(&self) -> u64;
    fn polarity(&self) -> Polarity;
}

/// The duty cycle for a level: level x period, rounded to a nanosecond.
pub fn duty_for(level: f64, period_ns: u64) -> u64 {
    let level = if level.is_finite() {
        level.clamp(0.0, 1.0)
    } else {
        1.0
    };
    ((level * period_ns as f64).round() as u64).min(period_ns)
}

/// What the outputs are doing now (printed by `luciole light`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutputReport {
    pub level_pct: f64,
    /// `"on"`, `"off"`, or `"none"` without a relay.
    pub relay: &'static str,
    pub duty_ns: Option<u64>,
    pub period_ns: Option<u64>,
    pub polarity: Option<Polarity>,
}

/// The policy and the outputs it drives.
pub struct Lighting {
    policy: Policy,
    relay: Option<Box<dyn Relay>>,
    dimmer: Option<Box<dyn Dimmer>>,
    rated: f64,
    /// The level last written, if any.
    written: Option<f64>,
    safe_applied: bool,
}

impl Lighting {
    /// Opens the configured outputs (GPIO character device, PWM under
    /// `/sys`, rppal, or simulated) at the rated level: fail-on until told
    /// otherwise.
    pub fn open(settings: &LightingSettings) -> Result<Lighting, LightError> {
        Self::open_with_sysfs(settings, Path::new("/sys"))
    }

    /// [`Lighting::open`] with the PWM sysfs interface under another root
    /// (a stand-in file tree in tests and benchmarks; the daemon always
    /// uses `/sys`).
    pub fn open_with_sysfs(
        settings: &LightingSettings,
        sysfs: &Path,
    ) -> Result<Lighting, LightError> {
        let relay: Option<Box<dyn Relay>> = match &settings.relay {
            None => None,
            Some(relay) => Some(match relay.backend {
                RelayBackend::Cdev => Box::new(gpio::CdevRelay::open(relay, true)?),
                RelayBackend::Rppal => rppal_relay(relay)?,
                RelayBackend::Simulated => Box::new(simulated::SimulatedRelay::open(relay, true)?),
            }),
        };
        let rated = settings.rated;
        let dimmer: Option<Box<dyn Dimmer>> = match &settings.dimmer {
            None => None,
            Some(dimmer) => Some(match dimmer.backend {
                DimmerBackend::Sysfs => Box::new(pwm::SysfsPwm::open(sysfs, dimmer, rated)?),
                DimmerBackend::Rppal => rppal_dimmer(dimmer, rated)?,
                DimmerBackend::Simulated => {
                    Box::new(simulated::SimulatedDimmer::open(dimmer, rated)?)
                }
            }),
        };
        Ok(Self::with_outputs(settings, relay, dimmer))
    }

    /// The policy with outputs already opened (fakes in tests).
    pub fn with_outputs(
        settings: &LightingSettings,
        relay: Option<Box<dyn Relay>>,
        dimmer: Option<Box<dyn Dimmer>>,
    ) -> Lighting {
        Lighting {
            policy: Policy::new(settings),
            relay,
            dimmer,
            rated: settings.rated,
            written: None,
            safe_applied: false,
        }
    }

    /// See [`Policy::set_manual`].
    pub fn set_manual(&mut self, manual: Option<(f64, i64)>) {
        self.policy.set_manual(manual);
    }

    /// Advances the policy to `now_utc_ms` and writes the outputs when the
    /// quantised level changed. Returns the change to publish, if any.
    pub fn update(
        &mut self,
        now_utc_ms: i64,
        inputs: &LightInputs,
    ) -> Result<Option<LightState>, LightError> {
        let decision = self.policy.step(now_utc_ms, inputs);
        if self.written != Some(decision.level) {
            self.write(decision.level)?;
        }
        Ok(decision.change)
    }

    /// Writes a level now, bypassing the policy: relay on iff level > 0,
    /// dimmer at level x period.
    pub fn write(&mut self, level: f64) -> Result<(), LightError> {
        let level = level.clamp(0.0, 1.0);
        self.safe_applied = false;
        // Light up: relay first, then the dimmer; dim out: the reverse, so
        // the lamp never flashes at a stale level.
        if level > 0.0 {
            if let Some(relay) = self.relay.as_mut().filter(|r| !r.is_on()) {
                relay.set(true)?;
            }
            if let Some(dimmer) = &mut self.dimmer {
                dimmer.set_level(level)?;
            }
        } else {
            if let Some(dimmer) = &mut self.dimmer {
                dimmer.set_level(0.0)?;
            }
            if let Some(relay) = self.relay.as_mut().filter(|r| r.is_on()) {
                relay.set(false)?;
            }
        }
        self.written = Some(level);
        Ok(())
    }

    /// The safe state: rated level, relay on. Also applied on drop.
    pub fn safe(&mut self) -> Result<(), LightError> {
        self.write(self.rated)?;
        self.safe_applied = true;
        Ok(())
    }

    /// The change record of a safe exit, for the daemon's last event.
    pub fn safe_exit_record(&self, detail: &str) -> LightState {
        LightState {
            level: self.rated,
            previous: self.policy.target(),
            reason: LightReason::SafeExit,
            night: self.policy.night(),
            detail: detail.into(),
        }
    }

    /// What the outputs do now.
    pub fn report(&self) -> OutputReport {
        OutputReport {
            level_pct: (self.written.unwrap_or(self.rated) * 1000.0).round() / 10.0,
            relay: match &self.relay {
                None => "none",
                Some(r) if r.is_on() => "on",
                Some(_) => "off",
            },
            duty_ns: self.dimmer.as_ref().map(|d| d.duty_ns()),
            period_ns: self.dimmer.as_ref().map(|d| d.period_ns()),
            polarity: self.dimmer.as_ref().map(|d| d.polarity()),
        }
    }

    /// The policy, for inspection.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

impl Drop for Lighting {
    /// Leaves the lamp at the rated level when the owner forgot, or a panic
    /// unwinds: the GPIO line is released right after, so the hardware
    /// default (wired fail-on) takes over.
    fn drop(&mut self) {
        if !self.safe_applied {
            if let Err(err) = self.safe() {
                tracing::error!("lighting: cannot apply the safe state on exit: {err}");
            }
        }
    }
}

#[cfg(feature = "rpi")]
fn rppal_relay(relay: &RelaySettings) -> Result<Box<dyn Relay>, LightError> {
    Ok(Box::new(rpi::RppalRelay::open(relay, true)?))
}

#[cfg(not(feature = "rpi"))]
fn rppal_relay(_: &RelaySettings) -> Result<Box<dyn Relay>, LightError> {
    Err(LightError::Unsupported(
        "lighting.relay.backend = \"rppal\" needs a build with the cargo feature `rpi`".into(),
    ))
}

#[cfg(feature = "rpi")]
fn rppal_dimmer(dimmer: &DimmerSettings, level: f64) -> Result<Box<dyn Dimmer>, LightError> {
    Ok(Box::new(rpi::RppalPwm::open(dimmer, level)?))
}

#[cfg(not(feature = "rpi"))]
fn rppal_dimmer(_: &DimmerSettings, _: f64) -> Result<Box<dyn Dimmer>, LightError> {
    Err(LightError::Unsupported(
        "lighting.dimmer.backend = \"rppal\" needs a build with the cargo feature `rpi`".into(),
    ))
}
