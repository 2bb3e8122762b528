//! Frame time: the frames' own timestamps made continuous across camera
//! reconnections and replay loops (where they restart), and mapped to UTC
//! from the wall-clock time of the first frame. Analytics run on this
//! clock, so a recording gives the same counts on every run.

use std::time::Duration;

/// Typical interval assumed between the last frame of a stream and the
/// first of the next.
const GAP: Duration = Duration::from_millis(40);

/// Maps `(stream, timestamp)` of each frame to a continuous frame time.
#[derive(Clone, Debug)]
pub struct FrameClock {
    /// Stream, its first timestamp, and the frame time it started at.
    offset: Option<(u32, Duration, Duration)>,
    last: Duration,
    wall_at_start_ms: u64,
}

impl FrameClock {
    /// A clock whose frame time 0 is `wall_at_start_ms` (ms since the Unix
    /// epoch).
    pub fn new(wall_at_start_ms: u64) -> Self {
        Self {
            offset: None,
            last: Duration::ZERO,
            wall_at_start_ms,
        }
    }

    /// The frame time of a frame of `stream` stamped `timestamp`.
    pub fn time(&mut self, stream: u32, timestamp: Duration) -> Duration {
        let time = match self.offset {
            Some((s, base, start)) if s == stream && timestamp >= base => {
                start + (timestamp - base)
            }
            _ => {
                // A new stream, or time went backwards: continue one
                // typical frame interval after the last frame.
                let start = if self.offset.is_some() {
                    self.last + GAP
                } else {
                    Duration::ZERO
                };
                self.offset = Some((stream, timestamp, start));
                start
            }
        };
        self.last = time;
        time
    }

    /// UTC milliseconds of a frame time.
    pub fn wall_ms(&self, time: Duration) -> u64 {
        self.wall_at_start_ms + time.as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_continues_across_a_reconnection_and_a_replay_loop() {
        let ms = Duration::from_millis;
        let mut clock = FrameClock::new(1_000_000);
        assert_eq!(clock.time(0, ms(5000)), ms(0));
        assert_eq!(clock.time(0, ms(5040)), ms(40));
        // Reconnected: a new stream with its own clock.
        assert_eq!(clock.time(1, ms(20)), ms(80));
        assert_eq!(clock.time(1, ms(60)), ms(120));
        // A replay loop: time went backwards within the stream.
        assert_eq!(clock.time(1, ms(0)), ms(160));
        assert_eq!(clock.wall_ms(ms(160)), 1_000_160);
    }
}
