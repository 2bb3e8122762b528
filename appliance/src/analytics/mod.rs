//! What cities want from tracks: counts across lines, occupancy of zones,
//! and traffic and crowd flows aggregated over fixed intervals.
//!
//! Pure logic over the tracker's output, driven by frame time (never the
//! wall clock), so a recording gives the same numbers on every run. Only
//! the UTC times written in events follow a stepped system clock
//! ([`anchor`]):
//!
//! - **Counting lines** are segments with two named sides. An object
//!   crosses when the middle of its box's bottom edge (where it stands)
//!   moves from one side to the other: a side only counts once the point is
//!   more than `hysteresis_px` from the line, within the segment's extent,
//!   and the two confirmed positions must be `min_distance_px` apart, so a
//!   box jittering on the line never counts twice.
//! - **Zones** are polygons: occupancy per class on every frame, and dwell
//!   time per track from entering to leaving.
//! - **Flows**: every `flow_interval` of frame time, the counts per line,
//!   direction and class, the mean and peak occupancy and mean dwell per
//!   zone and class, and the mean speed per class in pixels per second, and
//!   in metres per second when a ground calibration is configured.

pub mod anchor;
pub mod geometry;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::detect::Class;
use crate::events::{rfc3339_ms, Crossing, Flow, FlowCount, FlowSpeed, FlowZone, TrackSummary};
use crate::track::{Track, Update};
use geometry::{distance, inside, meets, side_of, Homography, Point};

/// A counting line (see the `[[analytics.lines]]` configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct LineSettings {
    pub name: String,
    /// From `a` to `b`; side "a" is on the left of `a`→`b` as seen on the
    /// picture.
    pub from: Point,
    pub to: Point,
    /// Names of the two sides, e.g. `"north"` and `"south"`.
    pub side_a: String,
    pub side_b: String,
    pub hysteresis_px: f32,
    pub min_distance_px: f32,
    /// Classes counted (all when empty).
    pub classes: Vec<Class>,
}

impl LineSettings {
    /// A line from `from` to `to` with sides named `a` and `b`, 12 pixels of
    /// hysteresis and 40 pixels to travel between sides, for every class.
    pub fn new(name: impl Into<String>, from: Point, to: Point) -> Self {
        Self {
            name: name.into(),
            from,
            to,
            side_a: "a".into(),
            side_b: "b".into(),
            hysteresis_px: 12.0,
            min_distance_px: 40.0,
            classes: Vec::new(),
        }
    }
}

/// A zone (see `[[analytics.zones]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneSettings {
    pub name: String,
    pub polygon: Vec<Point>,
    /// Classes counted (all when empty).
    pub classes: Vec<Class>,
}

/// The `[analytics]` section, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsSettings {
    pub zones: Vec<ZoneSettings>,
    pub lines: Vec<LineSettings>,
    /// Length of a flow interval, in frame time.
    pub flow_interval: Duration,
    /// Pixels to ground metres.
    pub calibration: Option<Homography>,
    /// The calibration's picture points and their ground positions (metres),
    /// as configured: drawn on installer snapshots.
    pub calibration_points: Vec<(Point, Point)>,
    /// Distance to a line under which a track moving towards it
    /// "approaches" (for lighting).
    pub approach_px: f32,
    /// Whether to emit a `track` event when a track ends.
    pub track_events: bool,
    /// Whether flows also go out as FIWARE Smart Data Models entities.
    pub fiware: bool,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        AnalyticsSettings {
            zones: Vec::new(),
            lines: Vec::new(),
            flow_interval: Duration::from_secs(60),
            calibration: None,
            calibration_points: Vec::new(),
            approach_px: 80.0,
            track_events: true,
            fiware: false,
        }
    }
}

/// What analytics hand to the event stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Crossing(Crossing),
    Track(TrackSummary),
    Flow(Flow),
}

/// Who is where right now, for the lighting policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Presence {
    /// Zones holding at least one track of a class.
    pub zones: BTreeSet<(String, Class)>,
    /// Lines a track of a class is approaching.
    pub approaching: BTreeSet<(String, Class)>,
}

