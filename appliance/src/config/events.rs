//! `[events]`: what the daemon reports on its own, and how often.

use std::time::Duration;

use serde::Deserialize;

use super::check::Check;
use crate::events::EventSettings;

/// `[events]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    /// Milliseconds between two `health` events, 100 to 86 400 000.
    pub health_interval_ms: Option<u64>,
}

pub(super) fn validate(raw: Option<RawEvents>, check: &mut Check<'_, '_>) -> EventSettings {
    let defaults = EventSettings::default();
    let raw = raw.unwrap_or_default();
    let ms = raw
        .health_interval_ms
        .unwrap_or(defaults.health_interval.as_millis() as u64);
    if check.range("events.health_interval_ms", ms, 100, 86_400_000) {
        EventSettings {
            health_interval: Duration::from_millis(ms),
        }
    } else {
        defaults
    }
}
