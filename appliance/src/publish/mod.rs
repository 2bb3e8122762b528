//! Publishing the outbox to the city's MQTT broker (rumqttc, MQTT 3.1.1 or
//! 5, see [`session`]).
//!
//! Two threads share one connection:
//! - the **connection thread** drives rumqttc's event loop: it connects,
//!   publishes the retained `online` presence (the last will says
//!   `offline`), matches each PUBACK to the event it acknowledges and
//!   deletes that event from the outbox, and on any failure waits an
//!   exponential, jittered delay before reconnecting;
//! - the **feeder thread** offers committed events in id order, never more
//!   than `mqtt.inflight` unacknowledged at once. After each (re)connection
//!   it starts again from the oldest event still held, so the backlog is
//!   replayed in order and new events simply queue behind it.
//!
//! A PUBACK names a packet id, not an event: the threads match them by
//! the order rumqttc sends publishes on its single queue (each offered
//! event waits in `Link::unnumbered` until its packet id is known). After a
//! failure, rumqttc's own resend queue is emptied so that only the feeder
//! decides what is sent, and in which order.
//!
//! Events are published at QoS 1, not retained. An event whose PUBACK was
//! lost is sent again after reconnection, with the same id: consumers see
//! every event at least once and de-duplicate on `id`.
//!
//! TLS verifies the broker's certificate against `mqtt.ca_file` (and its
//! host name or IP address); plaintext needs `mqtt.tls = false`.

pub mod reporter;
pub mod session;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rumqttc::{ConnectReturnCode, ConnectionError};

use crate::events::Origin;
use crate::outbox::Outbox;
use crate::shutdown::Shutdown;
use session::{Connection, Protocol, Session, Step};

/// What can stop the publisher from starting.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{key} = {path}: cannot read: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key} = {path}: {reason}")]
    Material {
        key: &'static str,
        path: PathBuf,
        reason: &'static str,
    },
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, #[source] std::io::Error),
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
}

/// TLS files.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    /// PEM certificates of the CA(s) that signed the broker's certificate.
    pub ca_file: PathBuf,
    /// PEM client certificate chain and its private key, for brokers that
    /// authenticate clients by certificate.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// A validated `[mqtt]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    /// `None` only when the configuration says `tls = false`.
    pub tls: Option<TlsSettings>,
    pub username: Option<String>,
    /// The password is read from this file (first line) at start.
    pub password_file: Option<PathBuf>,
    pub client_id: String,
    pub topic_prefix: String,
    pub keep_alive: Duration,
    /// Delays between connection attempts.
    pub reconnect: crate::backoff::Backoff,
    /// Most events published and not yet acknowledged.
    pub inflight: u16,
}

impl MqttSettings {
    /// A broker at `host` for the pole `origin`, over TLS when `tls` is
    /// given, with every other setting at its default.
    pub fn new(host: String, origin: &Origin, tls: Option<TlsSettings>) -> Self {
        Self {
            protocol: Protocol::V311,
            port: if tls.is_some() { 8883 } else { 1883 },
            host,
            tls,
            username: None,
            password_file: None,
            client_id: format!("luciole-{}-{}", origin.site, origin.device),
            topic_prefix: "luciole".into(),
            keep_alive: Duration::from_secs(30),
            reconnect: crate::backoff::Backoff {
                min: Duration::from_millis(500),
                max: Duration::from_secs(60),
            },
            inflight: 32,
        }
    }
}

/// Counters the daemon reports in health events.
#[derive(Debug, Default)]
pub struct PublishStats {
    pub connected: AtomicBool,
    /// Connections lost or refused since start.
    pub reconnects: AtomicU64,
    /// Events acknowledged by the broker since start.
    pub acked: AtomicU64,
}

/// The running publisher; stop it by raising the shutdown flag, then
/// [`Publisher::join`].
pub struct Publisher {
    threads: Vec<JoinHandle<()>>,
    pub stats: Arc<PublishStats>,
}

/// What the two threads share, under one lock so that offering an event
/// and forgetting in-flight state after a failure cannot interleave.
#[derive(Debug, Default)]
struct Link {
    connected: bool,
    /// Published, waiting for rumqttc to give them a packet id (`None` is
    /// the presence message).
    unnumbered: VecDeque<Option<u64>>,
    /// Sent, waiting for PUBACK.
    by_pkid: HashMap<u16, Option<u64>>,
    /// Highest id offered on this connection.
    cursor: u64,
}

