//! Multi-object tracking of detections, in the manner of SORT and ByteTrack.
//!
//! Each frame's detections are matched to the existing tracks by the
//! intersection over union (IoU) of the detection with the track's box
//! predicted to the frame's time (constant velocity). Matching is greedy by
//! decreasing IoU, in two rounds: confident detections against every track,
//! then the low-score detections (those between `low_score` and the
//! detector's per-class threshold) against the tracks still unmatched, so a
//! person half hidden behind a post keeps their track. A third round
//! recovers confirmed tracks that lost their box behind an obstacle: a
//! confident detection whose centre is within `recover_distance` box
//! heights of such a track's predicted centre, with a similar size, takes
//! it over (position and size only: nothing about appearance). Unmatched
//! confident detections start tentative tracks, confirmed after `min_hits`
//! hits in a row; a track not seen for `max_coast` ends.
//!
//! Frames where inference did not run come in two kinds. When motion gating
//! saw nothing move ([`Tracker::update`] without detections), every box
//! stays where it was. When the adaptive rate ([`crate::pipeline::pace`])
//! spared the model on a frame where things move ([`Tracker::predict`]),
//! every box moves on by its velocity. Either way tracks live on through
//! them, unmeasured.
//!
//! Each track's box is a Kalman filter ([`kalman`]): the centre with a
//! velocity, width and height as levels, noises scaled by the box's height.
//! Still frames stop the filter's clock (nothing moved); missed and
//! predicted-only frames let its uncertainty grow, so the next detection
//! corrects the velocity by what the gap warrants.
//!
//! Privacy by design: ids are random per run (never linked across cameras
//! or restarts) and nothing about an object's appearance is computed or
//! kept, only its box, class and motion.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::detect::{Class, Detection, DEFAULT_MIN_SCORE};

mod kalman;

use kalman::BoxFilter;

/// Tracker tuning (the `[tracking]` configuration section).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackSettings {
    /// Detections below this score are ignored entirely.
    pub low_score: f32,
    /// Detections at or above this score (per class) are confident.
    pub high_scores: BTreeMap<Class, f32>,
    /// Smallest IoU for a match in the first round.
    pub match_iou: f32,
    /// Smallest IoU for matching a low-score detection.
    pub low_match_iou: f32,
    /// Hits in a row that confirm a tentative track.
    pub min_hits: u32,
    /// How long a confirmed track survives without a match.
    pub max_coast: Duration,
    /// Largest distance, in box heights, between a coasting track's
    /// predicted centre and a detection that recovers it.
    pub recover_distance: f32,
}

impl Default for TrackSettings {
    fn default() -> Self {
        TrackSettings {
            low_score: 0.2,
            high_scores: Class::ALL.iter().map(|&c| (c, DEFAULT_MIN_SCORE)).collect(),
            match_iou: 0.2,
            low_match_iou: 0.4,
            min_hits: 3,
            max_coast: Duration::from_millis(2500),
            recover_distance: 0.6,
        }
    }
}

impl TrackSettings {
    fn high_score(&self, class: Class) -> f32 {
        self.high_scores
            .get(&class)
            .copied()
            .unwrap_or(DEFAULT_MIN_SCORE)
    }
}

/// Classes a track may move between when the detector hesitates (a van
/// seen as a car then a truck); a person and the bicycle they ride stay
/// apart.
fn family(class: Class) -> u8 {
    match class {
        Class::Person => 0,
        Class::Bicycle => 1,
        Class::Motorcycle => 2,
        Class::Car | Class::Bus | Class::Truck => 3,
    }
}

/// A box `[x0, y0, x1, y1]` in frame pixels.
pub type BBox = [f32; 4];

/// Intersection over union of two boxes; 0 for empty boxes.
pub fn iou(a: &BBox, b: &BBox) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &BBox| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// One tracked object as the analytics see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// Random per run; unique among this run's tracks.
    pub id: u32,
    /// The class most of its detections voted for.
    pub class: Class,
    /// Smoothed (or, when coasting, predicted) box at `time`.
    pub bbox: BBox,
    /// Velocity of the box centre, pixels per second.
    pub velocity: [f32; 2],
    /// Frame time of the last update or prediction.
    pub time: Duration,
    /// Whether a detection matched it in the current frame.
    pub measured: bool,
    /// Confirmed (enough hits); tentative tracks are not reported.
    pub confirmed: bool,
    /// Frame time it was first seen.
    pub first_seen: Duration,
    /// Frame time of its last matched detection.
    pub last_seen: Duration,
    /// Matched detections.
    pub hits: u32,
    /// The box's motion state at its last correction.
    filter: BoxFilter,
    /// The filter's time: its last correction's frame time, moved on by
    /// the still frames since (time stops for a still scene).
    clock: Duration,
    /// Score-weighted class votes, in `Class::ALL` order.
    votes: [f32; 6],
}

