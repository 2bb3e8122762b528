//! When the model runs: the adaptive inference rate.
//!
//! Motion gating ([`crate::motion`]) decides whether anything moves; the
//! pacer then decides how often the model must look at what moves. Between
//! two inferences the tracker predicts every box with its Kalman filter
//! ([`crate::track::Tracker::predict`]), so the model only has to run as
//! often as a prediction would otherwise go wrong:
//!
//! - each track asks to be seen again before it moves half its box's
//!   height (fast relative to its size: often; slow: seldom);
//! - a track the last inference missed (hidden behind a post, crossing
//!   someone) and a tentative one are looked at again within two frames at
//!   `max_fps`: the model must find them as soon as they show, or the
//!   tracker loses or never confirms them;
//! - the scene gets its most demanding track's wait, bounded by `max_fps`
//!   and `min_fps`: while anything moves, even with nothing tracked yet (a
//!   waving tree, someone coming in), the model runs at least `min_fps`
//!   times a second.
//!
//! Counting lines and zone edges do not hurry the model: measured on the
//! demo footage, looking more often near them cost a third more inferences
//! and moved the counts further from the every-frame run
//! (docs/performance.md). Motion gating's refresh (nothing moved for
//! `motion.refresh_ms`) still runs the model at once. With
//! `adaptive = false` the model runs on every frame motion gating lets
//! through.
//!
//! Pure: time is the frames' own, so a recording gives the same decisions
//! on every run.

use std::time::Duration;

use crate::motion::Verdict;
use crate::track::Track;

/// `[detect] adaptive`, `min_fps`, `max_fps`, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaceSettings {
    /// Space inferences by what the scene needs; off: every frame motion
    /// gating lets through goes to the model.
    pub adaptive: bool,
    /// Inferences per second, at least, while anything moves.
    pub min_fps: f32,
    /// Inferences per second, at most (the camera's rate may be lower).
    pub max_fps: f32,
}

impl Default for PaceSettings {
    fn default() -> Self {
        PaceSettings {
            // On the demo footage: half the inferences, every count within
            // one of the every-frame run (docs/performance.md).
            adaptive: true,
            min_fps: 3.0,
            max_fps: 10.0,
        }
    }
}

/// What a frame gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The model runs on it.
    Run,
    /// The tracker predicts the boxes (something moves, but the model ran
    /// recently enough).
    Predict,
    /// Nothing moved: the boxes stay where they are.
    Still,
}

/// How far a track may move between two inferences on prediction alone,
/// as a fraction of its box's height.
const STEP: f32 = 0.5;
/// A missed or tentative track is looked at again after this many of the
/// shortest waits.
const AGAIN: f32 = 2.0;
/// Frame times jitter: an inference is due this fraction of its interval
/// early.
const SLACK: f32 = 0.125;

/// Decides, frame by frame, whether the model runs.
#[derive(Debug, Clone)]
pub struct Pacer {
    settings: PaceSettings,
    last_run: Option<Duration>,
    /// Time from the last inference to the next, planned after it.
    interval: Duration,
}

impl Pacer {
    pub fn new(settings: PaceSettings) -> Self {
        Pacer {
            settings,
            last_run: None,
            interval: Duration::ZERO,
        }
    }

    /// The shortest time between two inferences.
    fn shortest(&self) -> f32 {
        1.0 / self.settings.max_fps
    }

    /// The longest time between two inferences while anything moves.
    fn longest(&self) -> f32 {
        1.0 / self.settings.min_fps
    }

