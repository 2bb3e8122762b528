//! Noticing a camera that stopped delivering frames: a pure state machine.
//! The main thread tells it when frames arrive and asks it, with the time,
//! whether the camera just got lost or came back; it reads no clock.

use std::time::{Duration, Instant};

/// A change of the camera's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// No frame for `waited` (at least the watch's limit).
    Lost { waited: Duration },
    /// Frames flow again after an outage of `after`.
    Back { after: Duration },
}

/// Whether frames keep coming.
#[derive(Clone, Debug)]
pub struct CameraWatch {
    lost_after: Duration,
    started: Instant,
    last_frame: Option<Instant>,
    lost_since: Option<Instant>,
}

impl CameraWatch {
    /// A watch started at `now` that declares the camera lost after
    /// `lost_after` without a frame (counted from `now` until the first).
    pub fn new(lost_after: Duration, now: Instant) -> Self {
        Self {
            lost_after,
            started: now,
            last_frame: None,
            lost_since: None,
        }
    }

    /// A watch started at `now` for a camera already known to be away (it
    /// could not be opened): no `Lost` is reported for it, one `Back` is
    /// when its first frames arrive.
    pub fn away(lost_after: Duration, now: Instant) -> Self {
        Self {
            lost_since: Some(now),
            ..Self::new(lost_after, now)
        }
    }

    /// Frames arrived at `now`.
    pub fn frame(&mut self, now: Instant) {
        self.last_frame = Some(now);
    }

    /// Whether the camera counts as lost.
    pub fn is_lost(&self) -> bool {
        self.lost_since.is_some()
    }

    /// The change at `now`, if any: each outage gives one `Lost` and, when
    /// frames come back, one `Back`.
    pub fn check(&mut self, now: Instant) -> Option<Change> {
        let waited = now.saturating_duration_since(self.last_frame.unwrap_or(self.started));
        match self.lost_since {
            None if waited >= self.lost_after => {
                self.lost_since = Some(now);
                Some(Change::Lost { waited })
            }
            Some(since) if self.last_frame.is_some() && waited < self.lost_after => {
                self.lost_since = None;
                Some(Change::Back {
                    after: now.saturating_duration_since(since),
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_camera_silent_past_the_limit_is_lost_once_then_back_once() {
        let t0 = Instant::now();
        let mut watch = CameraWatch::new(ms(3000), t0);
        watch.frame(t0 + ms(100));
        assert_eq!(watch.check(t0 + ms(3000)), None);
        assert_eq!(
            watch.check(t0 + ms(3100)),
            Some(Change::Lost { waited: ms(3000) })
        );
        assert!(watch.is_lost());
        assert_eq!(watch.check(t0 + ms(9000)), None, "one Lost per outage");
        watch.frame(t0 + ms(9500));
        assert_eq!(
            watch.check(t0 + ms(9550)),
            Some(Change::Back { after: ms(6450) })
        );
        assert!(!watch.is_lost());
        assert_eq!(watch.check(t0 + ms(9600)), None);
    }

    #[test]
    fn a_camera_away_at_start_is_never_reported_lost_and_back_once_on_its_first_frame() {
        let t0 = Instant::now();
        let mut watch = CameraWatch::away(ms(1000), t0);
        assert!(watch.is_lost());
        for t in [0, 10, 999, 1000, 60_000] {
            assert_eq!(watch.check(t0 + ms(t)), None, "at {t} ms");
        }
        watch.frame(t0 + ms(61_000));
        assert_eq!(
            watch.check(t0 + ms(61_010)),
            Some(Change::Back { after: ms(61_010) })
        );
        assert!(!watch.is_lost());
    }

    #[test]
    fn a_camera_that_never_delivers_is_lost_after_the_limit_from_the_start() {
        let t0 = Instant::now();
        let mut watch = CameraWatch::new(ms(1000), t0);
        assert_eq!(watch.check(t0 + ms(999)), None);
        assert_eq!(
            watch.check(t0 + ms(1000)),
            Some(Change::Lost { waited: ms(1000) })
        );
    }

    #[test]
    fn steady_frames_never_raise_a_change() {
        let t0 = Instant::now();
        let mut watch = CameraWatch::new(ms(500), t0);
        for i in 0..100 {
            let now = t0 + ms(40 * i);
            watch.frame(now);
            assert_eq!(watch.check(now + ms(20)), None);
        }
    }
}
