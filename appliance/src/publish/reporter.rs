//! The daemon's side of events: one handle that commits what `run` reports
//! to the outbox (with its flusher thread) and, when a broker is
//! configured, publishes it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::events::{Body, Health, Origin, Status};
use crate::outbox::Outbox;
use crate::shutdown::Shutdown;

use super::{PublishError, Publisher};

/// How long a stopping daemon waits for the broker to take the last events.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Health figures the daemon measures; the reporter adds its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct DaemonHealth {
    pub fps: f64,
    pub frames: u64,
    pub dropped_frames: u64,
    pub reconnects: u64,
    pub outage_ms: u64,
    pub inferences: u64,
    pub skipped_by_motion: u64,
    pub queue_dropped: u64,
    pub inference_ms: f64,
    pub tracks: u64,
}

/// Events from the daemon loop to the outbox and the broker.
pub struct Reporter {
    outbox: Arc<Outbox>,
    flusher: std::thread::JoinHandle<()>,
    publisher: Option<Publisher>,
    stop: Shutdown,
    health_every: Duration,
    last_health: Instant,
}

impl Reporter {
    /// Opens the outbox and starts publishing; `None` when the settings have
    /// no `[outbox]` (no events are kept then).
    pub fn start(settings: &Settings) -> Result<Option<Reporter>, PublishError> {
        let Some(outbox_settings) = &settings.outbox else {
            return Ok(None);
        };
        let origin = Origin {
            site: settings.device.site.clone(),
            device: settings.device.id.clone(),
        };
        let outbox = Arc::new(Outbox::open(outbox_settings, origin.clone())?);
        tracing::info!(
            path = %outbox.path().display(),
            held = outbox.depth(),
            "outbox open"
        );
        let stop = Shutdown::new();
        let flusher = outbox
            .spawn_flusher(outbox_settings.flush_every, stop.clone())
            .map_err(|e| PublishError::Thread("outbox-flush", e))?;
        let publisher = match &settings.mqtt {
            Some(mqtt) => Some(Publisher::start(
                mqtt,
                origin,
                Arc::clone(&outbox),
                stop.clone(),
            )?),
            None => None,
        };
        Ok(Some(Reporter {
            outbox,
            flusher,
            publisher,
            stop,
            health_every: settings.events.health_interval,
            last_health: Instant::now(),
        }))
    }

    /// Commits an event; a storage failure is logged, never fatal.
    pub fn report(&self, body: Body) {
        if let Err(err) = self.outbox.push(body) {
            tracing::error!("event not stored: {err}");
        }
    }

    /// A `status` event.
    pub fn status(&self, state: &str, detail: impl Into<String>) {
        self.report(Body::Status(Status {
            state: state.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            detail: detail.into(),
        }));
    }

    /// Whether a `health` event is due.
    pub fn health_due(&self) -> bool {
        self.last_health.elapsed() >= self.health_every
    }

    /// A `health` event with the daemon's figures and the outbox's.
    pub fn health(&mut self, daemon: DaemonHealth) {
        self.last_health = Instant::now();
        let broker_reconnects = self
            .publisher
            .as_ref()
            .map_or(0, |p| p.stats.reconnects.load(Ordering::Relaxed));
        self.report(Body::Health(Health {
            fps: (daemon.fps * 10.0).round() / 10.0,
            frames: daemon.frames,
            dropped_frames: daemon.dropped_frames,
            reconnects: daemon.reconnects,
            outage_ms: daemon.outage_ms,
            outbox_depth: self.outbox.depth(),
            broker_reconnects,
            inferences: daemon.inferences,
            skipped_by_motion: daemon.skipped_by_motion,
            queue_dropped: daemon.queue_dropped,
            inference_ms: (daemon.inference_ms * 100.0).round() / 100.0,
            tracks: daemon.tracks,
        }));
    }

    /// Commits what is left, gives a connected broker a moment to take it,
    /// then stops the threads.
    pub fn finish(self) {
        if let Err(err) = self.outbox.commit() {
            tracing::error!("{err}");
        }
        if let Some(publisher) = &self.publisher {
            let deadline = Instant::now() + DRAIN_GRACE;
            while publisher.stats.connected.load(Ordering::SeqCst)
                && self.outbox.depth() > 0
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.stop.request();
        let _ = self.flusher.join();
        if let Some(publisher) = self.publisher {
            publisher.join();
        }
        tracing::info!(held = self.outbox.depth(), "outbox closed");
    }
}
