//! Delays between attempts to reach something that went away (a camera, a
//! broker): exponential between two bounds, with jitter, so a fleet of
//! poles that lost the same broker does not hammer it in step when it
//! returns.
//!
//! [`Backoff`] is the settings (plain data, from the configuration);
//! [`Retry`] is the state of one series of attempts. The delay itself is a
//! pure function of the failures so far and a random number passed in
//! ([`Backoff::delay`]), so tests need no clock and no randomness.

use std::time::Duration;

/// Bounds of an exponential backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay (and the smallest).
    pub min: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay after `failures` failed attempts in a row (0 for the first
    /// retry). `unit` is a random number in [0, 1): the delay is spread
    /// uniformly over the upper half of the exponential step ("equal
    /// jitter"), never below `min` nor above `max`.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let max = self.max.max(self.min);
        let step = self.min.saturating_mul(1u32 << failures.min(20)).min(max);
        let half = step / 2;
        let jitter = half.mul_f64(if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        });
        (half + jitter).max(self.min)
    }
}

/// One series of attempts: counts failures and draws the jitter.
#[derive(Debug, Clone)]
pub struct Retry {
    bounds: Backoff,
    failures: u32,
    rng: SplitMix,
}

impl Retry {
    /// A series seeded from the clock and the process id, so poles
    /// restarted together still spread out.
    pub fn new(bounds: Backoff) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self::seeded(bounds, now ^ u64::from(std::process::id()).rotate_left(32))
    }

    /// A series with a fixed seed (tests).
    pub fn seeded(bounds: Backoff, seed: u64) -> Self {
        Self {
            bounds,
            failures: 0,
            rng: SplitMix::new(seed),
        }
    }

    /// The delay before the next attempt; counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.bounds.delay(self.failures, self.rng.unit());
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// The delay before the next attempt after a connection that stayed up
    /// for `stayed_up` (`None`: the attempt failed before connecting). Only
    /// a connection that lasted at least `stable` counts as a success that
    /// starts the series again: one dropped at once (a broker that refuses
    /// what it is sent, a flapping link) makes the delay grow as a refused
    /// attempt does.
    pub fn next_delay_after(&mut self, stayed_up: Option<Duration>, stable: Duration) -> Duration {
        if stayed_up.is_some_and(|up| up >= stable) {
            self.reset();
        }
        self.next_delay()
    }

    /// Failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets past failures (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A small seeded random source (SplitMix64): enough for jitter, and
/// reproducible in tests.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_double_per_failure_up_to_the_maximum_and_stay_within_bounds() {
        let b = Backoff {
            min: ms(100),
            max: ms(1000),
        };
        // Top of each step with unit just under 1, bottom with 0.
        let tops: Vec<Duration> = (0..6).map(|n| b.delay(n, 0.999_999)).collect();
        assert!(tops[0] <= ms(100) && tops[1] <= ms(200) && tops[2] <= ms(400));
        assert!(tops[3] <= ms(800) && tops[4] <= ms(1000) && tops[5] <= ms(1000));
        assert!(tops[4] >= ms(999));
        assert_eq!(b.delay(0, 0.0), ms(100), "never below min");
        assert_eq!(b.delay(1, 0.0), ms(100));
        assert_eq!(b.delay(2, 0.0), ms(200));
        assert_eq!(b.delay(40, 0.5), ms(750), "no overflow after many failures");
    }

    #[test]
    fn jitter_spreads_delays_of_the_same_step() {
        let b = Backoff {
            min: ms(10),
            max: Duration::from_secs(60),
        };
        let delays: Vec<Duration> = (0..50u64)
            .map(|seed| {
                let mut retry = Retry::seeded(b, seed);
                for _ in 0..5 {
                    retry.next_delay();
                }
                retry.next_delay()
            })
            .collect();
        let min = delays.iter().min().unwrap();
        let max = delays.iter().max().unwrap();
        assert!(*min >= ms(160) && *max <= ms(320), "{min:?}..{max:?}");
        assert!(*max - *min > ms(100), "{min:?}..{max:?}");
    }

    #[test]
    fn only_a_connection_that_stayed_up_starts_the_series_again() {
        let bounds = Backoff {
            min: ms(500),
            max: Duration::from_secs(60),
        };
        let stable = Duration::from_secs(30);
        let mut retry = Retry::seeded(bounds, 3);
        // Connected, then dropped after 100 ms, again and again: the
        // delay grows as for refused attempts.
        let flapping: Vec<Duration> = (0..8)
            .map(|_| retry.next_delay_after(Some(ms(100)), stable))
            .collect();
        assert_eq!(retry.failures(), 8);
        assert!(flapping[7] >= Duration::from_secs(30), "{flapping:?}");
        let refused = retry.next_delay_after(None, stable);
        assert!(refused >= Duration::from_secs(30), "{refused:?}");
        // A connection that lasted the stable period starts again.
        assert!(retry.next_delay_after(Some(stable), stable) <= ms(500));
        assert_eq!(retry.failures(), 1);
    }

    #[test]
    fn a_success_starts_the_series_again() {
        let mut retry = Retry::seeded(
            Backoff {
                min: ms(250),
                max: ms(1000),
            },
            1,
        );
        let first: Vec<Duration> = (0..4).map(|_| retry.next_delay()).collect();
        assert_eq!(retry.failures(), 4);
        assert!(first[3] >= ms(500), "{first:?}");
        retry.reset();
        assert!(retry.next_delay() <= ms(250));
    }
}