impl Link {
    fn outstanding(&self) -> usize {
        self.unnumbered.len() + self.by_pkid.len()
    }
}

fn read(key: &'static str, path: &PathBuf) -> Result<Vec<u8>, PublishError> {
    std::fs::read(path).map_err(|source| PublishError::Read {
        key,
        path: path.clone(),
        source,
    })
}

fn pem(key: &'static str, path: &PathBuf, marker: &str) -> Result<Vec<u8>, PublishError> {
    let bytes = read(key, path)?;
    if !String::from_utf8_lossy(&bytes).contains(marker) {
        return Err(PublishError::Material {
            key,
            path: path.clone(),
            reason: "not a PEM file of the expected kind",
        });
    }
    Ok(bytes)
}

/// A connection failure, whatever the MQTT version that reported it.
pub(crate) enum Failure<'a> {
    /// Refused for its credentials; the broker's return code.
    Credentials(&'a dyn std::fmt::Debug),
    /// Refused for another reason.
    Refused(&'a dyn std::fmt::Debug),
    Tls(&'a dyn std::fmt::Display),
    Io(&'a dyn std::fmt::Display),
    Timeout,
    Other(&'a dyn std::fmt::Display),
}

/// Says what a connection failure means for the person reading the log.
pub(crate) fn describe(failure: Failure<'_>, settings: &MqttSettings) -> String {
    let broker = format!("{}:{}", settings.host, settings.port);
    match failure {
        Failure::Credentials(code) => format!(
            "broker {broker} refused the credentials ({code:?}): check mqtt.username and mqtt.password_file"
        ),
        Failure::Refused(code) => format!("broker {broker} refused the connection: {code:?}"),
        Failure::Tls(e) => format!(
            "TLS with broker {broker} failed: {e} (mqtt.ca_file must hold the CA that signed the broker's certificate)"
        ),
        Failure::Io(e) => format!("broker {broker} unreachable: {e}"),
        Failure::Timeout => format!("broker {broker}: connection timed out"),
        Failure::Other(e) => format!("broker {broker}: connection lost: {e}"),
    }
}

/// [`describe`] for MQTT 3.1.1 connection errors.
pub fn explain(err: &ConnectionError, settings: &MqttSettings) -> String {
    let failure = match err {
        ConnectionError::ConnectionRefused(
            code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
        ) => Failure::Credentials(code),
        ConnectionError::ConnectionRefused(code) => Failure::Refused(code),
        ConnectionError::Tls(e) => Failure::Tls(e),
        ConnectionError::Io(e) => Failure::Io(e),
        ConnectionError::NetworkTimeout => Failure::Timeout,
        other => Failure::Other(other),
    };
    describe(failure, settings)
}

impl Publisher {
    /// Starts publishing `outbox` with `settings` until `shutdown`.
    pub fn start(
        settings: &MqttSettings,
        origin: Origin,
        outbox: Arc<Outbox>,
        shutdown: Shutdown,
    ) -> Result<Publisher, PublishError> {
        let (client, mut connection) = session::open(settings, &origin)?;
        let window = usize::from(settings.inflight);
        let link = Arc::new(Mutex::new(Link::default()));
        let stats = Arc::new(PublishStats::default());

        let feeder = {
            let (link, outbox, client, shutdown) = (
                Arc::clone(&link),
                Arc::clone(&outbox),
                client.clone(),
                shutdown.clone(),
            );
            let (prefix, origin) = (settings.topic_prefix.clone(), origin.clone());
            std::thread::Builder::new()
                .name("mqtt-feed".into())
                .spawn(move || feed(&link, &outbox, &client, &prefix, &origin, window, &shutdown))
                .map_err(|e| PublishError::Thread("mqtt-feed", e))?
        };
        let driver = {
            let (stats, settings) = (Arc::clone(&stats), settings.clone());
            std::thread::Builder::new()
                .name("mqtt-conn".into())
                .spawn(move || {
                    drive(
                        &mut connection,
                        &client,
                        &link,
                        &outbox,
                        &settings,
                        &origin,
                        &stats,
                        &shutdown,
                    )
                })
                .map_err(|e| PublishError::Thread("mqtt-conn", e))?
        };
        Ok(Publisher {
            threads: vec![feeder, driver],
            stats,
        })
    }

    /// Waits for both threads (after the shutdown flag was raised).
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// How long a stopping publisher waits for outstanding acknowledgements.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How often the feeder looks for newly committed events.
const FEED_EVERY: Duration = Duration::from_millis(5);

fn feed(
    link: &Mutex<Link>,
    outbox: &Outbox,
    client: &Session,
    prefix: &str,
    origin: &Origin,
    window: usize,
    shutdown: &Shutdown,
) {
    while shutdown.sleep(FEED_EVERY) {
        let mut link = link.lock().unwrap();
        if !link.connected || link.outstanding() >= window {
            continue;
        }
        let batch = match outbox.committed_after(link.cursor, window - link.outstanding()) {
            Ok(batch) => batch,
            Err(err) => {
                tracing::error!("{err}");
                continue;
            }
        };
        for (id, kind, json) in batch {
            if !client.publish(origin.event_topic(prefix, &kind), false, json) {
                break;
            }
            link.unnumbered.push_back(Some(id));
            link.cursor = id;
        }
    }
    // Stopping: let what is in flight be acknowledged, then say goodbye
    // (a clean disconnect does not trigger the last will).
    let deadline = std::time::Instant::now() + STOP_GRACE;
    while std::time::Instant::now() < deadline {
        let link = link.lock().unwrap();
        if !link.connected || link.outstanding() == 0 {
            break;
        }
        drop(link);
        std::thread::sleep(FEED_EVERY);
    }
    let link = link.lock().unwrap();
    if link.connected {
        client.publish(
            origin.presence_topic(prefix),
            true,
            origin.presence("offline"),
        );
    }
    client.disconnect();
}

#[allow(clippy::too_many_arguments)]
fn drive(
    connection: &mut Connection,
    client: &Session,
    link: &Mutex<Link>,
    outbox: &Outbox,
    settings: &MqttSettings,
    origin: &Origin,
    stats: &PublishStats,
    shutdown: &Shutdown,
) {
    let mut backoff = crate::backoff::Retry::new(settings.reconnect);
    let presence = origin.presence_topic(&settings.topic_prefix);
    // Ends when every session handle is gone, or on a stop.
    while let Some(step) = connection.next(settings) {
        match step {
            Step::Connected => {
                backoff.reset();
                let mut link = link.lock().unwrap();
                *link = Link {
                    connected: true,
                    cursor: outbox.oldest_id().map_or(outbox.committed(), |id| id - 1),
                    ..Link::default()
                };
                if client.publish(presence.clone(), true, origin.presence("online")) {
                    link.unnumbered.push_back(None);
                }
                stats.connected.store(true, Ordering::SeqCst);
                tracing::info!(
                    broker = %format!("{}:{}", settings.host, settings.port),
                    backlog = outbox.depth(),
                    "connected to the broker"
                );
            }
            Step::Sent(pkid) => {
                let mut link = link.lock().unwrap();
                if let Some(id) = link.unnumbered.pop_front() {
                    link.by_pkid.insert(pkid, id);
                }
            }
            Step::Acked(pkid) => {
                let acked = link.lock().unwrap().by_pkid.remove(&pkid);
                if let Some(Some(id)) = acked {
                    match outbox.ack(id) {
                        Ok(()) => {
                            stats.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) => tracing::error!("{err}"),
                    }
                }
            }
            Step::Closed => break,
            Step::Other => {}
            Step::Failed(why) => {
                {
                    // Forget what this connection had in flight: the feeder
                    // offers it again, in order, after reconnecting.
                    let mut link = link.lock().unwrap();
                    link.connected = false;
                    connection.forget_in_flight();
                    link.unnumbered.clear();
                    link.by_pkid.clear();
                }
                stats.connected.store(false, Ordering::SeqCst);
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                if shutdown.requested() {
                    break;
                }
                let delay = backoff.next_delay();
                tracing::warn!(retry_in_ms = delay.as_millis() as u64, "{why}");
                if !shutdown.sleep(delay) {
                    break;
                }
            }
        }
    }
    stats.connected.store(false, Ordering::SeqCst);
}
