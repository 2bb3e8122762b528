//! The two threads of a [`super::Publisher`] around its pure
//! [`Flight`]: the connection thread, which only drives rumqttc and
//! forwards what happens, and the publishing thread, which owns the
//! bookkeeping and the client and sleeps until something happens. See
//! [`super`] for the design and the guarantees.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{at, never, select, Receiver, Sender};

use crate::backoff::Retry;
use crate::events::Origin;
use crate::outbox::Outbox;

use super::session::{Connection, Session, Step};
use super::state::Flight;
use super::{MqttSettings, PublishError, PublishStats};

/// How long a stopping publisher waits for the connection thread to end
/// once it asked for a disconnect.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Starts the connection thread and the publishing thread. The publishing
/// thread returns whether the connection thread ended before it did.
pub(super) fn spawn(
    settings: &MqttSettings,
    origin: Origin,
    outbox: Arc<Outbox>,
    client: Session,
    connection: Connection,
    stats: &Arc<PublishStats>,
    stop: Receiver<Duration>,
) -> Result<(JoinHandle<bool>, JoinHandle<()>), PublishError> {
    let (steps_tx, steps) = crossbeam_channel::unbounded();
    // One go-ahead per failure, sent once: never blocks.
    let (go_ahead, resume) = crossbeam_channel::bounded(1);
    let commits = outbox.on_commit();
    let driver = {
        let settings = settings.clone();
        std::thread::Builder::new()
            .name("mqtt-conn".into())
            .spawn(move || drive(connection, &settings, &steps_tx, &resume))
            .map_err(|e| PublishError::Thread("mqtt-conn", e))?
    };
    let publishing = Publishing {
        flight: Flight::new(settings.inflight),
        client,
        outbox,
        prefix: settings.topic_prefix.clone(),
        broker: format!("{}:{}", settings.host, settings.port),
        origin,
        stats: Arc::clone(stats),
        retry: Retry::new(settings.reconnect),
        retry_at: None,
        go_ahead: Some(go_ahead),
        stopping: false,
    };
    let publisher = std::thread::Builder::new()
        .name("mqtt-pub".into())
        .spawn(move || publishing.run(&steps, &commits, &stop))
        .map_err(|e| PublishError::Thread("mqtt-pub", e))?;
    Ok((publisher, driver))
}

/// The connection thread: turns rumqttc's event loop into [`Step`]s. After
/// a failure it waits for the publishing thread's go-ahead, then empties
/// rumqttc's queues before the next attempt: by then the publishing thread
/// has seen the failure and queues nothing until the next connection.
/// Ends after a clean disconnect, or when the publishing thread is gone.
fn drive(
    mut connection: Connection,
    settings: &MqttSettings,
    steps: &Sender<Step>,
    resume: &Receiver<()>,
) {
    while let Some(step) = connection.next(settings) {
        let failed = matches!(step, Step::Failed(_));
        let closed = matches!(step, Step::Closed);
        if steps.send(step).is_err() || closed {
            return;
        }
        if failed {
            if resume.recv().is_err() {
                return;
            }
            connection.forget_in_flight();
        }
    }
}

/// The publishing thread's state: the pure bookkeeping and the I/O
/// handles it drives.
struct Publishing {
    flight: Flight,
    client: Session,
    outbox: Arc<Outbox>,
    origin: Origin,
    prefix: String,
    /// `host:port`, for the log.
    broker: String,
    stats: Arc<PublishStats>,
    retry: Retry,
    /// When the connection thread may try again, after a failure.
    retry_at: Option<Instant>,
    /// Lets the connection thread reconnect; dropped at stop, which ends a
    /// connection thread waiting for it.
    go_ahead: Option<Sender<()>>,
    /// A failure while stopping is not retried.
    stopping: bool,
}