    /// What the frame at `time` gets: `gate` is motion gating's verdict on
    /// it, `tentative` whether the tracker holds a track waiting to be
    /// confirmed (it must be seen again before it can be predicted).
    pub fn decide(&mut self, time: Duration, gate: Verdict, tentative: bool) -> Decision {
        let moving = gate.runs();
        if !self.settings.adaptive {
            return if moving || tentative {
                self.last_run = Some(time);
                Decision::Run
            } else {
                Decision::Still
            };
        }
        if !moving && !tentative {
            return Decision::Still;
        }
        let wait = if tentative {
            self.interval.min(seconds(AGAIN * self.shortest()))
        } else {
            self.interval
        };
        let due = gate == Verdict::Refresh
            || self.last_run.is_none_or(|last| {
                // Earlier than the last run: a new stream's clock.
                time < last || time.saturating_sub(last) + wait.mul_f32(SLACK) >= wait
            });
        if due {
            self.last_run = Some(time);
            Decision::Run
        } else {
            Decision::Predict
        }
    }

    /// Plans the next inference after one that left the tracker holding
    /// the confirmed tracks `live`.
    pub fn plan(&mut self, live: &[Track]) {
        let (shortest, longest) = (self.shortest(), self.longest());
        let wait = live
            .iter()
            .map(|track| track_wait(track, shortest, longest))
            .fold(longest, f32::min);
        self.interval = seconds(wait.clamp(shortest, longest));
    }

