//! Health figures over each interval, from the counters the pipeline's
//! threads keep: pure, with the time passed in, so the figures can be
//! checked without sleeping.

use std::time::{Duration, Instant};

use crate::capture::SourceStats;
use crate::events::Health;

/// A snapshot of the pipeline's counters (totals since start, except
/// `tracks`, the confirmed tracks alive now).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub captured: u64,
    pub analysed: u64,
    pub inferences: u64,
    pub skipped_by_motion: u64,
    pub predicted: u64,
    pub queue_dropped: u64,
    /// Time spent detecting (pre- and post-processing included).
    pub inference_ns: u64,
    pub tracks: u64,
}

/// Turns counter snapshots into `health` figures over each interval.
#[derive(Clone, Debug)]
pub struct HealthMeter {
    at: Instant,
    last: Counts,
}

impl HealthMeter {
    /// A meter whose first interval starts at `now` with `counts`.
    pub fn new(counts: Counts, now: Instant) -> Self {
        Self {
            at: now,
            last: counts,
        }
    }

    /// The figures of the interval ending at `now`; starts the next one.
    /// The outbox and broker figures are left at 0: the event sink that owns
    /// them fills them in.
    pub fn sample(&mut self, counts: Counts, source: &SourceStats, now: Instant) -> Health {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        let frames = counts.captured.saturating_sub(self.last.captured);
        let runs = counts.inferences.saturating_sub(self.last.inferences);
        let spent = counts.inference_ns.saturating_sub(self.last.inference_ns);
        let fps = if secs > 0.0 {
            frames as f64 / secs
        } else {
            0.0
        };
        let inference_fps = if secs > 0.0 { runs as f64 / secs } else { 0.0 };
        let inference_ms = if runs > 0 {
            spent as f64 / runs as f64 / 1e6
        } else {
            0.0
        };
        self.at = now;
        self.last = counts;
        Health {
            fps: (fps * 10.0).round() / 10.0,
            frames: counts.captured,
            dropped_frames: source.dropped + counts.queue_dropped,
            reconnects: source.reconnects,
            outage_ms: source.outage_ms,
            outbox_depth: 0,
            broker_reconnects: 0,
            inferences: counts.inferences,
            skipped_by_motion: counts.skipped_by_motion,
            predicted: counts.predicted,
            inference_fps: (inference_fps * 10.0).round() / 10.0,
            queue_dropped: counts.queue_dropped,
            inference_ms: (inference_ms * 100.0).round() / 100.0,
            tracks: counts.tracks,
        }
    }
}

/// Something due every `interval`, counted from a start.
#[derive(Clone, Copy, Debug)]
pub struct Every {
    interval: Duration,
    last: Instant,
}

impl Every {
    /// Due first at `now + interval`.
    pub fn new(interval: Duration, now: Instant) -> Self {
        Self {
            interval,
            last: now,
        }
    }

    /// Whether it is due at `now`; if so, the next one is an interval later.
    pub fn due(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last) >= self.interval {
            self.last = now;
            true
        } else {
            false
        }
    }
}

/// The count of analysed frames on the status line (systemd's `STATUS=`):
/// told as soon as the first frame is analysed, then at most once per
/// interval. A health check (the image's boot check, before it marks an
/// updated system good) can then tell a pipeline that analyses frames from
/// one that only opened its camera.
#[derive(Clone, Debug)]
pub struct AnalysedStatus {
    told: u64,
    due: Every,
}

impl AnalysedStatus {
    pub fn new(interval: Duration, now: Instant) -> Self {
        Self {
            told: 0,
            due: Every::new(interval, now),
        }
    }

    /// The status line to send now, if any: `<flowing>: N analysed`.
    pub fn check(&mut self, flowing: &str, analysed: u64, now: Instant) -> Option<String> {
        if analysed == self.told || (self.told > 0 && !self.due.due(now)) {
            return None;
        }
        self.told = analysed;
        Some(format!("{flowing}: {analysed} analysed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_analysed_frame_is_told_at_once_and_later_counts_once_per_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut status = AnalysedStatus::new(s(10), t0);
        let flowing = "analysing frames from /dev/video0";
        assert_eq!(status.check(flowing, 0, t0), None, "nothing analysed yet");
        assert_eq!(
            status.check(flowing, 1, t0 + s(1)).as_deref(),
            Some("analysing frames from /dev/video0: 1 analysed")
        );
        assert_eq!(
            status.check(flowing, 40, t0 + s(5)),
            None,
            "within the interval"
        );
        assert_eq!(
            status.check(flowing, 250, t0 + s(10)).as_deref(),
            Some("analysing frames from /dev/video0: 250 analysed")
        );
        assert_eq!(
            status.check(flowing, 250, t0 + s(30)),
            None,
            "no change, no line"
        );
    }

    #[test]
    fn figures_cover_the_interval_and_totals_cover_the_run() {
        let t0 = Instant::now();
        let start = Counts {
            captured: 100,
            inferences: 50,
            inference_ns: 50 * 20_000_000,
            ..Counts::default()
        };
        let mut meter = HealthMeter::new(start, t0);
        let later = Counts {
            captured: 350,
            inferences: 150,
            inference_ns: 50 * 20_000_000 + 100 * 12_500_000,
            queue_dropped: 7,
            skipped_by_motion: 3,
            predicted: 60,
            tracks: 4,
            ..Counts::default()
        };
        let source = SourceStats {
            dropped: 2,
            reconnects: 1,
            outage_ms: 1500,
            ..SourceStats::default()
        };
        let h = meter.sample(later, &source, t0 + Duration::from_secs(10));
        assert_eq!(h.fps, 25.0);
        assert_eq!(h.frames, 350);
        assert_eq!(h.inference_ms, 12.5, "mean over the interval only");
        assert_eq!(h.inference_fps, 10.0, "100 inferences in 10 s");
        assert_eq!(h.predicted, 60, "a total since start");
        assert_eq!(h.dropped_frames, 9, "driver and queue drops");
        assert_eq!((h.reconnects, h.outage_ms, h.tracks), (1, 1500, 4));
        // An interval without inference says 0, not a stale mean.
        let h = meter.sample(later, &source, t0 + Duration::from_secs(20));
        assert_eq!((h.fps, h.inference_ms, h.inference_fps), (0.0, 0.0, 0.0));
    }

    #[test]
    fn a_timer_is_due_once_per_interval() {
        let t0 = Instant::now();
        let mut every = Every::new(Duration::from_secs(5), t0);
        assert!(!every.due(t0 + Duration::from_millis(4999)));
        assert!(every.due(t0 + Duration::from_secs(5)));
        assert!(!every.due(t0 + Duration::from_secs(6)));
        assert!(every.due(t0 + Duration::from_secs(10)));
    }
}
