//! Wall-clock times for analytics that follow a corrected system clock.
//!
//! Analytics measure everything on frame time (monotonic: durations,
//! speeds and flow intervals never jump), and turn frame time into UTC from
//! the wall clock read at the first frame. A board without a real-time
//! clock starts with a stale time and is stepped by NTP later: the times in
//! events would then stay off by the step for the whole run. The anchor
//! watches the offset between the wall clock and the monotonic clock; when
//! it moves by more than [`TOLERANCE_MS`] the clock was stepped, and the
//! step is added to every later time (re-anchoring), so reported times
//! follow the corrected clock while durations stay measured on frame time.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A change of the wall-monotonic offset larger than this is a clock step
/// (NTP slews smaller errors at most 0.5 ms per second).
pub const TOLERANCE_MS: i64 = 1000;

/// Reads the monotonic and the wall clock together.
pub trait Clocks: Send + Sync {
    /// Monotonic time since an arbitrary origin, and UTC milliseconds.
    fn now(&self) -> (Duration, u64);
}

/// The system's clocks: [`Instant`] and the wall clock ([`crate::events::now_ms`]).
#[derive(Debug)]
pub struct SystemClocks {
    origin: Instant,
}

impl Default for SystemClocks {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clocks for SystemClocks {
    fn now(&self) -> (Duration, u64) {
        (self.origin.elapsed(), crate::events::now_ms())
    }
}

/// The correction to add to frame-derived wall times.
pub struct WallAnchor {
    clocks: Arc<dyn Clocks>,
    /// Wall minus monotonic milliseconds at the first reading.
    base: Option<i64>,
    correction_ms: i64,
}

impl fmt::Debug for WallAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WallAnchor")
            .field("base", &self.base)
            .field("correction_ms", &self.correction_ms)
            .finish()
    }
}

impl WallAnchor {
    pub fn new(clocks: Arc<dyn Clocks>) -> Self {
        Self {
            clocks,
            base: None,
            correction_ms: 0,
        }
    }

    /// Reads the clocks; returns how much the correction changed (non-zero
    /// when a step was detected just now).
    pub fn observe(&mut self) -> i64 {
        let (mono, wall) = self.clocks.now();
        let offset = wall as i64 - mono.as_millis() as i64;
        let base = *self.base.get_or_insert(offset);
        let step = offset - base - self.correction_ms;
        if step.abs() > TOLERANCE_MS {
            self.correction_ms += step;
            tracing::warn!(
                step_ms = step,
                "the system clock was stepped; analytics times follow it"
            );
            step
        } else {
            0
        }
    }

    /// `wall_ms` (from the time anchored at start) with the correction.
    pub fn apply(&self, wall_ms: u64) -> u64 {
        shift(wall_ms, self.correction_ms)
    }
}

/// `wall_ms` moved by `by` milliseconds, never below the epoch.
pub fn shift(wall_ms: u64, by: i64) -> u64 {
    (wall_ms as i64).saturating_add(by).max(0) as u64
}
