//! Reconnection delays: exponential with jitter, so a fleet of poles that
//! lost the same broker does not hammer it in step when it returns. Pure:
//! the random source is passed in.

use std::time::Duration;

/// Exponential backoff between `min` and `max`, doubling per failure.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// Forgets past failures (after a successful connection).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay before the next attempt. `unit` is a random number in
    /// [0, 1): the delay is uniformly spread over the upper half of the
    /// exponential step ("equal jitter"), never below `min` nor above `max`.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let step = self
            .min
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        let half = step / 2;
        let jitter = half.mul_f64(unit.clamp(0.0, 1.0));
        (half + jitter).max(self.min)
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

    #[test]
    fn delays_double_up_to_the_maximum_and_stay_within_bounds() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        // Top of each step with unit just under 1, bottom with 0.
        let tops: Vec<Duration> = (0..6).map(|_| b.next_delay(0.999_999)).collect();
        assert!(tops[0] <= ms(100) && tops[1] <= ms(200) && tops[2] <= ms(400));
        assert!(tops[3] <= ms(800) && tops[4] <= ms(1000) && tops[5] <= ms(1000));
        assert!(tops[4] >= ms(999));
        b.reset();
        assert_eq!(b.next_delay(0.0), ms(100), "never below min");
        assert_eq!(b.next_delay(0.0), ms(100));
        assert_eq!(b.next_delay(0.0), ms(200));
    }

    #[test]
    fn jitter_spreads_delays_of_the_same_step() {
        let mut rng = SplitMix::new(7);
        let delays: Vec<Duration> = (0..50)
            .map(|_| {
                let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(60));
                for _ in 0..5 {
                    b.next_delay(0.5);
                }
                b.next_delay(rng.unit())
            })
            .collect();
        let min = delays.iter().min().unwrap();
        let max = delays.iter().max().unwrap();
        assert!(*min >= Duration::from_millis(160) && *max <= Duration::from_millis(320));
        assert!(*max - *min > Duration::from_millis(100), "{min:?}..{max:?}");
    }
}
