//! The daemon's event sink: commits every event the pipeline reports to
//! the outbox (with its flusher thread) and, when a broker is configured,
//! publishes it.
//!
//! It fills in the figures only it knows in `health` events (events held,
//! broker reconnections). A storage failure is logged, never fatal: the
//! pole keeps counting and lighting.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::events::{self, Body, Origin, Status};
use crate::outbox::{Flusher, Outbox, OutboxSettings};

use super::{MqttSettings, PublishError, Publisher};

/// How long a stopping daemon lets a connected broker take the last events.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Events from the daemon to the outbox and the broker.
pub struct Reporter {
    outbox: Arc<Outbox>,
    flusher: Flusher,
    publisher: Option<Publisher>,
}

impl Reporter {
    /// Opens the outbox and starts its flusher, and the publisher when
    /// `mqtt` is given (with the data manifest to publish retained).
    pub fn start(
        outbox: &OutboxSettings,
        mqtt: Option<&MqttSettings>,
        origin: Origin,
        inbox: Option<super::Inbox>,
        manifest: Option<Vec<u8>>,
    ) -> Result<Reporter, PublishError> {
        let flush_every = outbox.flush_every;
        let outbox = Arc::new(Outbox::open(outbox, origin.clone())?);
        tracing::info!(
            path = %outbox.path().display(),
            held = outbox.depth(),
            "outbox open"
        );
        let flusher = outbox
            .spawn_flusher(flush_every)
            .map_err(|e| PublishError::Thread("outbox-flush", e))?;
        let publisher = match mqtt {
            Some(mqtt) => Some(Publisher::start(
                mqtt,
                origin,
                Arc::clone(&outbox),
                inbox,
                manifest,
            )?),
            None => None,
        };
        Ok(Reporter {
            outbox,
            flusher,
            publisher,
        })
    }

    /// Events in the outbox now.
    pub fn depth(&self) -> u64 {
        self.outbox.depth()
    }

    /// The publisher's counters, with a broker.
    pub fn publish_stats(&self) -> Option<Arc<super::PublishStats>> {
        self.publisher.as_ref().map(|p| Arc::clone(&p.stats))
    }

    /// Writes an event; the flusher commits it within `outbox.flush_ms`.
    fn write(&self, body: Body) {
        match self.outbox.push(body) {
            // The outbox logs its disk failure itself, rate-limited.
            Ok(_) | Err(crate::outbox::OutboxError::Unavailable { .. }) => {}
            Err(err) => tracing::error!("event not stored: {err}"),
        }
    }

    /// A `status` event.
    pub fn status(&self, state: &str, detail: impl Into<String>) {
        self.write(Body::Status(Status {
            state: state.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            detail: detail.into(),
        }));
    }

    /// Commits what is left, lets a connected broker take it for a short
    /// grace period, then stops the publisher and the flusher (which
    /// commits the last deletions).
    pub fn finish(self) {
        if let Err(err) = self.outbox.commit() {
            tracing::error!("{err}");
        }
        if let Some(publisher) = self.publisher {
            publisher.stop(DRAIN_GRACE);
        }
        self.flusher.stop();
        tracing::info!(held = self.outbox.depth(), "outbox closed");
    }
}

impl events::Sink for Reporter {
    fn event(&mut self, mut body: Body) {
        if let Body::Health(health) = &mut body {
            health.outbox_depth = self.outbox.depth();
            health.broker_reconnects = self
                .publisher
                .as_ref()
                .map_or(0, |p| p.stats.reconnects.load(Ordering::Relaxed));
        }
        self.write(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Health, Sink};

    fn origin() -> Origin {
        Origin {
            site: "lyon".into(),
            device: "pole-7".into(),
        }
    }

    fn health() -> Health {
        Health {
            fps: 10.0,
            frames: 100,
            dropped_frames: 0,
            reconnects: 0,
            outage_ms: 0,
            outbox_depth: 999,
            broker_reconnects: 999,
            inferences: 10,
            skipped_by_motion: 90,
            predicted: 0,
            inference_fps: 0.0,
            queue_dropped: 0,
            inference_ms: 12.5,
            tracks: 1,
        }
    }

    #[test]
    fn health_events_carry_the_figures_the_reporter_owns_and_everything_is_committed() {
        let dir = std::env::temp_dir().join(format!(
            "luciole-reporter-unit-{}-health",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = OutboxSettings {
            path: dir.join("outbox"),
            flush_every: Duration::from_secs(3600),
            ..OutboxSettings::default()
        };
        let mut reporter = Reporter::start(&settings, None, origin(), None, None).unwrap();
        reporter.status("started", "test");
        reporter.event(Body::Health(health()));
        reporter.finish();
        let outbox = Outbox::open(&settings, origin()).unwrap();
        let events: Vec<_> = outbox.all().map(Result::unwrap).collect();
        assert_eq!(events.len(), 2, "{events:?}");
        let Body::Health(h) = &events[1].body else {
            panic!("{events:?}")
        };
        assert_eq!(
            (h.outbox_depth, h.broker_reconnects),
            (1, 0),
            "held before this event; no publisher"
        );
        assert_eq!((h.frames, h.inferences), (100, 10), "the rest is kept");
    }
}
