//! `[outbox]`: where events wait for the broker, and how much may wait.

use std::time::Duration;

use serde::Deserialize;

use super::check::Check;
use crate::outbox::ledger::Limits;
use crate::outbox::OutboxSettings;

/// `[outbox]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    /// The outbox database folder (created if missing). Relative paths
    /// start from the configuration file's folder; `${NAME}` is replaced by
    /// the environment variable NAME.
    pub path: Option<String>,
    /// Most bytes of events held, 65 536 to 17 179 869 184 (16 GiB); when
    /// full, the oldest events are deleted and a `dropped` event says so.
    pub max_bytes: Option<u64>,
    /// Seconds an unpublished event is kept before it is deleted (and
    /// reported by a `dropped` event), 60 to 2 592 000 (30 days).
    pub retention_s: Option<u64>,
    /// Milliseconds between durable commits, 1 to 10 000 (default 1000):
    /// the most recent events a power cut can lose, and the longest an
    /// event waits before it is published. Longer windows put more events
    /// in each commit and wear the SD card less (docs/performance.md).
    pub flush_ms: Option<u64>,
    /// The store's page cache (SQLite's) in bytes, 1 048 576 (1 MiB) to
    /// 268 435 456 (256 MiB); default 16 MiB, an upper bound (SQLite fills
    /// it only as the store grows).
    pub cache_bytes: Option<u64>,
}

pub(super) fn validate(raw: RawOutbox, check: &mut Check<'_, '_>) -> Option<OutboxSettings> {
    let d = OutboxSettings::default();
    let before = check.count();
    let path = match &raw.path {
        Some(path) => check.path("outbox.path", path),
        None => Some(d.path.clone()),
    };
    let max_bytes = raw.max_bytes.unwrap_or(d.limits.max_bytes);
    let retention_s = raw.retention_s.unwrap_or(d.limits.retention_ms / 1000);
    let flush_ms = raw.flush_ms.unwrap_or(d.flush_every.as_millis() as u64);
    check.range("outbox.max_bytes", max_bytes, 65_536, 16 << 30);
    check.range("outbox.retention_s", retention_s, 60, 30 * 86_400);
    check.range("outbox.flush_ms", flush_ms, 1, 10_000);
    let cache_bytes = raw.cache_bytes.unwrap_or(d.cache_bytes);
    check.range("outbox.cache_bytes", cache_bytes, 1 << 20, 256 << 20);
    if check.count() > before {
        return None;
    }
    Some(OutboxSettings {
        path: path?,
        limits: Limits {
            max_bytes,
            retention_ms: retention_s * 1000,
        },
        flush_every: Duration::from_millis(flush_ms),
        cache_bytes,
    })
}