    /// The time planned between the last inference and the next.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

/// Seconds as a duration, to the microsecond (so 1/10 s is 100 ms).
fn seconds(s: f32) -> Duration {
    Duration::from_micros((f64::from(s) * 1e6).round() as u64)
}

/// The longest wait before the model must see `track` again, in seconds
/// (before the bounds).
fn track_wait(track: &Track, shortest: f32, longest: f32) -> f32 {
    let [_, y0, _, y1] = track.bbox;
    let height = (y1 - y0).max(1.0);
    let speed = track.velocity[0].hypot(track.velocity[1]);
    let wait = if speed > 0.0 {
        STEP * height / speed
    } else {
        longest
    };
    if track.measured {
        wait
    } else {
        wait.min(AGAIN * shortest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::geometry::Point;
    use crate::detect::{Class, Detection};
    use crate::track::{TrackSettings, Tracker};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A confirmed, measured track: a box `w`×`h` with its foot at
    /// `foot`, moving at `velocity` pixels per second.
    fn track(foot: Point, w: f32, h: f32, velocity: [f32; 2]) -> Track {
        let mut tracker = Tracker::with_first_id(TrackSettings::default(), 1);
        let mut t = Duration::ZERO;
        let mut update = Default::default();
        for _ in 0..5 {
            let bbox = [foot[0] - w / 2.0, foot[1] - h, foot[0] + w / 2.0, foot[1]];
            let found = [Detection {
                class: Class::Person,
                score: 0.9,
                bbox,
            }];
            update = tracker.update(t, Some(&found));
            t += ms(100);
        }
        let crate::track::Update { mut live, .. } = update;
        let mut track = live.pop().expect("confirmed");
        track.velocity = velocity;
        track
    }

    fn settings() -> PaceSettings {
        PaceSettings {
            adaptive: true,
            min_fps: 2.0,
            max_fps: 10.0,
        }
    }

    fn planned(live: &[Track]) -> Duration {
        let mut pacer = Pacer::new(settings());
        pacer.plan(live);
        pacer.interval()
    }

    #[test]
    fn a_slow_track_is_seen_at_the_floor_rate_and_a_fast_one_often() {
        let slow = track([300.0, 300.0], 40.0, 100.0, [30.0, 40.0]);
        assert_eq!(planned(std::slice::from_ref(&slow)), ms(500));
        // 100 px high at 250 px/s: half its height in 0.2 s.
        let fast = track([300.0, 300.0], 40.0, 100.0, [150.0, 200.0]);
        assert_eq!(planned(std::slice::from_ref(&fast)), ms(200));
        // The scene waits for its most demanding track.
        assert_eq!(planned(&[slow, fast]), ms(200));
        // Faster than max_fps can follow: max_fps.
        let racing = track([300.0, 300.0], 40.0, 100.0, [1000.0, 0.0]);
        assert_eq!(planned(&[racing]), ms(100));
        // Standing still, or nothing tracked: the floor.
        let still = track([300.0, 300.0], 40.0, 100.0, [0.0, 0.0]);
        assert_eq!(planned(&[still]), ms(500));
        assert_eq!(planned(&[]), ms(500));
    }

    #[test]
    fn a_track_the_last_inference_missed_is_looked_for_within_two_frames_at_max_fps() {
        let mut hidden = track([300.0, 300.0], 40.0, 100.0, [0.0, 0.0]);
        hidden.measured = false;
        assert_eq!(planned(std::slice::from_ref(&hidden)), ms(200));
        let seen = track([100.0, 300.0], 40.0, 100.0, [10.0, 0.0]);
        assert_eq!(planned(&[seen, hidden]), ms(200));
        // A fast one missed is looked for at least as often as when seen.
        let mut fast = track([300.0, 300.0], 40.0, 100.0, [1000.0, 0.0]);
        fast.measured = false;
        assert_eq!(planned(&[fast]), ms(100));
        // With a lower max_fps, two of its frames (above the floor).
        let mut pacer = Pacer::new(PaceSettings {
            min_fps: 1.0,
            max_fps: 4.0,
            ..settings()
        });
        let mut hidden = track([300.0, 300.0], 40.0, 100.0, [0.0, 0.0]);
        hidden.measured = false;
        pacer.plan(std::slice::from_ref(&hidden));
        assert_eq!(pacer.interval(), ms(500));
        hidden.measured = true;
        pacer.plan(&[hidden]);
        assert_eq!(pacer.interval(), ms(1000));
    }

    #[test]
    fn the_model_runs_when_due_predicts_between_and_skips_still_frames() {
        let slow = track([300.0, 300.0], 40.0, 100.0, [5.0, 0.0]);
        let mut pacer = Pacer::new(settings());
        let mut decisions = Vec::new();
        for i in 0..12u64 {
            let time = ms(100 * i);
            let gate = if i < 10 {
                Verdict::Motion
            } else {
                Verdict::Skip
            };
            let d = pacer.decide(time, gate, false);
            if d == Decision::Run {
                pacer.plan(std::slice::from_ref(&slow));
            }
            decisions.push(d);
        }
        use Decision::*;
        assert_eq!(
            decisions,
            [
                Run, Predict, Predict, Predict, Predict, Run, Predict, Predict, Predict, Predict,
                Still, Still
            ]
        );
        // A tentative track is looked at again within two of the shortest
        // waits, also without motion; a refresh runs at once.
        assert_eq!(pacer.decide(ms(1200), Verdict::Skip, true), Run);
        assert_eq!(pacer.decide(ms(1300), Verdict::Motion, true), Predict);
        assert_eq!(pacer.decide(ms(1400), Verdict::Motion, true), Run);
        assert_eq!(pacer.decide(ms(1410), Verdict::Refresh, false), Run);
        // Frame times a little early still count as due.
        let mut pacer = Pacer::new(settings());
        assert_eq!(pacer.decide(ms(0), Verdict::Motion, false), Run);
        pacer.plan(&[]);
        assert_eq!(pacer.decide(ms(480), Verdict::Motion, false), Run);
    }

    #[test]
    fn without_adaptive_every_moving_frame_goes_to_the_model() {
        let mut pacer = Pacer::new(PaceSettings {
            adaptive: false,
            ..settings()
        });
        for i in 0..5 {
            assert_eq!(
                pacer.decide(ms(10 * i), Verdict::Motion, false),
                Decision::Run
            );
            pacer.plan(&[]);
        }
        assert_eq!(pacer.decide(ms(60), Verdict::Always, false), Decision::Run);
        assert_eq!(pacer.decide(ms(70), Verdict::Skip, false), Decision::Still);
        assert_eq!(pacer.decide(ms(80), Verdict::Skip, true), Decision::Run);
    }
}
