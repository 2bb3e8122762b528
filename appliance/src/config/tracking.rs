//! `[tracking]`: tuning of the tracker, with its confident thresholds taken
//! from `[detect]`.

use std::time::Duration;

use serde::Deserialize;

use super::check::Check;
use crate::detect::DetectSettings;
use crate::track::TrackSettings;

/// `[tracking]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracking {
    /// Detections below this score are ignored; those between it and the
    /// class's `detect.min_scores` only help keep existing tracks
    /// (ByteTrack's second round). 0.05 to 1.
    pub low_score: Option<f32>,
    /// Smallest overlap (IoU) of a detection with a track's predicted box
    /// to match it, 0.05 to 0.95.
    pub match_iou: Option<f32>,
    /// The same for low-score detections, 0.05 to 0.95.
    pub low_match_iou: Option<f32>,
    /// Detections in a row before a track is reported, 1 to 30.
    pub min_hits: Option<u32>,
    /// Milliseconds a track survives unseen, 100 to 60 000.
    pub max_coast_ms: Option<u64>,
    /// Largest distance, in box heights, between a coasting track's
    /// predicted centre and a detection that recovers it, 0 to 3 (0: off).
    pub recover_distance: Option<f32>,
}

/// How long a track survives unseen, as configured (checked by
/// [`validate`]).
pub(super) fn max_coast(raw: &Option<RawTracking>) -> Duration {
    raw.as_ref()
        .and_then(|r| r.max_coast_ms)
        .map(Duration::from_millis)
        .unwrap_or(TrackSettings::default().max_coast)
}

pub(super) fn validate(
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
    let d = TrackSettings::default();
    let low_score = raw.low_score.unwrap_or(d.low_score);
    let match_iou = raw.match_iou.unwrap_or(d.match_iou);
    let low_match_iou = raw.low_match_iou.unwrap_or(d.low_match_iou);
    let min_hits = raw.min_hits.unwrap_or(d.min_hits);
    let max_coast_ms = raw.max_coast_ms.unwrap_or(d.max_coast.as_millis() as u64);
    let recover_distance = raw.recover_distance.unwrap_or(d.recover_distance);
    check.fraction("tracking.low_score", low_score, 0.05, 1.0);
    check.fraction("tracking.match_iou", match_iou, 0.05, 0.95);
    check.fraction("tracking.low_match_iou", low_match_iou, 0.05, 0.95);
    check.range("tracking.min_hits", min_hits.into(), 1, 30);
    check.range("tracking.max_coast_ms", max_coast_ms, 100, 60_000);
    check.fraction("tracking.recover_distance", recover_distance, 0.0, 3.0);
    if let Some(detect) = detect {
        for (class, &min) in &detect.min_scores {
            if low_score > min {
                check.fail(
                    "tracking.low_score",
                    Some(low_score.to_string()),
                    format!("must not exceed detect.min_scores for {class} ({min})"),
                );
                break;
            }
        }
    }
    settings.low_score = low_score;
    settings.match_iou = match_iou;
    settings.low_match_iou = low_match_iou;
    settings.min_hits = min_hits;
    settings.max_coast = Duration::from_millis(max_coast_ms);
    settings.recover_distance = recover_distance;
    settings
}