/// Per-line memory of one track: the last side it was clearly on, and
/// where.
#[derive(Debug, Clone, Copy)]
struct LineMemory {
    side: i8,
    at: Point,
}

#[derive(Debug, Clone)]
struct TrackMemory {
    lines: Vec<Option<LineMemory>>,
    /// Frame time each zone was entered, when inside.
    zones: Vec<Option<Duration>>,
    visited: BTreeSet<usize>,
    last_foot: Option<(Duration, Point)>,
    first_foot: Point,
    /// Path length and time over the whole track, pixels and metres. The
    /// metres and their time count only the steps with a ground position
    /// (not on or beyond the calibration's horizon).
    path_px: f64,
    path_m: f64,
    path_time: f64,
    path_m_time: f64,
    /// The same over the current flow interval.
    interval_px: f64,
    interval_m: f64,
    interval_time: f64,
    interval_m_time: f64,
    class: Class,
}

#[derive(Debug, Default)]
struct Interval {
    start: Option<(Duration, u64)>,
    counts: BTreeMap<(usize, bool, Class), u64>,
    frames: u64,
    occupancy_sum: BTreeMap<(usize, Class), u64>,
    occupancy_max: BTreeMap<(usize, Class), u64>,
    dwell: BTreeMap<(usize, Class), (f64, u64)>,
    /// Speed of tracks that ended during the interval: class → (px, m,
    /// seconds, seconds on the ground, tracks).
    speed: BTreeMap<Class, (f64, f64, f64, f64, u64)>,
}

/// Analytics for one camera.
#[derive(Debug)]
pub struct Analytics {
    settings: AnalyticsSettings,
    tracks: HashMap<u32, TrackMemory>,
    interval: Interval,
    totals: BTreeMap<(String, String, Class), u64>,
    presence: Presence,
    last_time: Option<(Duration, u64)>,
    anchor: anchor::WallAnchor,
}

impl Analytics {
    /// Analytics on the system's clocks.
    pub fn new(settings: AnalyticsSettings) -> Self {
        Self::with_clocks(
            settings,
            std::sync::Arc::new(anchor::SystemClocks::default()),
        )
    }

