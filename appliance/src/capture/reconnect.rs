//! Keeping a camera alive: when the device disappears (unplugged, driver
//! reloaded, stalled), the source is dropped, reopened with the crate's
//! exponential backoff with jitter ([`crate::backoff`]), and the outage is
//! logged and counted. Frames from the new
//! stream carry the next `stream` number so consumers can tell the
//! sequence numbers restarted.
//!
//! The daemon also waits for a camera that is not there at start
//! ([`Reconnecting::waiting`]): the first opening goes through the same
//! backoff, so a pole whose camera is unplugged keeps its outbox, broker
//! session and lamp up and reports the absence once, instead of exiting and
//! being restarted by systemd every few seconds.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use super::{CaptureError, FrameRef, FrameSource, SourceInfo, SourceStats};
use crate::backoff::{Backoff, Retry};
use crate::shutdown::Shutdown;

/// A source that reopens itself with `opener` when its device is lost.
pub struct Reconnecting<S, F> {
    opener: F,
    inner: Option<S>,
    backoff: Backoff,
    shutdown: Shutdown,
    info: SourceInfo,
    /// Streams opened so far minus one: the `stream` of current frames.
    stream: u32,
    /// Counters of the streams already closed.
    past: SourceStats,
    reconnects: u64,
    outage: Duration,
    /// Why the first opening failed, while the source waits for it.
    away: Option<String>,
    /// When waiting for the first opening began.
    waiting_since: Option<Instant>,
}

impl<S, F> Reconnecting<S, F>
where
    S: FrameSource,
    F: FnMut() -> Result<S, CaptureError> + Send,
{
    /// Opens the first stream; failing here is an error, not a retry.
    pub fn open(mut opener: F, backoff: Backoff, shutdown: Shutdown) -> Result<Self, CaptureError> {
        let inner = opener()?;
        Ok(Self {
            info: inner.info(),
            opener,
            inner: Some(inner),
            backoff,
            shutdown,
            stream: 0,
            past: SourceStats::default(),
            reconnects: 0,
            outage: Duration::ZERO,
            away: None,
            waiting_since: None,
        })
    }

    /// Opens the first stream if it can; if not, returns a source that
    /// keeps trying with backoff from its first [`FrameSource::next_frame`]
    /// call, describes itself with `placeholder` until then, and says why
    /// through [`FrameSource::away`]. Frames of that first stream carry
    /// stream number 0; the wait counts as outage, not as a reconnection.
    pub fn waiting(
        mut opener: F,
        backoff: Backoff,
        shutdown: Shutdown,
        placeholder: SourceInfo,
    ) -> Self {
        let (inner, away) = match opener() {
            Ok(inner) => (Some(inner), None),
            Err(err) => (None, Some(err.to_string())),
        };
        Self {
            info: inner.as_ref().map(S::info).unwrap_or(placeholder),
            waiting_since: away.as_ref().map(|_| Instant::now()),
            opener,
            inner,
            backoff,
            shutdown,
            stream: 0,
            past: SourceStats::default(),
            reconnects: 0,
            outage: Duration::ZERO,
            away,
        }
    }

    /// Closes the current stream, keeping its counters. A driver that
    /// vanished can make the `v4l` crate panic while releasing buffers; the
    /// panic is contained here so the daemon keeps running.
    fn retire(&mut self) {
        if let Some(inner) = self.inner.take() {
            let stats = inner.stats();
            self.past.frames += stats.frames;
            self.past.dropped += stats.dropped;
            if catch_unwind(AssertUnwindSafe(move || drop(inner))).is_err() {
                tracing::warn!(origin = %self.info.origin, "releasing the lost camera failed; continuing");
            }
        }
    }

    /// Reopens with backoff until it works or a stop is asked for.
    fn reopen(&mut self, lost_at: Instant) -> bool {
        let mut retry = Retry::new(self.backoff);
        let mut attempts = 0u32;
        loop {
            let delay = retry.next_delay();
            if !self.shutdown.sleep(delay) {
                return false;
            }
            attempts += 1;
            match (self.opener)() {
                Ok(inner) => {
                    let outage = lost_at.elapsed();
                    let info = inner.info();
                    if info.layout != self.info.layout {
                        tracing::warn!(before = ?self.info.layout, after = ?info.layout, "camera came back with another format");
                    }
                    self.info = info;
                    self.inner = Some(inner);
                    self.outage += outage;
                    if self.away.take().is_some() {
                        tracing::info!(
                            origin = %self.info.origin,
                            waited_ms = outage.as_millis() as u64,
                            attempts,
                            "camera opened after {} ms",
                            outage.as_millis()
                        );
                        return true;
                    }
                    self.stream += 1;
                    self.reconnects += 1;
                    tracing::warn!(
                        origin = %self.info.origin,
                        outage_ms = outage.as_millis() as u64,
                        attempts,
                        "camera reconnected after {} ms",
                        outage.as_millis()
                    );
                    return true;
                }
                Err(err) => {
                    if attempts == 1 || attempts.is_power_of_two() {
                        tracing::warn!(
                            attempts,
                            retry_in_ms = delay.as_millis() as u64,
                            "camera still unavailable: {err}"
                        );
                    }
                }
            }
        }
    }
}

