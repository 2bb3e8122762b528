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
use crate::events::{Body, Dropped, Origin};
use crate::outbox::Outbox;

use super::session::{packet_bytes, Connection, Protocol, Session, Step};
use super::state::{Flight, STRIKES};
use super::{Inbound, Inbox};
use super::{MqttSettings, PublishError, PublishStats};

/// How long a stopping publisher waits for the connection thread to end
/// once it asked for a disconnect.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// What a connection carries besides the outbox's events.
pub(super) struct Beside {
    /// Where commands received go, with `[remote]`.
    pub inbox: Option<Inbox>,
    /// The data manifest, published retained on every connection.
    pub manifest: Option<Vec<u8>>,
}

/// Starts the connection thread and the publishing thread. The publishing
/// thread returns whether the connection thread ended before it did.
pub(super) fn spawn(
    settings: &MqttSettings,
    origin: Origin,
    outbox: Arc<Outbox>,
    (client, connection): (Session, Connection),
    stats: &Arc<PublishStats>,
    stop: Receiver<Duration>,
    Beside { inbox, manifest }: Beside,
) -> Result<(JoinHandle<bool>, JoinHandle<()>), PublishError> {
    let (steps_tx, steps) = crossbeam_channel::unbounded();
    // One go-ahead per failure, sent once: never blocks.
    let (go_ahead, resume) = crossbeam_channel::bounded(1);
    let commits = outbox.on_commit();
    let driver = {
        let settings = settings.clone();
        let replies = client.clone();
        std::thread::Builder::new()
            .name("mqtt-conn".into())
            .spawn(move || {
                drive(
                    connection,
                    &settings,
                    &steps_tx,
                    &resume,
                    inbox.map(|inbox| (inbox, replies)),
                )
            })
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
        sent_at: std::collections::HashMap::new(),
        stable: settings.keep_alive,
        up_since: None,
        ever_connected: false,
        protocol: settings.protocol,
        max_packet: settings.max_packet_bytes,
        broker_max_packet: None,
        refusal: false,
        go_ahead: Some(go_ahead),
        stopping: false,
        manifest,
    };
    let publisher = std::thread::Builder::new()
        .name("mqtt-pub".into())
        .spawn(move || publishing.run(&steps, &commits, &stop))
        .map_err(|e| PublishError::Thread("mqtt-pub", e))?;
    Ok((publisher, driver))
}