impl Track {
    /// The middle of the box's bottom edge: where the object stands.
    pub fn foot(&self) -> [f32; 2] {
        [(self.bbox[0] + self.bbox[2]) / 2.0, self.bbox[3]]
    }

    /// The motion state predicted to frame time `time`.
    fn state(&self, time: Duration) -> BoxFilter {
        self.filter
            .predicted(time.saturating_sub(self.clock).as_secs_f64())
    }

    fn predicted(&self, time: Duration) -> BBox {
        self.state(time).bbox()
    }

    /// Moves the box on to `time` by prediction.
    fn coast(&mut self, time: Duration) {
        self.bbox = self.predicted(time);
        self.time = time;
    }

    /// Lets `time` pass without motion (a still frame): the box and the
    /// filter's prediction stay where they were.
    fn hold(&mut self, time: Duration) {
        self.clock += time.saturating_sub(self.time);
        self.time = time;
    }

    fn vote(&mut self, detection: &Detection) {
        let slot = Class::ALL.iter().position(|&c| c == detection.class);
        if let Some(slot) = slot {
            self.votes[slot] += detection.score;
        }
        let best = (0..6).fold(0, |best, i| {
            if self.votes[i] > self.votes[best] {
                i
            } else {
                best
            }
        });
        self.class = Class::ALL[best];
    }
}

/// What one frame did to the set of tracks.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Update {
    /// Confirmed tracks alive after this frame (measured or coasting).
    pub live: Vec<Track>,
    /// Confirmed tracks that ended in this frame (not seen for
    /// `max_coast`), as last seen.
    pub ended: Vec<Track>,
}

/// The tracker. Feed it every frame in time order.
#[derive(Debug)]
pub struct Tracker {
    settings: TrackSettings,
    tracks: Vec<Track>,
    next_id: u32,
}

impl Tracker {
    /// A tracker whose ids start at a random number.
    pub fn new(settings: TrackSettings) -> Self {
        Tracker::with_first_id(settings, random_u32())
    }

    /// A tracker with a given first id (tests).
    pub fn with_first_id(settings: TrackSettings, first: u32) -> Self {
        Tracker {
            settings,
            tracks: Vec::new(),
            next_id: first,
        }
    }

    /// Number of tracks held, tentative included.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether no track is held.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Whether any held track is still tentative (it needs frames with
    /// inference to be confirmed or dropped).
    pub fn has_tentative(&self) -> bool {
        self.tracks.iter().any(|t| !t.confirmed)
    }

    /// Advances to frame time `time`. `detections` is `None` when inference
    /// did not run on this frame: tracks then only coast.
    pub fn update(&mut self, time: Duration, detections: Option<&[Detection]>) -> Update {
        for track in &mut self.tracks {
            track.measured = false;
        }
        if let Some(detections) = detections {
            self.associate(time, detections);
        }
        let max_coast = self.settings.max_coast;
        let ran = detections.is_some();
        for track in &mut self.tracks {
            if !track.measured {
                // Without inference the frame had no motion: nothing moved,
                // so the box stays; with inference it was missed, so it
                // moves on by prediction.
                if ran {
                    track.coast(time);
                } else {
                    track.hold(time);
                }
            }
        }
        self.settle(|track| {
            let lost = time.saturating_sub(track.last_seen) > max_coast;
            // A tentative track must be seen on every frame inference runs.
            let unconfirmed_miss = ran && !track.confirmed && !track.measured;
            lost || unconfirmed_miss
        })
    }

    /// Advances to frame time `time` on a frame the model did not look at
    /// although things move (the adaptive rate): every box moves on by its
    /// velocity; a track ends only when it has not been seen for
    /// `max_coast`.
    pub fn predict(&mut self, time: Duration) -> Update {
        let max_coast = self.settings.max_coast;
        for track in &mut self.tracks {
            track.measured = false;
            track.coast(time);
        }
        self.settle(|track| time.saturating_sub(track.last_seen) > max_coast)
    }

    /// Drops the tracks `ends` says are over, the confirmed ones into
    /// `ended`, and lists the confirmed ones left as `live`.
    fn settle(&mut self, ends: impl Fn(&Track) -> bool) -> Update {
        let mut update = Update::default();
        self.tracks.retain(|track| {
            let over = ends(track);
            if track.confirmed {
                let list = if over {
                    &mut update.ended
                } else {
                    &mut update.live
                };
                list.push(track.clone());
            }
            !over
        });
        update
    }

    /// Ends every confirmed track (end of stream).
    pub fn finish(&mut self) -> Vec<Track> {
        let ended = self
            .tracks
            .iter()
            .filter(|t| t.confirmed)
            .cloned()
            .collect();
        self.tracks.clear();
        ended
    }