impl<S, F> FrameSource for Reconnecting<S, F>
where
    S: FrameSource,
    F: FnMut() -> Result<S, CaptureError> + Send,
{
    fn info(&self) -> SourceInfo {
        self.info.clone()
    }

    fn next_frame(&mut self, visit: &mut dyn FnMut(FrameRef<'_>)) -> Result<bool, CaptureError> {
        loop {
            if self.shutdown.requested() {
                return Ok(false);
            }
            if self.inner.is_none() {
                // Waiting for the first opening (see `waiting`).
                let since = self.waiting_since.unwrap_or_else(Instant::now);
                if !self.reopen(since) {
                    return Ok(false);
                }
                continue;
            }
            let Some(inner) = self.inner.as_mut() else {
                unreachable!("checked above")
            };
            let stream = self.stream;
            match inner.next_frame(&mut |mut frame| {
                frame.stream = stream;
                visit(frame)
            }) {
                Err(err) if err.is_device_loss() => {
                    let lost_at = Instant::now();
                    tracing::warn!(origin = %self.info.origin, "camera lost: {err}");
                    self.retire();
                    if !self.reopen(lost_at) {
                        return Ok(false);
                    }
                }
                other => return other,
            }
        }
    }

    fn away(&self) -> Option<String> {
        self.away.clone()
    }

    fn stats(&self) -> SourceStats {
        let current = self.inner.as_ref().map(|s| s.stats()).unwrap_or_default();
        SourceStats {
            frames: self.past.frames + current.frames,
            dropped: self.past.dropped + current.dropped,
            reconnects: self.reconnects,
            outage_ms: self.outage.as_millis() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{FrameLayout, PixelFormat, YuvEncoding};
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    const LAYOUT: FrameLayout = FrameLayout {
        format: PixelFormat::Grey,
        width: 2,
        height: 1,
        stride: 2,
        yuv: YuvEncoding {
            bt709: false,
            full_range: false,
        },
    };

    /// A camera that yields `frames_before_loss` frames, then fails as if
    /// unplugged.
    struct Flaky {
        left: u32,
        sequence: u64,
        stats: SourceStats,
    }

    impl FrameSource for Flaky {
        fn info(&self) -> SourceInfo {
            SourceInfo {
                origin: "flaky".into(),
                layout: LAYOUT,
                fps_requested: 25.0,
                fps_negotiated: 25.0,
            }
        }
        fn next_frame(
            &mut self,
            visit: &mut dyn FnMut(FrameRef<'_>),
        ) -> Result<bool, CaptureError> {
            if self.left == 0 {
                return Err(CaptureError::Device {
                    device: PathBuf::from("/dev/video9"),
                    what: "dequeue a frame",
                    source: std::io::Error::from_raw_os_error(19),
                });
            }
            self.left -= 1;
            self.sequence += 1;
            self.stats.frames += 1;
            visit(FrameRef {
                data: &[1, 2],
                layout: LAYOUT,
                sequence: self.sequence,
                timestamp: Duration::ZERO,
                stream: 0,
            });
            Ok(true)
        }
        fn stats(&self) -> SourceStats {
            self.stats
        }
    }

    const FAST: Backoff = Backoff {
        min: Duration::from_millis(1),
        max: Duration::from_millis(4),
    };

    #[test]
    fn a_lost_camera_is_reopened_and_its_frames_carry_the_next_stream_number() {
        // The device is missing for two attempts after the first loss.
        let attempts = Arc::new(Mutex::new(0u32));
        let counter = Arc::clone(&attempts);
        let opener = move || {
            let mut n = counter.lock().unwrap();
            *n += 1;
            match *n {
                1 => Ok(Flaky {
                    left: 3,
                    sequence: 0,
                    stats: SourceStats::default(),
                }),
                2 | 3 => Err(CaptureError::Open {
                    device: "/dev/video9".into(),
                    source: std::io::Error::from_raw_os_error(2),
                }),
                _ => Ok(Flaky {
                    left: 100,
                    sequence: 0,
                    stats: SourceStats::default(),
                }),
            }
        };
        let mut source = Reconnecting::open(opener, FAST, Shutdown::new()).unwrap();
        let mut seen = Vec::new();
        for _ in 0..6 {
            assert!(source
                .next_frame(&mut |f| seen.push((f.stream, f.sequence)))
                .unwrap());
        }
        assert_eq!(seen, [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]);
        assert_eq!(*attempts.lock().unwrap(), 4);
        let stats = source.stats();
        assert_eq!(stats.frames, 6);
        assert_eq!(stats.reconnects, 1);
    }

    #[test]
    fn a_missing_device_at_start_is_an_error_not_a_retry() {
        let opener = || -> Result<Flaky, CaptureError> {
            Err(CaptureError::Open {
                device: "/dev/video9".into(),
                source: std::io::Error::from_raw_os_error(2),
            })
        };
        let err = Reconnecting::open(opener, FAST, Shutdown::new())
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("camera /dev/video9: cannot open"),
            "{err}"
        );
    }

    #[test]
    fn a_stop_during_an_outage_ends_the_stream_cleanly() {
        let shutdown = Shutdown::new();
        let first = Arc::new(Mutex::new(true));
        let opener = move || {
            let mut first = first.lock().unwrap();
            if std::mem::replace(&mut *first, false) {
                Ok(Flaky {
                    left: 1,
                    sequence: 0,
                    stats: SourceStats::default(),
                })
            } else {
                Err(CaptureError::Open {
                    device: "/dev/video9".into(),
                    source: std::io::Error::from_raw_os_error(2),
                })
            }
        };
        let slow = Backoff {
            min: Duration::from_millis(20),
            max: Duration::from_millis(40),
        };
        let mut source = Reconnecting::open(opener, slow, shutdown.clone()).unwrap();
        assert!(source.next_frame(&mut |_| {}).unwrap());
        let stopper = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                shutdown.request();
            })
        };
        assert!(!source.next_frame(&mut |_| {}).unwrap());
        stopper.join().unwrap();
        assert_eq!(source.stats().reconnects, 0);
    }
}
