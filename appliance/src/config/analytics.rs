//! The sections that turn detections into counts: `[tracking]`, `[motion]`,
//! `[analytics]` (zones, counting lines, flows, ground calibration) and
//! `[pipeline]`. Raw structs mirror the file; `validate` checks them like
//! the rest of the configuration.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use super::Check;
use crate::analytics::geometry::{signed_area2, Homography, Point};
use crate::analytics::{AnalyticsSettings, LineSettings, ZoneSettings};
use crate::detect::{Class, DetectSettings};
use crate::motion::MotionSettings;
use crate::track::TrackSettings;

/// `[tracking]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracking {
    /// Detections below this score are ignored; those between it and the
    /// class's `detect.min_scores` only help keep existing tracks
    /// (ByteTrack's second round). 0.05 to 1.
    #[serde(default = "default_low_score")]
    pub low_score: f32,
    /// Smallest overlap (IoU) of a detection with a track's predicted box
    /// to match it, 0.05 to 0.95.
    #[serde(default = "default_match_iou")]
    pub match_iou: f32,
    /// The same for low-score detections, 0.05 to 0.95.
    #[serde(default = "default_low_match_iou")]
    pub low_match_iou: f32,
    /// Detections in a row before a track is reported, 1 to 30.
    #[serde(default = "default_min_hits")]
    pub min_hits: u32,
    /// Milliseconds a track survives unseen, 100 to 60 000.
    #[serde(default = "default_max_coast_ms")]
    pub max_coast_ms: u64,
    /// Largest distance, in box heights, between a coasting track's
    /// predicted centre and a detection that recovers it, 0 to 3 (0: off).
    #[serde(default = "default_recover_distance")]
    pub recover_distance: f32,
}

/// `[motion]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMotion {
    /// Run the model only on frames with motion (plus refreshes).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Width of the grey image compared, 32 to 640 pixels.
    #[serde(default = "default_motion_width")]
    pub width: u32,
    /// Brightness change (0-255) that counts, 1 to 255.
    #[serde(default = "default_motion_threshold")]
    pub threshold: u32,
    /// Fraction of the picture that must change, 0.0001 to 1.
    #[serde(default = "default_min_area")]
    pub min_area: f32,
    /// Milliseconds frames keep going to the model after motion, 0 to 60 000.
    #[serde(default = "default_hold_ms")]
    pub hold_ms: u64,
    /// Longest milliseconds between two inferences, 100 to 60 000.
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
    /// How fast the background follows the scene, per frame, 0.001 to 1.
    #[serde(default = "default_learn_rate")]
    pub learn_rate: f32,
}

/// `[analytics]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalytics {
    /// Seconds of frame time per `flow` event, 1 to 86 400.
    #[serde(default = "default_flow_interval_s")]
    pub flow_interval_s: u64,
    /// Distance in pixels under which a track moving towards a line
    /// "approaches" it (lighting presence), 0 to 10 000.
    #[serde(default = "default_approach_px")]
    pub approach_px: f32,
    /// Emit a `track` event when a track ends.
    #[serde(default = "default_true")]
    pub track_events: bool,
    /// Also emit FIWARE TrafficFlowObserved / CrowdFlowObserved entities.
    #[serde(default)]
    pub fiware: bool,
    /// `[[analytics.zones]]`
    #[serde(default)]
    pub zones: Vec<RawZone>,
    /// `[[analytics.lines]]`
    #[serde(default)]
    pub lines: Vec<RawLine>,
    /// `[analytics.calibration]`
    pub calibration: Option<RawCalibration>,
}

/// `[[analytics.zones]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    /// Name used in events (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Corners `[x, y]` in frame pixels, at least three, in order.
    pub polygon: Vec<[f32; 2]>,
    /// Classes counted (default: all).
    #[serde(default)]
    pub classes: Vec<String>,
}

/// `[[analytics.lines]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLine {
    /// Name used in events.
    pub name: String,
    /// Ends of the segment `[x, y]` in frame pixels.
    pub from: [f32; 2],
    pub to: [f32; 2],
    /// Names of the side on the left of from→to (as seen on the picture)
    /// and of the other side (default `["a", "b"]`).
    #[serde(default = "default_sides")]
    pub sides: [String; 2],
    /// Pixels from the line within which a side is not yet decided.
    #[serde(default = "default_hysteresis_px")]
    pub hysteresis_px: f32,
    /// Pixels an object must travel between its two sides to count.
    #[serde(default = "default_min_distance_px")]
    pub min_distance_px: f32,
    /// Classes counted (default: all).
    #[serde(default)]
    pub classes: Vec<String>,
}

/// `[analytics.calibration]`: four picture points and where they are on
/// the ground, in metres, in any flat coordinate system.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCalibration {
    pub image: [[f32; 2]; 4],
    pub ground: [[f32; 2]; 4],
}