    fn associate(&mut self, time: Duration, detections: &[Detection]) {
        let low = self.settings.low_score;
        let (high, weak): (Vec<&Detection>, Vec<&Detection>) = detections
            .iter()
            .filter(|d| d.score >= low)
            .partition(|d| d.score >= self.settings.high_score(d.class));
        let predicted: Vec<BBox> = self.tracks.iter().map(|t| t.predicted(time)).collect();
        let mut free_tracks: Vec<bool> = vec![true; self.tracks.len()];

        let unmatched_high = self.match_round(
            time,
            &high,
            &predicted,
            &mut free_tracks,
            self.settings.match_iou,
            false,
        );
        self.match_round(
            time,
            &weak,
            &predicted,
            &mut free_tracks,
            self.settings.low_match_iou,
            true,
        );
        let unmatched_high = self.recover(time, &unmatched_high, &predicted, &mut free_tracks);
        for detection in unmatched_high {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            let mut track = Track {
                id,
                class: detection.class,
                bbox: detection.bbox,
                velocity: [0.0, 0.0],
                filter: BoxFilter::new(&detection.bbox),
                clock: time,
                time,
                measured: true,
                confirmed: self.settings.min_hits <= 1,
                first_seen: time,
                last_seen: time,
                hits: 1,
                votes: [0.0; 6],
            };
            track.vote(detection);
            self.tracks.push(track);
        }
    }

    /// Third round: confirmed tracks that missed at least one detection,
    /// matched by predicted-centre distance and size; returns the
    /// detections left unmatched.
    fn recover<'d>(
        &mut self,
        time: Duration,
        detections: &[&'d Detection],
        predicted: &[BBox],
        free_tracks: &mut [bool],
    ) -> Vec<&'d Detection> {
        let centre = |b: &BBox| [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0];
        let height = |b: &BBox| (b[3] - b[1]).max(1.0);
        let mut pairs = Vec::new();
        for (t, track) in self.tracks.iter().enumerate() {
            if !free_tracks[t] || !track.confirmed || track.last_seen >= track.time {
                continue;
            }
            let p = &predicted[t];
            for (d, detection) in detections.iter().enumerate() {
                if family(detection.class) != family(track.class) {
                    continue;
                }
                let ratio = height(&detection.bbox) / height(p);
                if !(0.6..=1.6).contains(&ratio) {
                    continue;
                }
                let (a, b) = (centre(p), centre(&detection.bbox));
                let distance = (a[0] - b[0]).hypot(a[1] - b[1]) / height(p);
                if distance <= self.settings.recover_distance {
                    pairs.push((distance, t, d));
                }
            }
        }
        self.assign(time, detections, pairs, free_tracks)
    }

    /// Greedy assignment of `(cost, track, detection)` pairs, lowest cost
    /// first, ties broken by position so runs repeat exactly: each match
    /// corrects its track (confirming it after `min_hits`). Returns the
    /// detections left unmatched.
    fn assign<'d>(
        &mut self,
        time: Duration,
        detections: &[&'d Detection],
        mut pairs: Vec<(f32, usize, usize)>,
        free_tracks: &mut [bool],
    ) -> Vec<&'d Detection> {
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut free_detections = vec![true; detections.len()];
        let min_hits = self.settings.min_hits;
        for (_, t, d) in pairs {
            if !free_tracks[t] || !free_detections[d] {
                continue;
            }
            free_tracks[t] = false;
            free_detections[d] = false;
            let track = &mut self.tracks[t];
            correct(track, time, detections[d]);
            if track.hits >= min_hits {
                track.confirmed = true;
            }
        }
        detections
            .iter()
            .zip(free_detections)
            .filter(|(_, free)| *free)
            .map(|(d, _)| *d)
            .collect()
    }

    /// Greedy matching by decreasing IoU; returns the detections left
    /// unmatched.
    fn match_round<'d>(
        &mut self,
        time: Duration,
        detections: &[&'d Detection],
        predicted: &[BBox],
        free_tracks: &mut [bool],
        min_iou: f32,
        confirmed_only: bool,
    ) -> Vec<&'d Detection> {
        let mut pairs = Vec::new();
        for (t, track) in self.tracks.iter().enumerate() {
            if !free_tracks[t] || (confirmed_only && !track.confirmed) {
                continue;
            }
            for (d, detection) in detections.iter().enumerate() {
                if family(detection.class) != family(track.class) {
                    continue;
                }
                let overlap = iou(&predicted[t], &detection.bbox);
                if overlap >= min_iou {
                    // Highest IoU first.
                    pairs.push((-overlap, t, d));
                }
            }
        }
        self.assign(time, detections, pairs, free_tracks)
    }
}

/// Corrects a track with a matched detection: the filter predicted to
/// `time`, then corrected.
fn correct(track: &mut Track, time: Duration, detection: &Detection) {
    let mut state = track.state(time);
    state.correct(&detection.bbox);
    track.filter = state;
    track.clock = time;
    track.bbox = state.bbox();
    track.velocity = state.velocity();
    track.time = time;
    track.last_seen = time;
    track.measured = true;
    track.hits += 1;
    track.vote(detection);
}

/// A random number from the kernel, without another dependency: std's
/// hasher keys are seeded from the OS's random source.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    hasher.finish() as u32
}

#[cfg(test)]
mod tests;
