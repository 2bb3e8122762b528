//! When the model runs: the adaptive inference rate.
//!
//! Motion gating ([`crate::motion`]) decides whether anything moves; the
//! pacer then decides how often the model must look at what moves. Between
//! two inferences the tracker predicts every box from its velocity
//! ([`crate::track::Tracker::predict`]), so the model only has to run as
//! often as a prediction would otherwise go wrong:
//!
//! - each track asks to be seen again before it moves half its box's
//!   height (fast relative to its size: often; slow: seldom), and before
//!   it can reach the band around a counting line or a zone's edge;
//! - a track that is young (fewer than five detections), was missed by the
//!   last inference, or stands in such a band (where a count or a dwell
//!   time is decided) asks twice as often;
//! - a tentative track is looked at again within two frames at `max_fps`;
//! - the scene gets its most demanding track's wait, bounded by `max_fps`
//!   and `min_fps`: while anything moves, even with nothing tracked yet (a
//!   waving tree, someone coming in), the model runs at least `min_fps`
//!   times a second.
//!
//! Motion gating's refresh (nothing moved for `motion.refresh_ms`) still
//! runs the model at once. With `adaptive = false` (the default, until the
//! rate meets its target on real footage: see docs/performance.md) the
//! model runs on every frame motion gating lets through.
//!
//! Pure: time is the frames' own, so a recording gives the same decisions
//! on every run.

use std::time::Duration;