/// `[pipeline]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// Frames waiting between capture and inference, 1 to 16. When full, a
    /// camera's oldest frame is dropped (and counted); a recording played
    /// with `pace = "fast"` waits instead.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

/// The pipeline's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSettings {
    pub queue: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            queue: default_queue(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_low_score() -> f32 {
    0.2
}
fn default_match_iou() -> f32 {
    0.2
}
fn default_low_match_iou() -> f32 {
    0.4
}
fn default_min_hits() -> u32 {
    3
}
fn default_max_coast_ms() -> u64 {
    2500
}
fn default_recover_distance() -> f32 {
    1.2
}
fn default_motion_width() -> u32 {
    160
}
fn default_motion_threshold() -> u32 {
    20
}
fn default_min_area() -> f32 {
    0.002
}
fn default_hold_ms() -> u64 {
    500
}
fn default_refresh_ms() -> u64 {
    1000
}
fn default_learn_rate() -> f32 {
    0.5
}
fn default_flow_interval_s() -> u64 {
    60
}
fn default_approach_px() -> f32 {
    80.0
}
fn default_sides() -> [String; 2] {
    ["a".into(), "b".into()]
}
fn default_hysteresis_px() -> f32 {
    12.0
}
fn default_min_distance_px() -> f32 {
    40.0
}
fn default_queue() -> usize {
    2
}

impl Check<'_, '_> {
    fn fraction(&mut self, key: &str, value: f32, min: f32, max: f32) -> bool {
        if value.is_finite() && (min..=max).contains(&value) {
            true
        } else {
            self.fail(
                key,
                Some(value.to_string()),
                format!("must be between {min} and {max}"),
            );
            false
        }
    }

    fn classes(&mut self, key: &str, names: &[String]) -> Vec<Class> {
        let mut classes = Vec::new();
        for name in names {
            match name.parse::<Class>() {
                Ok(class) if classes.contains(&class) => {
                    self.fail(key, Some(format!("{name:?}")), "is listed twice")
                }
                Ok(class) => classes.push(class),
                Err(reason) => self.fail(key, Some(format!("{name:?}")), reason),
            }
        }
        classes
    }

    fn point(&mut self, key: &str, p: [f32; 2]) -> Point {
        if !(p[0].is_finite() && p[1].is_finite() && p[0] >= 0.0 && p[1] >= 0.0) {
            self.fail(
                key,
                Some(format!("{p:?}")),
                "must be [x, y] in frame pixels, not negative",
            );
        }
        p
    }
}

/// `[tracking]`, with the confident thresholds from `[detect]`.
pub(super) fn validate_tracking(
    raw: Option<RawTracking>,
    detect: Option<&DetectSettings>,
    check: &mut Check<'_, '_>,
) -> TrackSettings {
    let mut settings = TrackSettings::default();
    if let Some(detect) = detect {
        settings.high_scores = detect.min_scores.clone();
    }
    let Some(raw) = raw else {
        return settings;
    };
    check.fraction("tracking.low_score", raw.low_score, 0.05, 1.0);
    check.fraction("tracking.match_iou", raw.match_iou, 0.05, 0.95);
    check.fraction("tracking.low_match_iou", raw.low_match_iou, 0.05, 0.95);
    check.range("tracking.min_hits", raw.min_hits.into(), 1, 30);
    check.range("tracking.max_coast_ms", raw.max_coast_ms, 100, 60_000);
    check.fraction("tracking.recover_distance", raw.recover_distance, 0.0, 3.0);
    if let Some(detect) = detect {
        for (class, &min) in &detect.min_scores {
            if raw.low_score > min {
                check.fail(
                    "tracking.low_score",
                    Some(raw.low_score.to_string()),
                    format!("must not exceed detect.min_scores for {class} ({min})"),
                );
                break;
            }
        }
    }
    settings.low_score = raw.low_score;
    settings.match_iou = raw.match_iou;
    settings.low_match_iou = raw.low_match_iou;
    settings.min_hits = raw.min_hits;
    settings.max_coast = Duration::from_millis(raw.max_coast_ms);
    settings.recover_distance = raw.recover_distance;
    settings
}

/// `[motion]`.
pub(super) fn validate_motion(raw: Option<RawMotion>, check: &mut Check<'_, '_>) -> MotionSettings {
    let Some(raw) = raw else {
        return MotionSettings::default();
    };
    check.range("motion.width", raw.width.into(), 32, 640);
    check.range("motion.threshold", raw.threshold.into(), 1, 255);
    check.fraction("motion.min_area", raw.min_area, 0.0001, 1.0);
    check.range("motion.hold_ms", raw.hold_ms, 0, 60_000);
    check.range("motion.refresh_ms", raw.refresh_ms, 100, 60_000);
    check.fraction("motion.learn_rate", raw.learn_rate, 0.001, 1.0);
    MotionSettings {
        enabled: raw.enabled,
        width: raw.width,
        threshold: raw.threshold.min(255) as u8,
        min_area: raw.min_area,
        hold: Duration::from_millis(raw.hold_ms),
        refresh: Duration::from_millis(raw.refresh_ms),
        learn_rate: raw.learn_rate,
    }
}

/// `[analytics]`; returns the settings and whether FIWARE output is on.
pub(super) fn validate_analytics(
    raw: Option<RawAnalytics>,
    check: &mut Check<'_, '_>,
) -> (AnalyticsSettings, bool) {
    let Some(raw) = raw else {
        return (AnalyticsSettings::default(), false);
    };
    check.range("analytics.flow_interval_s", raw.flow_interval_s, 1, 86_400);
    check.fraction("analytics.approach_px", raw.approach_px, 0.0, 10_000.0);
    let mut names = BTreeSet::new();
    let mut unique = |check: &mut Check<'_, '_>, key: &str, name: &str| {
        check.name(key, name);
        if !names.insert(name.to_string()) {
            check.fail(
                key,
                Some(format!("{name:?}")),
                "is already the name of another zone or line",
            );
        }
    };
    let mut zones = Vec::new();
    for (i, zone) in raw.zones.into_iter().enumerate() {
        let key = |k: &str| format!("analytics.zones[{i}].{k}");
        unique(check, &key("name"), &zone.name);
        let polygon: Vec<Point> = zone
            .polygon
            .iter()
            .map(|&p| check.point(&key("polygon"), p))
            .collect();
        if polygon.len() < 3 {
            check.fail(
                &key("polygon"),
                Some(format!("{} point(s)", polygon.len())),
                "a zone needs at least three corners",
            );
        } else if signed_area2(&polygon).abs() < 1.0 {
            check.fail(&key("polygon"), None, "the corners enclose no area");
        }
        let classes = check.classes(&key("classes"), &zone.classes);
        zones.push(ZoneSettings {
            name: zone.name,
            polygon,
            classes,
        });
    }
    let mut lines = Vec::new();
    for (i, line) in raw.lines.into_iter().enumerate() {
        let key = |k: &str| format!("analytics.lines[{i}].{k}");
        unique(check, &key("name"), &line.name);
        let from = check.point(&key("from"), line.from);
        let to = check.point(&key("to"), line.to);
        let length = (to[0] - from[0]).hypot(to[1] - from[1]);
        if length < 1.0 {
            check.fail(
                &key("to"),
                Some(format!("{to:?}")),
                "the line's two ends are the same point",
            );
        }
        for (s, side) in line.sides.iter().enumerate() {
            check.name(&key(&format!("sides[{s}]")), side);
        }
        if line.sides[0] == line.sides[1] {
            check.fail(
                &key("sides"),
                Some(format!("{:?}", line.sides)),
                "the two sides need different names",
            );
        }
        check.fraction(&key("hysteresis_px"), line.hysteresis_px, 0.0, 1000.0);
        check.fraction(&key("min_distance_px"), line.min_distance_px, 0.0, 10_000.0);
        if line.min_distance_px < 2.0 * line.hysteresis_px {
            check.fail(
                &key("min_distance_px"),
                Some(line.min_distance_px.to_string()),
                format!(
                    "must be at least twice hysteresis_px ({}): moving from one side to the other covers that much",
                    line.hysteresis_px
                ),
            );
        }
        let classes = check.classes(&key("classes"), &line.classes);
        let [side_a, side_b] = line.sides;
        lines.push(LineSettings {
            name: line.name,
            from,
            to,
            side_a,
            side_b,
            hysteresis_px: line.hysteresis_px,
            min_distance_px: line.min_distance_px,
            classes,
        });
    }
    let calibration = raw.calibration.and_then(|c| {
        let h = Homography::from_points(&c.image, &c.ground);
        if h.is_none() {
            check.fail(
                "analytics.calibration",
                None,
                "three of the four image or ground points are on one line: no ground mapping",
            );
        }
        h
    });
    (
        AnalyticsSettings {
            zones,
            lines,
            flow_interval: Duration::from_secs(raw.flow_interval_s),
            calibration,
            approach_px: raw.approach_px,
            track_events: raw.track_events,
        },
        raw.fiware,
    )
}

/// `[pipeline]`.
pub(super) fn validate_pipeline(
    raw: Option<RawPipeline>,
    check: &mut Check<'_, '_>,
) -> PipelineSettings {
    let Some(raw) = raw else {
        return PipelineSettings::default();
    };
    check.range("pipeline.queue", raw.queue as u64, 1, 16);
    PipelineSettings { queue: raw.queue }
}
