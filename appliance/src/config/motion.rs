//! `[motion]`: motion gating, so the model only runs when something moves.

use std::time::Duration;

use serde::Deserialize;

use super::check::Check;
use crate::motion::MotionSettings;

/// `[motion]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMotion {
    /// Run the model only on frames with motion (plus refreshes).
    pub enabled: Option<bool>,
    /// Width of the grey image compared, 32 to 640 pixels.
    pub width: Option<u32>,
    /// Brightness change (0-255) that counts, 1 to 255.
    pub threshold: Option<u32>,
    /// Fraction of the picture that must change, 0.0001 to 1.
    pub min_area: Option<f32>,
    /// Milliseconds frames keep going to the model after motion, 0 to 60 000.
    pub hold_ms: Option<u64>,
    /// Longest milliseconds between two inferences, 100 to 60 000.
    pub refresh_ms: Option<u64>,
    /// How fast the background follows the scene, per frame, 0.001 to 1.
    pub learn_rate: Option<f32>,
}

pub(super) fn validate(raw: Option<RawMotion>, check: &mut Check<'_, '_>) -> MotionSettings {
    let d = MotionSettings::default();
    let Some(raw) = raw else {
        return d;
    };
    let width = raw.width.unwrap_or(d.width);
    let threshold = raw.threshold.unwrap_or(d.threshold.into());
    let min_area = raw.min_area.unwrap_or(d.min_area);
    let hold_ms = raw.hold_ms.unwrap_or(d.hold.as_millis() as u64);
    let refresh_ms = raw.refresh_ms.unwrap_or(d.refresh.as_millis() as u64);
    let learn_rate = raw.learn_rate.unwrap_or(d.learn_rate);
    check.range("motion.width", width.into(), 32, 640);
    check.range("motion.threshold", threshold.into(), 1, 255);
    check.fraction("motion.min_area", min_area, 0.0001, 1.0);
    check.range("motion.hold_ms", hold_ms, 0, 60_000);
    check.range("motion.refresh_ms", refresh_ms, 100, 60_000);
    check.fraction("motion.learn_rate", learn_rate, 0.001, 1.0);
    MotionSettings {
        enabled: raw.enabled.unwrap_or(d.enabled),
        width,
        threshold: threshold.min(255) as u8,
        min_area,
        hold: Duration::from_millis(hold_ms),
        refresh: Duration::from_millis(refresh_ms),
        learn_rate,
    }
}
