//! `[analytics]`: zones, counting lines, flows and ground calibration.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use super::check::Check;
use crate::analytics::geometry::Homography;
use crate::analytics::{AnalyticsSettings, LineSettings, ZoneSettings};

/// `[analytics]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalytics {
    /// Seconds of frame time per `flow` event, 1 to 86 400.
    pub flow_interval_s: Option<u64>,
    /// Distance in pixels under which a track moving towards a line
    /// "approaches" it (lighting presence), 0 to 10 000.
    pub approach_px: Option<f32>,
    /// Emit a `track` event when a track ends.
    pub track_events: Option<bool>,
    /// Also emit FIWARE TrafficFlowObserved / CrowdFlowObserved entities.
    pub fiware: Option<bool>,
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
    pub sides: Option<[String; 2]>,
    /// Pixels from the line within which a side is not yet decided.
    pub hysteresis_px: Option<f32>,
    /// Pixels an object must travel between its two sides to count.
    pub min_distance_px: Option<f32>,
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

pub(super) fn validate(raw: Option<RawAnalytics>, check: &mut Check<'_, '_>) -> AnalyticsSettings {
    let d = AnalyticsSettings::default();
    let Some(raw) = raw else {
        return d;
    };
    let flow_interval_s = raw.flow_interval_s.unwrap_or(d.flow_interval.as_secs());
    let approach_px = raw.approach_px.unwrap_or(d.approach_px);
    check.range("analytics.flow_interval_s", flow_interval_s, 1, 86_400);
    check.fraction("analytics.approach_px", approach_px, 0.0, 10_000.0);
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
        let polygon = check.polygon(&key("polygon"), &zone.polygon, "zone");
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
        let mut settings = LineSettings::new(line.name, from, to);
        let length = (to[0] - from[0]).hypot(to[1] - from[1]);
        if length < 1.0 {
            check.fail(
                &key("to"),
                Some(format!("{to:?}")),
                "the line's two ends are the same point",
            );
        }
        let sides = line
            .sides
            .unwrap_or([settings.side_a.clone(), settings.side_b.clone()]);
        for (s, side) in sides.iter().enumerate() {
            check.name(&key(&format!("sides[{s}]")), side);
        }
        if sides[0] == sides[1] {
            check.fail(
                &key("sides"),
                Some(format!("{sides:?}")),
                "the two sides need different names",
            );
        }
        let hysteresis_px = line.hysteresis_px.unwrap_or(settings.hysteresis_px);
        let min_distance_px = line.min_distance_px.unwrap_or(settings.min_distance_px);
        check.fraction(&key("hysteresis_px"), hysteresis_px, 0.0, 1000.0);
        check.fraction(&key("min_distance_px"), min_distance_px, 0.0, 10_000.0);
        if min_distance_px < 2.0 * hysteresis_px {
            check.fail(
                &key("min_distance_px"),
                Some(min_distance_px.to_string()),
                format!(
                    "must be at least twice hysteresis_px ({hysteresis_px}): moving from one side to the other covers that much"
                ),
            );
        }
        settings.classes = check.classes(&key("classes"), &line.classes);
        let [side_a, side_b] = sides;
        settings.side_a = side_a;
        settings.side_b = side_b;
        settings.hysteresis_px = hysteresis_px;
        settings.min_distance_px = min_distance_px;
        lines.push(settings);
    }
    let calibration_points = raw
        .calibration
        .as_ref()
        .map(|c| {
            c.image
                .iter()
                .copied()
                .zip(c.ground.iter().copied())
                .collect()
        })
        .unwrap_or_default();
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
    AnalyticsSettings {
        zones,
        lines,
        flow_interval: Duration::from_secs(flow_interval_s),
        calibration,
        calibration_points,
        approach_px,
        track_events: raw.track_events.unwrap_or(d.track_events),
        fiware: raw.fiware.unwrap_or(d.fiware),
    }
}
