//! The daemon's side of events: one handle that commits what `run` reports
//! to the outbox (with its flusher thread) and, when a broker is
//! configured, publishes it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::{Body, Origin, Sink, Status};
use crate::outbox::{Outbox, OutboxSettings};
use crate::shutdown::Shutdown;

use super::{MqttSettings, PublishError, Publisher};

/// How long a stopping daemon waits for the broker to take the last events.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Events from the daemon loop to the outbox and the broker.
pub struct Reporter {
    outbox: Arc<Outbox>,
    flusher: std::thread::JoinHandle<()>,
    publisher: Option<Publisher>,
    stop: Shutdown,
}

impl Reporter {
    /// Opens the outbox and starts publishing (when a broker is given).
    pub fn start(
        outbox_settings: &OutboxSettings,
        mqtt: Option<&MqttSettings>,
        origin: Origin,
    ) -> Result<Reporter, PublishError> {
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
        let publisher = match mqtt {
            Some(mqtt) => Some(Publisher::start(
                mqtt,
                origin,
                Arc::clone(&outbox),
                stop.clone(),
            )?),
            None => None,
        };
        Ok(Reporter {
            outbox,
            flusher,
            publisher,
            stop,
        })
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

impl Sink for Reporter {
    /// Commits the event; a `health` event first gets the figures the
    /// reporter owns (outbox depth, broker reconnections).
    fn event(&mut self, mut body: Body) {
        if let Body::Health(health) = &mut body {
            health.outbox_depth = self.outbox.depth();
            health.broker_reconnects = self
                .publisher
                .as_ref()
                .map_or(0, |p| p.stats.reconnects.load(Ordering::Relaxed));
        }
        self.report(body);
    }
}