impl Publishing {
    /// Runs until a stop, drains, says goodbye, and waits for the
    /// connection thread; returns whether it ended.
    fn run(
        mut self,
        steps: &Receiver<Step>,
        commits: &Receiver<()>,
        stop: &Receiver<Duration>,
    ) -> bool {
        // Publishing: every wake-up is a step, a commit, the end of a
        // reconnection delay or the stop.
        let drain = loop {
            let retry = self.retry_at.map_or_else(never, at);
            select! {
                recv(steps) -> step => match step {
                    Ok(step) => self.on_step(step),
                    Err(_) => return self.ended(),
                },
                recv(commits) -> _ => {}
                recv(retry) -> _ => self.reconnect(),
                recv(stop) -> drain => break drain.unwrap_or_default(),
            }
            self.offer();
        };
        // Draining: while connected, the broker may take what is committed
        // until the grace period ends.
        self.stopping = true;
        let deadline = at(Instant::now() + drain);
        while self.flight.is_connected() && !self.flight.settled(self.outbox.committed()) {
            select! {
                recv(steps) -> step => match step {
                    Ok(step) => self.on_step(step),
                    Err(_) => return self.ended(),
                },
                recv(commits) -> _ => {}
                recv(deadline) -> _ => break,
            }
            self.offer();
        }
        self.goodbye();
        // Closing: acknowledgements still delete events until the
        // connection thread ends.
        let deadline = at(Instant::now() + CLOSE_GRACE);
        loop {
            select! {
                recv(steps) -> step => match step {
                    Ok(step @ (Step::Sent(_) | Step::Acked(_))) => self.on_step(step),
                    Ok(_) => {}
                    Err(_) => return self.ended(),
                },
                recv(deadline) -> _ => {
                    self.stats.connected.store(false, Ordering::SeqCst);
                    return false;
                }
            }
        }
    }

    fn on_step(&mut self, step: Step) {
        match step {
            Step::Connected => {
                self.retry.reset();
                self.flight
                    .connected(self.outbox.oldest_id(), self.outbox.committed());
                let topic = self.origin.presence_topic(&self.prefix);
                if self
                    .client
                    .publish(topic, true, self.origin.presence("online"))
                {
                    self.flight.offered_presence();
                }
                self.stats.connected.store(true, Ordering::SeqCst);
                tracing::info!(
                    broker = %self.broker,
                    backlog = self.outbox.depth(),
                    "connected to the broker"
                );
            }
            Step::Sent(pkid) => self.flight.sent(pkid),
            Step::Acked(pkid) => {
                if let Some(id) = self.flight.acked(pkid) {
                    match self.outbox.ack(id) {
                        Ok(()) => {
                            self.stats.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) => tracing::error!("{err}"),
                    }
                }
            }
            Step::Failed(why) => {
                self.flight.failed();
                self.stats.connected.store(false, Ordering::SeqCst);
                self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                if self.stopping {
                    tracing::warn!("{why}");
                    return;
                }
                let delay = self.retry.next_delay();
                tracing::warn!(retry_in_ms = delay.as_millis() as u64, "{why}");
                self.retry_at = Some(Instant::now() + delay);
            }
            Step::Closed | Step::Other => {}
        }
    }

    /// The reconnection delay is over: lets the connection thread try.
    fn reconnect(&mut self) {
        self.retry_at = None;
        if let Some(go_ahead) = &self.go_ahead {
            let _ = go_ahead.try_send(());
        }
    }

    /// Queues every committed event the window has room for, oldest first.
    fn offer(&mut self) {
        let committed = self.outbox.committed();
        while let Some(offer) = self.flight.next_offer(committed) {
            let batch = match self.outbox.committed_after(offer.after, offer.limit) {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::error!("{err}");
                    return;
                }
            };
            let complete = batch.len() < offer.limit;
            for (id, kind, json) in batch {
                let topic = self.origin.event_topic(&self.prefix, &kind);
                // rumqttc's queue has room for the whole window; should it
                // refuse, the next wake-up offers the event again.
                if !self.client.publish(topic, false, json) {
                    tracing::warn!(id, "the MQTT queue refused an event; offering it later");
                    return;
                }
                let recorded = self.flight.offered(id);
                debug_assert!(recorded, "event {id} was queued outside the window");
            }
            if complete {
                self.flight.reached(committed);
            }
        }
    }

    /// Publishes `offline` (a clean disconnect does not trigger the last
    /// will), asks for the disconnect, and ends a connection thread waiting
    /// to reconnect.
    fn goodbye(&mut self) {
        if self.flight.is_connected() {
            let topic = self.origin.presence_topic(&self.prefix);
            if self
                .client
                .publish(topic, true, self.origin.presence("offline"))
            {
                self.flight.offered_presence();
            }
        }
        self.client.disconnect();
        self.go_ahead = None;
        self.retry_at = None;
    }

    /// The connection thread is gone.
    fn ended(&self) -> bool {
        self.stats.connected.store(false, Ordering::SeqCst);
        true
    }
}
