//! The lighting policy: pure logic, time passed in.
//!
//! Each [`Policy::step`] takes the UTC time and what the pipeline sees and
//! returns the output level. The target is, in order of precedence:
//! day: 0; night with the camera or detector lost, or no frame for
//! `stale`: the rated level (fail-safe); night with presence (held `hold`
//! after the last sighting, at most `boost_cap` per unbroken episode): the
//! boost level; otherwise the night level. The output moves towards the
//! target at full scale per `ramp_up` when rising and per `fade` when
//! falling, and is quantised to the output's resolution. A change of
//! target or reason (not a ramp step) yields a [`LightState`] record.
//!
//! A manual override ([`Policy::set_manual`], from a remote command) takes
//! precedence over all of these until it expires.

use std::time::Duration;

use super::settings::{LightingSettings, Mode};
use super::{sun, LightInputs, LightReason, LightState};

/// Before this instant (2020-01-01T00:00:00Z) the clock is taken as not
/// set: a board without a battery-backed clock boots in 1970. The lamp is
/// then at the rated level whatever the schedule says (fail-on).
pub const CLOCK_FLOOR_MS: i64 = 1_577_836_800_000;

/// What the policy decided at one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The output level now, 0 to 1, quantised.
    pub level: f64,
    /// Where the level is heading, quantised.
    pub target: f64,
    pub reason: LightReason,
    pub night: bool,
    /// Set when the target or the reason changed at this step.
    pub change: Option<LightState>,
}

/// The lighting policy's state.
#[derive(Clone, Debug)]
pub struct Policy {
    settings: LightingSettings,
    /// The unquantised output level.
    level: f64,
    last_ms: Option<i64>,
    /// Start of the current presence episode.
    episode_start: Option<i64>,
    last_presence: Option<i64>,
    /// The target and reason last reported.
    published: Option<(f64, LightReason)>,
    night: bool,
    /// A level set by a remote command, and until when (UTC ms).
    manual: Option<(f64, i64)>,
}

impl Policy {
    /// A policy whose outputs start at the rated level (as opened).
    pub fn new(settings: &LightingSettings) -> Self {
        Self {
            settings: settings.clone(),
            level: settings.rated,
            last_ms: None,
            episode_start: None,
            last_presence: None,
            published: None,
            night: false,
            manual: None,
        }
    }

    /// Holds the target at `level` (0 to 1) until `until_utc_ms` whatever
    /// the schedule, presence or failures say (a remote `light.override`);
    /// `None` gives the lamp back to the policy.
    pub fn set_manual(&mut self, manual: Option<(f64, i64)>) {
        self.manual = manual.map(|(level, until)| (level.clamp(0.0, 1.0), until));
    }

    /// Advances to `now_utc_ms` (UTC ms since the epoch).
    pub fn step(&mut self, now_utc_ms: i64, inputs: &LightInputs) -> Decision {
        let s = &self.settings;
        let clock_set = now_utc_ms >= CLOCK_FLOOR_MS;
        let night = !clock_set
            || match &s.mode {
                Mode::Schedule(schedule) => schedule.is_night(now_utc_ms),
                Mode::Astronomical {
                    latitude,
                    longitude,
                    sunset_offset,
                    sunrise_offset,
                } => sun::is_night(
                    now_utc_ms,
                    *latitude,
                    *longitude,
                    sunset_offset * 60_000,
                    sunrise_offset * 60_000,
                ),
            };
        self.night = night;

        // Presence episodes: one starts at a sighting after a quiet hold
        // period and ends when the hold runs out.
        let hold = ms(s.hold);
        if let Some(last) = self.last_presence {
            if now_utc_ms - last > hold {
                self.last_presence = None;
                self.episode_start = None;
            }
        }
        if inputs.presence {
            self.episode_start.get_or_insert(now_utc_ms);
            self.last_presence = Some(now_utc_ms);
        }
        let capped = self
            .episode_start
            .is_some_and(|start| now_utc_ms - start >= ms(s.boost_cap));

        let failure = if !clock_set {
            Some("clock not set".to_string())
        } else if !inputs.camera_ok {
            Some("camera lost".to_string())
        } else if !inputs.detector_ok {
            Some("detector lost".to_string())
        } else {
            match inputs.last_frame_age {
                None => Some("no frame yet".to_string()),
                Some(age) if age > s.stale => Some(format!("no frame for {} s", age.as_secs())),
                Some(_) => None,
            }
        };

        if self.manual.is_some_and(|(_, until)| now_utc_ms >= until) {
            self.manual = None;
        }
        let (target, reason, detail) = if let Some((level, until)) = self.manual {
            let until = jiff::Timestamp::from_millisecond(until)
                .map(|t| t.to_string())
                .unwrap_or_else(|_| format!("{until} ms"));
            (
                level,
                LightReason::Manual,
                format!("override until {until}"),
            )
        } else if !night {
            (
                0.0,
                LightReason::Schedule,
                format!("day ({})", self.describe_mode()),
            )
        } else if let Some(failure) = failure {
            (s.rated, LightReason::FailSafe, failure)
        } else if self.last_presence.is_some() && !capped {
            (s.boost, LightReason::Presence, "presence".to_string())
        } else if self.last_presence.is_some() {
            (
                s.night,
                LightReason::Schedule,
                format!("boost capped after {} s", s.boost_cap.as_secs()),
            )
        } else {
            (
                s.night,
                LightReason::Schedule,
                format!("night ({})", self.describe_mode()),
            )
        };
        let target = quantise(target, s.steps);

        match self.last_ms {
            None => self.level = target,
            Some(last) => {
                let dt = (now_utc_ms - last).max(0) as f64;
                if self.level < target {
                    let rate = ms(s.ramp_up) as f64;
                    self.level = if rate <= 0.0 {
                        target
                    } else {
                        (self.level + dt / rate).min(target)
                    };
                } else if self.level > target {
                    let rate = ms(s.fade) as f64;
                    self.level = if rate <= 0.0 {
                        target
                    } else {
                        (self.level - dt / rate).max(target)
                    };
                }
            }
        }
        self.last_ms = Some(now_utc_ms);

        let change = (self.published != Some((target, reason))).then(|| {
            let previous = self.published.map_or(s.rated, |(level, _)| level);
            self.published = Some((target, reason));
            LightState {
                level: target,
                previous,
                reason,
                night,
                detail,
            }
        });
        Decision {
            level: quantise(self.level, self.settings.steps),
            target,
            reason,
            night,
            change,
        }
    }

    /// The target last decided (the rated level before the first step).
    pub fn target(&self) -> f64 {
        self.published
            .map_or(self.settings.rated, |(level, _)| level)
    }

    /// Whether the last step was at night.
    pub fn night(&self) -> bool {
        self.night
    }

    fn describe_mode(&self) -> String {
        match &self.settings.mode {
            Mode::Schedule(schedule) => format!("schedule {}", schedule.describe()),
            Mode::Astronomical { .. } => "sun".to_string(),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Rounds a level to one of `steps` levels above 0; a level above 0 never
/// rounds to 0 (a relay alone, `steps = 1`, is on for any level above 0).
pub fn quantise(level: f64, steps: u32) -> f64 {
    if level.is_nan() || level <= 0.0 {
        return 0.0;
    }
    let steps = f64::from(steps.max(1));
    ((level.min(1.0) * steps).round().max(1.0)) / steps
}
