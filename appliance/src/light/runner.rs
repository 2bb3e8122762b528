//! The lighting thread: what the daemon starts beside the pipeline.
//!
//! The pipeline reports through a [`LightFeed`] (presence, camera and
//! detector health, frames); the thread calls [`Lighting::update`] about 20
//! times a second with the wall clock, and at once when presence starts or
//! stops (the feed wakes it), hands every change to a callback (the daemon
//! turns it into a `light` event), and on shutdown applies the safe state
//! and reports a `safe_exit` change.
//!
//! The feed also records, for each presence boost, the time from the
//! arrival of the frame that first showed the presence to the return of
//! the output write that started the ramp: the last
//! [`LATENCIES_KEPT`] of them, so memory stays bounded on a pole that runs
//! for years (the pipeline benchmark reads them).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{LightInputs, LightState, Lighting};
use crate::shutdown::Shutdown;

/// Time between two policy steps.
pub const PERIOD: Duration = Duration::from_millis(50);

/// Boost latencies kept (the most recent ones).
pub const LATENCIES_KEPT: usize = 1024;

#[derive(Debug)]
struct FeedState {
    presence: bool,
    camera_ok: bool,
    detector_ok: bool,
    last_frame: Option<Instant>,
    /// Arrival of the frame that started the current presence.
    presence_since: Option<Instant>,
    /// Frame arrival → boost write, one per boost, the last
    /// [`LATENCIES_KEPT`].
    boost_latencies: VecDeque<Duration>,
    /// A remote override: level and until when (UTC ms).
    manual: Option<(f64, i64)>,
}

/// What the pipeline tells the lighting thread; cheap to clone.
#[derive(Clone, Debug)]
pub struct LightFeed {
    state: Arc<Mutex<FeedState>>,
    wake_tx: crossbeam_channel::Sender<()>,
    wake_rx: crossbeam_channel::Receiver<()>,
}

impl Default for LightFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl LightFeed {
    /// Nothing seen yet: no frame (so fail-safe at night until one comes).
    pub fn new() -> Self {
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        LightFeed {
            state: Arc::new(Mutex::new(FeedState {
                presence: false,
                camera_ok: true,
                detector_ok: true,
                last_frame: None,
                presence_since: None,
                boost_latencies: VecDeque::new(),
                manual: None,
            })),
            wake_tx,
            wake_rx,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut FeedState) -> T) -> T {
        f(&mut crate::sync::lock(&self.state))
    }

    /// A frame went through the pipeline, with or without presence.
    pub fn frame(&self, presence: bool) {
        self.frame_arrived(presence, Instant::now());
    }

    /// The same, for a frame that arrived from the camera at `arrived`.
    pub fn frame_arrived(&self, presence: bool, arrived: Instant) {
        let changed = self.with(|s| {
            s.last_frame = Some(Instant::now());
            let changed = s.presence != presence;
            if presence && !s.presence {
                s.presence_since = Some(arrived);
            } else if !presence {
                s.presence_since = None;
            }
            s.presence = presence;
            changed
        });
        if changed {
            // Full means a wake-up is already pending.
            let _ = self.wake_tx.try_send(());
        }
    }

    /// Frame arrival → output write of the last [`LATENCIES_KEPT`]
    /// presence boosts, oldest first.
    pub fn boost_latencies(&self) -> Vec<Duration> {
        self.with(|s| s.boost_latencies.iter().copied().collect())
    }

    fn record_boost(&self) {
        self.with(|s| {
            if let Some(since) = s.presence_since.take() {
                if s.boost_latencies.len() == LATENCIES_KEPT {
                    s.boost_latencies.pop_front();
                }
                s.boost_latencies.push_back(since.elapsed());
            }
        });
    }

    /// Holds the lamp at a level until a UTC time (ms), or (`None`) gives
    /// it back to the policy; the lighting thread applies it at once.
    pub fn set_manual(&self, manual: Option<(f64, i64)>) {
        self.with(|s| s.manual = manual);
        let _ = self.wake_tx.try_send(());
    }

    fn manual(&self) -> Option<(f64, i64)> {
        self.with(|s| s.manual)
    }

    /// The camera was lost (`false`) or is back (`true`).
    pub fn camera(&self, ok: bool) {
        self.with(|s| s.camera_ok = ok);
    }

    /// The detector failed (`false`) or runs again (`true`).
    pub fn detector(&self, ok: bool) {
        self.with(|s| s.detector_ok = ok);
    }

    /// The inputs as of now.
    pub fn inputs(&self) -> LightInputs {
        let state = crate::sync::lock(&self.state);
        LightInputs {
            presence: state.presence,
            camera_ok: state.camera_ok,
            detector_ok: state.detector_ok,
            last_frame_age: state.last_frame.map(|t| t.elapsed()),
        }
    }
}

/// Starts the lighting thread. `now_ms` gives the UTC time (ms since the
/// epoch); `on_change` receives every change. The thread ends when
/// `shutdown` is requested, after applying the safe state.
pub fn spawn(
    mut lighting: Lighting,
    feed: LightFeed,
    shutdown: Shutdown,
    now_ms: impl Fn() -> i64 + Send + 'static,
    mut on_change: impl FnMut(LightState) + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("lighting".into())
        .spawn(move || {
            let mut failing = false;
            while !shutdown.requested() {
                lighting.set_manual(feed.manual());
                match lighting.update(now_ms(), &feed.inputs()) {
                    Ok(change) => {
                        failing = false;
                        if let Some(change) = change {
                            if change.reason == super::LightReason::Presence
                                && change.level > change.previous
                            {
                                feed.record_boost();
                            }
                            on_change(change);
                        }
                    }
                    // Logged once per failure spell; the outputs are retried
                    // at every step.
                    Err(err) => {
                        if !failing {
                            tracing::error!("lighting: {err}");
                        }
                        failing = true;
                    }
                }
                let _ = feed.wake_rx.recv_timeout(PERIOD);
            }
            match lighting.safe() {
                Ok(()) => on_change(lighting.safe_exit_record("daemon stopping")),
                Err(err) => tracing::error!("lighting: cannot apply the safe state: {err}"),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boost_latencies_keep_only_the_most_recent_ones() {
        let feed = LightFeed::new();
        let start = Instant::now();
        for _ in 0..LATENCIES_KEPT + 10 {
            feed.frame_arrived(true, start);
            feed.record_boost();
            feed.frame_arrived(false, start);
        }
        let kept = feed.boost_latencies();
        assert_eq!(kept.len(), LATENCIES_KEPT);
        // Only a boost that was started by a frame is recorded.
        feed.record_boost();
        assert_eq!(feed.boost_latencies().len(), LATENCIES_KEPT);
    }
}