/// The connection thread: turns rumqttc's event loop into [`Step`]s. After
/// a failure it waits for the publishing thread's go-ahead, then empties
/// rumqttc's queues (and reads the credentials again) before the next
/// attempt: by then the publishing thread has seen the failure and queues
/// nothing until the next connection.
/// With an inbox, it subscribes to the inbox's filters on each connection
/// (sessions are clean) and hands every message received to the inbox.
/// Ends after a clean disconnect, or when the publishing thread is gone.
fn drive(
    mut connection: Connection,
    settings: &MqttSettings,
    steps: &Sender<Step>,
    resume: &Receiver<()>,
    inbox: Option<(Inbox, Session)>,
) {
    if let Some((inbox, session)) = &inbox {
        *crate::sync::lock(&inbox.session) = Some(session.clone());
        inbox.subscribed.store(false, Ordering::SeqCst);
    }
    while let Some(batch) = connection.next(settings) {
        let failed = batch.iter().any(|s| matches!(s, Step::Failed(_)));
        let closed = batch.iter().any(|s| matches!(s, Step::Closed));
        for step in batch {
            let step = match (step, &inbox) {
                (Step::Received(message), Some((inbox, session))) => {
                    let inbound = Inbound {
                        message,
                        replies: session.clone(),
                    };
                    if inbox.sender.try_send(inbound).is_err() {
                        tracing::warn!("commands arrive faster than they are handled: one dropped");
                    }
                    continue;
                }
                (Step::Received(_), None) => continue,
                (Step::Subscribed(granted), Some((inbox, _))) => {
                    if !granted {
                        tracing::error!(
                            filters = ?inbox.filters,
                            "the broker refused the command subscriptions (its ACL?): no remote command can reach this pole"
                        );
                    }
                    inbox.subscribed.store(granted, Ordering::SeqCst);
                    continue;
                }
                (step @ Step::Failed(_), Some((inbox, _))) => {
                    inbox.subscribed.store(false, Ordering::SeqCst);
                    step
                }
                (step @ Step::Connected { .. }, Some((inbox, session))) => {
                    if !session.subscribe(&inbox.filters) {
                        tracing::error!("cannot queue the command subscriptions");
                    }
                    step
                }
                (step, _) => step,
            };
            if steps.send(step).is_err() {
                return;
            }
        }
        if closed {
            return;
        }
        if failed {
            if resume.recv().is_err() {
                return;
            }
            connection.prepare_retry(settings);
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
    /// When each packet id in flight was sent (publish latency).
    sent_at: std::collections::HashMap<u16, Instant>,
    /// How long a connection must stay up to count as a success for the
    /// reconnection delay (one keep-alive period).
    stable: Duration,
    /// When the current connection was accepted.
    up_since: Option<Instant>,
    /// A connection was accepted before: the next one is a reconnection.
    ever_connected: bool,
    protocol: Protocol,
    /// `mqtt.max_packet_bytes`.
    max_packet: u32,
    /// The largest packet the broker accepts, when it said (MQTT 5).
    broker_max_packet: Option<u32>,
    /// The failure that follows ends a sound connection (a refusal).
    refusal: bool,
    /// Lets the connection thread reconnect; dropped at stop, which ends a
    /// connection thread waiting for it.
    go_ahead: Option<Sender<()>>,
    /// A failure while stopping is not retried.
    stopping: bool,
    /// The data manifest, published retained on every connection.
    manifest: Option<Vec<u8>>,
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
            Step::Connected { broker_max_packet } => {
                // The reconnection delay starts again only once this
                // connection has stayed up (see `Step::Failed`).
                self.up_since = Some(Instant::now());
                self.broker_max_packet = broker_max_packet;
                if self.ever_connected {
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                self.ever_connected = true;
                self.flight
                    .connected(self.outbox.oldest_id(), self.outbox.committed());
                let topic = self.origin.presence_topic(&self.prefix);
                if self
                    .client
                    .publish(topic, true, self.origin.presence("online"))
                {
                    self.flight.offered_presence();
                }
                if let Some(manifest) = &self.manifest {
                    let topic = self.origin.manifest_topic(&self.prefix);
                    // Acknowledged like the presence message: it deletes nothing.
                    if self.client.publish(topic, true, manifest.clone()) {
                        self.flight.offered_presence();
                    }
                }
                self.stats.connected.store(true, Ordering::SeqCst);
                tracing::info!(
                    broker = %self.broker,
                    backlog = self.outbox.depth(),
                    "connected to the broker"
                );
            }
            Step::Sent(pkid) => {
                self.flight.sent(pkid);
                self.sent_at.insert(pkid, Instant::now());
            }
            Step::Acked(pkid) => {
                if let Some(sent) = self.sent_at.remove(&pkid) {
                    self.stats.latency.observe(sent.elapsed());
                }
                if let Some(id) = self.flight.acked(pkid) {
                    match self.outbox.ack(id) {
                        Ok(()) => {
                            self.stats.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) => tracing::error!("{err}"),
                    }
                }
            }
            Step::Refused { still_held, reason } => {
                // Sending the event again would deliver it after the events
                // that followed it, and a refusal for its topic or content
                // (an ACL, the usual case) would repeat forever. The
                // connection rumqttc ends with it was sound: the next one
                // starts at the shortest delay.
                self.refusal = true;
                match self.flight.refused(&still_held).as_slice() {
                    [id] => {
                        let id = *id;
                        self.set_aside(
                            id,
                            "refused",
                            &format!("broker {} refused event {id} ({reason})", self.broker),
                        );
                    }
                    [] => tracing::warn!(reason, "the broker refused a message that was no event"),
                    ids => tracing::error!(
                        ?ids,
                        reason,
                        "the broker refused one of these events; they are sent again"
                    ),
                }
            }
            Step::Failed(why) => {
                // Packet ids start again on the next connection.
                self.sent_at.clear();
                let mut stayed_up = self.up_since.take().map(|t| t.elapsed());
                if std::mem::take(&mut self.refusal) {
                    stayed_up = Some(self.stable);
                }
                let short_lived = stayed_up.is_none_or(|up| up < self.stable);
                let culprit = self.flight.lost(short_lived);
                self.stats.connected.store(false, Ordering::SeqCst);
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                if let Some(id) = culprit {
                    self.set_aside(
                        id,
                        "refused",
                        &format!(
                            "broker {} closed the connection each time event {id} was sent, {STRIKES} times in a row (a packet larger than the broker's limit? see its max_packet_size)",
                            self.broker
                        ),
                    );
                }
                if self.stopping {
                    tracing::warn!("{why}");
                    return;
                }
                let delay = self.retry.next_delay_after(stayed_up, self.stable);
                tracing::warn!(retry_in_ms = delay.as_millis() as u64, "{why}");
                self.retry_at = Some(Instant::now() + delay);
            }
            Step::IncomingTooLarge => {
                // Not the event in flight's fault: no strike against it.
                tracing::warn!(
                    max = self.max_packet,
                    "the broker sent a message larger than mqtt.max_packet_bytes (on a command topic?); reconnecting"
                );
                self.refusal = true;
            }
            Step::Closed | Step::Other | Step::Received(_) | Step::Subscribed(_) => {}
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
            let limit = self
                .max_packet
                .min(self.broker_max_packet.unwrap_or(u32::MAX));
            for (id, kind, json) in batch {
                let topic = self.origin.event_topic(&self.prefix, &kind);
                let bytes = packet_bytes(self.protocol, &topic, json.len());
                if bytes > limit as usize {
                    // Never sendable on this broker: rumqttc would fail the
                    // connection over it, again after every reconnection.
                    self.flight.skipped(id);
                    self.set_aside(
                        id,
                        "too_large",
                        &format!(
                            "event {id} ({kind}) makes a {bytes}-byte packet, over the limit of {limit} bytes (mqtt.max_packet_bytes = {}{})",
                            self.max_packet,
                            self.broker_max_packet
                                .map_or_else(String::new, |b| format!(", the broker's maximum {b}"))
                        ),
                    );
                    continue;
                }
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

    /// Gives up on event `id`, which the broker will not take: deletes it
    /// from the outbox and writes a `dropped` event (`reason`) naming it, so
    /// the city sees the gap. A `dropped` event set aside is only logged,
    /// so that a broker refusing the `dropped` topic cannot start a chain.
    fn set_aside(&mut self, id: u64, reason: &str, why: &str) {
        let event = match self.outbox.get(id) {
            Ok(event) => event,
            Err(err) => {
                tracing::error!("{err}");
                None
            }
        };
        if let Err(err) = self.outbox.ack(id) {
            tracing::error!("{err}");
            return;
        }
        self.stats.set_aside.fetch_add(1, Ordering::Relaxed);
        let Some(event) = event else {
            tracing::error!("{why}: set aside");
            return;
        };
        if let Body::Dropped(_) = event.body {
            tracing::error!("{why}: set aside (a dropped event: not reported again)");
            return;
        }
        let report = Body::Dropped(Dropped {
            reason: reason.into(),
            count: 1,
            first_id: id,
            last_id: id,
            from: event.time.clone(),
            to: event.time,
        });
        match self.outbox.push(report) {
            Ok(report) => tracing::error!(
                kind = event.body.kind(),
                "{why}: set aside, reported by dropped event {report}"
            ),
            Err(err) => tracing::error!("{why}: set aside; the report was not stored: {err}"),
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