    /// Analytics whose wall-clock steps are watched on `clocks` (tests).
    pub fn with_clocks(
        settings: AnalyticsSettings,
        clocks: std::sync::Arc<dyn anchor::Clocks>,
    ) -> Self {
        Analytics {
            settings,
            tracks: HashMap::new(),
            interval: Interval::default(),
            totals: BTreeMap::new(),
            presence: Presence::default(),
            last_time: None,
            anchor: anchor::WallAnchor::new(clocks),
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &AnalyticsSettings {
        &self.settings
    }

    /// Crossings since start: (line, direction, class) → count, with
    /// directions written `"<side>_to_<side>"`.
    pub fn totals(&self) -> &BTreeMap<(String, String, Class), u64> {
        &self.totals
    }

    /// Who is where after the last frame.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    /// Takes one frame's tracker update. `time` is the frame time, `wall_ms`
    /// the same instant in UTC milliseconds as anchored at start (for
    /// timestamps in events; corrected here after a clock step).
    pub fn frame(&mut self, time: Duration, wall_ms: u64, update: &Update, out: &mut Vec<Output>) {
        let step = self.anchor.observe();
        if step != 0 {
            // The open interval's start follows the corrected clock too, so
            // `to - from` stays the interval's frame-time length.
            if let Some((_, start_wall)) = &mut self.interval.start {
                *start_wall = anchor::shift(*start_wall, step);
            }
        }
        let wall_ms = self.anchor.apply(wall_ms);
        if let Some((start, _)) = self.interval.start {
            if time.saturating_sub(start) >= self.settings.flow_interval {
                out.push(Output::Flow(self.close_interval(time, wall_ms)));
            }
        }
        if self.interval.start.is_none() {
            self.interval.start = Some((time, wall_ms));
        }
        self.last_time = Some((time, wall_ms));
        self.interval.frames += 1;
        let mut presence = Presence::default();
        let mut occupancy: BTreeMap<(usize, Class), u64> = BTreeMap::new();
        for track in &update.live {
            self.observe(track, time, wall_ms, &mut occupancy, &mut presence, out);
        }
        for (key, count) in occupancy {
            *self.interval.occupancy_sum.entry(key).or_default() += count;
            let max = self.interval.occupancy_max.entry(key).or_default();
            *max = (*max).max(count);
        }
        for track in &update.ended {
            self.end_track(track, time, wall_ms, out);
        }
        self.presence = presence;
    }

    /// Ends the remaining tracks and closes the last (partial) interval.
    pub fn finish(&mut self, ended: &[Track], out: &mut Vec<Output>) {
        let Some((time, wall_ms)) = self.last_time else {
            return;
        };
        for track in ended {
            self.end_track(track, time, wall_ms, out);
        }
        if self.interval.start.is_some() {
            out.push(Output::Flow(self.close_interval(time, wall_ms)));
        }
    }

    fn observe(
        &mut self,
        track: &Track,
        time: Duration,
        wall_ms: u64,
        occupancy: &mut BTreeMap<(usize, Class), u64>,
        presence: &mut Presence,
        out: &mut Vec<Output>,
    ) {
        let settings = &self.settings;
        let foot = track.foot();
        let memory = self.tracks.entry(track.id).or_insert_with(|| TrackMemory {
            lines: vec![None; settings.lines.len()],
            zones: vec![None; settings.zones.len()],
            visited: BTreeSet::new(),
            last_foot: None,
            first_foot: foot,
            path_px: 0.0,
            path_m: 0.0,
            path_time: 0.0,
            path_m_time: 0.0,
            interval_px: 0.0,
            interval_m: 0.0,
            interval_time: 0.0,
            interval_m_time: 0.0,
            class: track.class,
        });
        memory.class = track.class;

        for (z, zone) in settings.zones.iter().enumerate() {
            if !counts(&zone.classes, track.class) {
                continue;
            }
            if inside(&zone.polygon, foot) {
                *occupancy.entry((z, track.class)).or_default() += 1;
                presence.zones.insert((zone.name.clone(), track.class));
                memory.visited.insert(z);
                memory.zones[z].get_or_insert(time);
            } else if let Some(entered) = memory.zones[z].take() {
                let dwell = self.interval.dwell.entry((z, track.class)).or_default();
                dwell.0 += time.saturating_sub(entered).as_secs_f64();
                dwell.1 += 1;
            }
        }

        for (l, line) in settings.lines.iter().enumerate() {
            if !counts(&line.classes, track.class) {
                continue;
            }
            let (d, along) = side_of(line.from, line.to, foot);
            if (0.0..=1.0).contains(&along) && d.abs() < settings.approach_px {
                let speed_towards = -d.signum() * normal_speed(line, track.velocity);
                if speed_towards > 0.0 {
                    presence
                        .approaching
                        .insert((line.name.clone(), track.class));
                }
            }
            // Only measured positions count: a coasting box is a guess.
            if !track.measured || !(0.0..=1.0).contains(&along) || d.abs() <= line.hysteresis_px {
                continue;
            }
            let side = if d > 0.0 { 1 } else { -1 };
            match memory.lines[l] {
                None => memory.lines[l] = Some(LineMemory { side, at: foot }),
                Some(last) if last.side == side => {}
                Some(last) => {
                    if distance(last.at, foot) < line.min_distance_px {
                        continue;
                    }
                    memory.lines[l] = Some(LineMemory { side, at: foot });
                    let a_to_b = last.side > 0;
                    let (from, to) = if a_to_b {
                        (&line.side_a, &line.side_b)
                    } else {
                        (&line.side_b, &line.side_a)
                    };
                    let direction = format!("{from}_to_{to}");
                    *self
                        .interval
                        .counts
                        .entry((l, a_to_b, track.class))
                        .or_default() += 1;
                    *self
                        .totals
                        .entry((line.name.clone(), direction.clone(), track.class))
                        .or_default() += 1;
                    let speed_px = f64::from(track.velocity[0].hypot(track.velocity[1]));
                    // Where its path between the two measured positions
                    // meets the line, not where the track is now (after a
                    // long step, that can be far from the line).
                    let at = meets(line.from, line.to, last.at, foot).unwrap_or(foot);
                    out.push(Output::Crossing(Crossing {
                        line: line.name.clone(),
                        direction,
                        class: track.class.name().into(),
                        track: Some(track.id),
                        at: rfc3339_ms(wall_ms),
                        position: Some([round1(at[0]), round1(at[1])]),
                        speed_px_s: round2(speed_px),
                        speed_m_s: settings
                            .calibration
                            .as_ref()
                            .and_then(|h| ground_speed(h, foot, track.velocity))
                            .map(round2),
                    }));
                }
            }
        }

        if track.measured {
            if let Some((then, last)) = memory.last_foot {
                let dt = time.saturating_sub(then).as_secs_f64();
                let px = f64::from(distance(last, foot));
                memory.path_px += px;
                memory.path_time += dt;
                memory.interval_px += px;
                memory.interval_time += dt;
                let ground = settings.calibration.as_ref();
                if let Some(m) = ground.and_then(|h| h.ground_distance(last, foot)) {
                    memory.path_m += m;
                    memory.path_m_time += dt;
                    memory.interval_m += m;
                    memory.interval_m_time += dt;
                }
            }
            memory.last_foot = Some((time, foot));
        }
    }

    fn end_track(&mut self, track: &Track, time: Duration, wall_ms: u64, out: &mut Vec<Output>) {
        let Some(mut memory) = self.tracks.remove(&track.id) else {
            return;
        };
        for (z, entered) in memory.zones.iter_mut().enumerate() {
            if let Some(entered) = entered.take() {
                let dwell = self.interval.dwell.entry((z, memory.class)).or_default();
                dwell.0 += time.saturating_sub(entered).as_secs_f64();
                dwell.1 += 1;
            }
        }
        self.add_interval_speed(&mut memory);
        if !self.settings.track_events {
            return;
        }
        // Ground figures when calibrated, unless none of the track's steps
        // had a ground position.
        let on_ground = self.settings.calibration.is_some()
            && (memory.path_m_time > 0.0 || memory.path_time == 0.0);
        let last = memory.last_foot.map_or(track.foot(), |(_, p)| p);
        let duration = track.last_seen.saturating_sub(track.first_seen);
        let back = time.saturating_sub(track.first_seen).as_millis() as u64;
        out.push(Output::Track(TrackSummary {
            track: track.id,
            class: track.class.name().into(),
            first_seen: rfc3339_ms(wall_ms.saturating_sub(back)),
            duration_ms: duration.as_millis() as u64,
            detections: track.hits,
            first: [round1(memory.first_foot[0]), round1(memory.first_foot[1])],
            last: [round1(last[0]), round1(last[1])],
            distance_px: round1(memory.path_px as f32).into(),
            speed_px_s: round2(ratio(memory.path_px, memory.path_time)),
            distance_m: on_ground.then(|| round2(memory.path_m)),
            speed_m_s: on_ground.then(|| round2(ratio(memory.path_m, memory.path_m_time))),
            zones: memory
                .visited
                .iter()
                .map(|&z| self.settings.zones[z].name.clone())
                .collect(),
        }));
    }

    fn add_interval_speed(&mut self, memory: &mut TrackMemory) {
        if memory.interval_time > 0.0 {
            let entry = self.interval.speed.entry(memory.class).or_default();
            entry.0 += memory.interval_px;
            entry.1 += memory.interval_m;
            entry.2 += memory.interval_time;
            entry.3 += memory.interval_m_time;
            entry.4 += 1;
        }
        memory.interval_px = 0.0;
        memory.interval_m = 0.0;
        memory.interval_time = 0.0;
        memory.interval_m_time = 0.0;
    }

    fn close_interval(&mut self, time: Duration, wall_ms: u64) -> Flow {
        let mut memories: Vec<u32> = self.tracks.keys().copied().collect();
        memories.sort_unstable();
        for id in memories {
            let mut memory = self.tracks.remove(&id).expect("listed above");
            self.add_interval_speed(&mut memory);
            self.tracks.insert(id, memory);
        }
        let interval = std::mem::take(&mut self.interval);
        let (start, start_wall) = interval.start.unwrap_or((time, wall_ms));
        let settings = &self.settings;
        let mut lines = Vec::new();
        for (l, line) in settings.lines.iter().enumerate() {
            for (a_to_b, from, to) in [
                (true, &line.side_a, &line.side_b),
                (false, &line.side_b, &line.side_a),
            ] {
                for class in Class::ALL {
                    if let Some(&count) = interval.counts.get(&(l, a_to_b, class)) {
                        lines.push(FlowCount {
                            line: line.name.clone(),
                            direction: format!("{from}_to_{to}"),
                            class: class.name().into(),
                            count,
                        });
                    }
                }
            }
        }
        let mut zones = Vec::new();
        let frames = interval.frames.max(1) as f64;
        let keys: BTreeSet<(usize, Class)> = interval
            .occupancy_max
            .keys()
            .chain(interval.dwell.keys())
            .copied()
            .collect();
        for (z, class) in keys {
            let sum = interval
                .occupancy_sum
                .get(&(z, class))
                .copied()
                .unwrap_or(0);
            let (dwell_s, dwell_n) = interval.dwell.get(&(z, class)).copied().unwrap_or_default();
            zones.push(FlowZone {
                zone: settings.zones[z].name.clone(),
                class: class.name().into(),
                occupancy_mean: round2(sum as f64 / frames),
                occupancy_max: interval
                    .occupancy_max
                    .get(&(z, class))
                    .copied()
                    .unwrap_or(0),
                dwell_mean_s: (dwell_n > 0).then(|| round2(dwell_s / dwell_n as f64)),
                dwells: dwell_n,
            });
        }
        let calibrated = settings.calibration.is_some();
        let speeds = interval
            .speed
            .iter()
            .map(|(class, &(px, m, secs, m_secs, tracks))| FlowSpeed {
                class: class.name().into(),
                tracks,
                speed_px_s: round2(ratio(px, secs)),
                // Over the steps with a ground position only.
                speed_m_s: (calibrated && m_secs > 0.0).then(|| round2(ratio(m, m_secs))),
            })
            .collect();
        self.interval.start = Some((time, wall_ms));
        Flow {
            from: rfc3339_ms(start_wall),
            to: rfc3339_ms(wall_ms),
            interval_s: round2(time.saturating_sub(start).as_secs_f64()),
            lines,
            zones,
            speeds,
            part: None,
        }
    }
}

fn counts(classes: &[Class], class: Class) -> bool {
    classes.is_empty() || classes.contains(&class)
}

/// Velocity component along the line's "a" normal.
fn normal_speed(line: &LineSettings, velocity: [f32; 2]) -> f32 {
    let (dx, dy) = (line.to[0] - line.from[0], line.to[1] - line.from[1]);
    let len = dx.hypot(dy).max(f32::EPSILON);
    // Normal pointing to side "a" (left of from→to on screen): (dy, -dx).
    (velocity[0] * dy - velocity[1] * dx) / len
}

/// Ground speed of a point moving at `velocity` pixels per second; `None`
/// when the point, or where it is heading, has no ground position (on or
/// beyond the calibration's horizon).
fn ground_speed(h: &Homography, at: Point, velocity: [f32; 2]) -> Option<f64> {
    let step = 0.1;
    let ahead = [at[0] + velocity[0] * step, at[1] + velocity[1] * step];
    Some(h.ground_distance(at, ahead)? / f64::from(step))
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

fn round1(v: f32) -> f32 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests;