use crate::analytics::geometry::segment_distance;
use crate::analytics::AnalyticsSettings;
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
            // Off until it meets its target on real footage: half the
            // inferences with every count within ±1 (docs/performance.md).
            adaptive: false,
            min_fps: 2.0,
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
/// Near a line or a zone's edge: within this many box heights (plus the
/// line's hysteresis) of it.
const NEAR: f32 = 0.5;
/// A track with fewer matched detections than this is young: its velocity
/// is not known well enough to predict on.
const YOUNG_HITS: u32 = 5;
/// Near a line or a zone's edge, young or missed by the last inference: the
/// wait is this fraction of the usual one.
const CAREFUL: f32 = 0.5;
/// A tentative track is looked at again after this many of the shortest
/// waits.
const TENTATIVE: f32 = 2.0;
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
            self.interval.min(seconds(TENTATIVE * self.shortest()))
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
    /// the confirmed tracks `live`, on the scene's lines and zones.
    pub fn plan(&mut self, live: &[Track], scene: &AnalyticsSettings) {
        let (shortest, longest) = (self.shortest(), self.longest());
        let wait = live
            .iter()
            .map(|track| track_wait(track, scene, longest))
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
fn track_wait(track: &Track, scene: &AnalyticsSettings, longest: f32) -> f32 {
    let [_, y0, _, y1] = track.bbox;
    let height = (y1 - y0).max(1.0);
    let speed = track.velocity[0].hypot(track.velocity[1]);
    let mut wait = if speed > 0.0 {
        STEP * height / speed
    } else {
        longest
    };
    let counted =
        |classes: &[crate::detect::Class]| classes.is_empty() || classes.contains(&track.class);
    let lines = scene
        .lines
        .iter()
        .filter(|l| counted(&l.classes))
        .map(|l| (l.from, l.to, l.hysteresis_px));
    let zone_edges = scene
        .zones
        .iter()
        .filter(|z| counted(&z.classes))
        .flat_map(|z| {
            let n = z.polygon.len();
            (0..n).map(move |i| (z.polygon[i], z.polygon[(i + 1) % n], 0.0))
        });
    let foot = track.foot();
    let mut careful = !track.measured || track.hits < YOUNG_HITS;
    for (a, b, hysteresis) in lines.chain(zone_edges) {
        let gap = segment_distance(a, b, foot) - (hysteresis + NEAR * height);
        if gap <= 0.0 {
            careful = true;
        } else if speed > 0.0 {
            // Seen again before it can reach the band.
            wait = wait.min(gap / speed);
        }
    }
    if careful {
        wait * CAREFUL
    } else {
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::geometry::Point;
    use crate::analytics::{LineSettings, ZoneSettings};
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
        for _ in 0..YOUNG_HITS {
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

    fn planned(live: &[Track], scene: &AnalyticsSettings) -> Duration {
        let mut pacer = Pacer::new(settings());
        pacer.plan(live, scene);
        pacer.interval()
    }

    #[test]
    fn a_slow_track_far_from_everything_is_seen_at_the_floor_rate_and_a_fast_one_often() {
        let scene = AnalyticsSettings::default();
        let slow = track([300.0, 300.0], 40.0, 100.0, [30.0, 40.0]);
        assert_eq!(planned(std::slice::from_ref(&slow), &scene), ms(500));
        // 100 px high at 250 px/s: half its height in 0.2 s.
        let fast = track([300.0, 300.0], 40.0, 100.0, [150.0, 200.0]);
        assert_eq!(planned(std::slice::from_ref(&fast), &scene), ms(200));
        // The scene waits for its most demanding track.
        assert_eq!(planned(&[slow, fast], &scene), ms(200));
        // Faster than max_fps can follow: max_fps.
        let racing = track([300.0, 300.0], 40.0, 100.0, [1000.0, 0.0]);
        assert_eq!(planned(&[racing], &scene), ms(100));
        // Nothing tracked: the floor.
        assert_eq!(planned(&[], &scene), ms(500));
    }

    #[test]
    fn tracks_near_a_line_or_a_zone_edge_young_or_missed_are_seen_twice_as_often() {
        let mut scene = AnalyticsSettings::default();
        scene
            .lines
            .push(LineSettings::new("l", [400.0, 0.0], [400.0, 600.0]));
        // Half a box height (50) + hysteresis (12) from the line: near.
        let near = track([340.0, 300.0], 40.0, 100.0, [0.0, 0.0]);
        assert_eq!(planned(&[near], &scene), ms(250));
        let near = track([340.0, 300.0], 40.0, 100.0, [0.0, 250.0]);
        assert_eq!(planned(&[near], &scene), ms(100));
        // Far from it and still: the floor.
        let far = track([100.0, 300.0], 40.0, 100.0, [0.0, 0.0]);
        assert_eq!(planned(std::slice::from_ref(&far), &scene), ms(500));
        // Walking towards it at 100 px/s, 38 px from the band: seen again
        // before it is in it.
        let walking = track([300.0, 300.0], 40.0, 100.0, [100.0, 0.0]);
        assert_eq!(planned(&[walking], &scene), ms(380));
        // A line for cars only does not hurry a person.
        scene.lines[0].classes = vec![Class::Car];
        let near = track([340.0, 300.0], 40.0, 100.0, [0.0, 0.0]);
        assert_eq!(planned(std::slice::from_ref(&near), &scene), ms(500));
        // A zone's edge does.
        scene.zones.push(ZoneSettings {
            name: "z".into(),
            polygon: vec![[0.0, 0.0], [360.0, 0.0], [360.0, 600.0], [0.0, 600.0]],
            classes: Vec::new(),
        });
        assert_eq!(planned(std::slice::from_ref(&near), &scene), ms(250));
        scene.zones.clear();
        let mut young = far.clone();
        young.hits = YOUNG_HITS - 1;
        assert_eq!(planned(&[young], &scene), ms(250));
        let mut missed = far;
        missed.measured = false;
        assert_eq!(planned(&[missed], &scene), ms(250));
    }

    #[test]
    fn the_model_runs_when_due_predicts_between_and_skips_still_frames() {
        let scene = AnalyticsSettings::default();
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
                pacer.plan(std::slice::from_ref(&slow), &scene);
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
        pacer.plan(&[], &scene);
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
            pacer.plan(&[], &AnalyticsSettings::default());
        }
        assert_eq!(pacer.decide(ms(60), Verdict::Always, false), Decision::Run);
        assert_eq!(pacer.decide(ms(70), Verdict::Skip, false), Decision::Still);
        assert_eq!(pacer.decide(ms(80), Verdict::Skip, true), Decision::Run);
    }
}
