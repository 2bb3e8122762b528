//! Publishing the outbox to the city's MQTT broker (rumqttc, MQTT 3.1.1 or
//! 5, see [`session`]): every committed event is published at QoS 1 and
//! deleted from the outbox once the broker acknowledged it.
//!
//! # Design
//!
//! The bookkeeping is a pure type, [`state::Flight`]: what is in flight,
//! which packet id each publish got, what to offer next. Two threads drive
//! it ([`Publisher::start`]):
//! - the **connection thread** only turns rumqttc's `Connection::recv()`
//!   into [`session::Step`]s (connected, a publish got its packet id, a
//!   PUBACK, a failure, closed) and forwards them;
//! - the **publishing thread** owns the `Flight` and the rumqttc client. It
//!   sleeps until something happens: a step from the connection thread, a
//!   signal from the outbox that a commit made new events publishable
//!   ([`Outbox::on_commit`]), the end of a reconnection delay, or a stop.
//!   After each, it offers what the `Flight` allows. Nothing polls.
//!
//! The guarantees:
//! - **Write before offer.** Only events the outbox has committed (made
//!   durable) are offered, so an id a consumer saw is never reused.
//! - **Ordered replay.** On each connection offers start again from the
//!   oldest event still held, in id order; new events queue behind it.
//! - **Bounded window.** Never more than `mqtt.inflight` publishes
//!   unacknowledged (the presence message included).
//! - **Delete on PUBACK.** An event leaves the outbox only when the broker
//!   acknowledged the packet that carried it. An event whose PUBACK was
//!   lost is sent again after reconnection, with the same id: consumers see
//!   every event at least once and de-duplicate on `id`.
//! - **Nothing stalls on one event.** An event the broker will not take is
//!   set aside (deleted) and reported by a `dropped` event naming its id:
//!   refused in an MQTT 5 PUBACK (reason `refused`), larger than
//!   `mqtt.max_packet_bytes` or the broker's announced maximum (reason
//!   `too_large`, found before sending), or alone in flight each time an
//!   MQTT 3.1.1 broker closed the connection, [`state::STRIKES`] times in
//!   a row (reason `refused`). Sending it again would deliver it after the
//!   events that followed it, or fail forever.
//! - **Backoff that holds.** The reconnection delay starts again from
//!   `mqtt.reconnect_min_ms` only after a connection stayed up for a
//!   keep-alive period: a broker that drops every connection at once is
//!   retried less and less often, not every half second.
//! - **Presence.** On connection the pole publishes a retained `online`;
//!   the broker's last will says `offline`, and a clean stop publishes
//!   `offline` itself before disconnecting.
//! - **No stale publish after a failure.** After a failure the connection
//!   thread waits for the publishing thread's go-ahead before reconnecting,
//!   and only then empties rumqttc's queues (`forget_in_flight`). The
//!   go-ahead comes after the publishing thread has seen the failure (and
//!   waited the jittered [`crate::backoff`] delay), and it publishes nothing
//!   between seeing a failure and the next connection: so nothing queued
//!   for the lost connection can go out on the next one ahead of the replay.
//! - **Clean stop.** [`Publisher::stop`] lets the broker acknowledge what
//!   is committed for a grace period while connected, publishes `offline`,
//!   disconnects and waits for the connection thread to end, each step
//!   waiting on events with a deadline.
//!
//! TLS verifies the broker's certificate against `mqtt.ca_file` (and its
//! host name or IP address); plaintext needs `mqtt.tls = false`. The
//! password, CA and client certificate files are read again before every
//! reconnection, so a corrected file takes effect without a restart.

mod link;
pub mod reporter;
pub mod session;
pub mod state;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use rumqttc::{ConnectReturnCode, ConnectionError};

use crate::backoff::Backoff;
use crate::events::Origin;
use crate::outbox::Outbox;
use session::Protocol;

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

/// How to reach the broker and publish there (the `[mqtt]` section,
/// validated). [`MqttSettings::new`] gives every field its default.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    pub protocol: Protocol,
    /// Broker host name or IP address.
    pub host: String,
    pub port: u16,
    /// `None` for a plaintext connection (`tls = false`).
    pub tls: Option<TlsSettings>,
    pub username: Option<String>,
    /// The password is read from this file (first line) at start and again
    /// before each reconnection.
    pub password_file: Option<PathBuf>,
    pub client_id: String,
    /// First topic level: topics are `<prefix>/<site>/<device>/...`.
    pub topic_prefix: String,
    /// Time between keep-alive pings when idle.
    pub keep_alive: Duration,
    /// Delays between reconnection attempts. They start again from the
    /// shortest only after a connection stayed up for `keep_alive`: a
    /// broker that drops each connection at once is not hammered.
    pub reconnect: Backoff,
    /// Most publishes sent and not yet acknowledged.
    pub inflight: u16,
    /// Largest MQTT packet the pole sends or accepts, header and topic
    /// included. An event that does not fit (or does not fit the smaller
    /// maximum an MQTT 5 broker announces) is set aside and reported.
    pub max_packet_bytes: u32,
}

impl MqttSettings {
    /// Publishing to `host` as `origin`, over TLS when `tls` is given, with
    /// every other setting at its default: MQTT 3.1.1 on port 8883 with TLS
    /// (1883 without), no user name, client id `luciole-<site>-<device>`,
    /// topic prefix `luciole`, keep-alive 30 s, reconnection after 500 ms
    /// doubling up to 60 s (back to 500 ms once a connection stayed up for a
    /// keep-alive period), 32 publishes in flight, packets up to 256 KiB.
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
            reconnect: Backoff {
                min: Duration::from_millis(500),
                max: Duration::from_secs(60),
            },
            inflight: 32,
            max_packet_bytes: DEFAULT_MAX_PACKET_BYTES,
        }
    }
}

/// `mqtt.max_packet_bytes` by default: far above the largest event the
/// outbox stores (32 KiB), so every stored event fits with its topic and
/// header, and within what common brokers accept by default (Mosquitto and
/// HiveMQ: 256 MB; AWS IoT Core: 128 KiB, Azure IoT Hub: 256 KiB).
pub const DEFAULT_MAX_PACKET_BYTES: u32 = 256 * 1024;

/// Where messages on subscribed topics go (commands): the topic filters
/// the publisher subscribes to on each connection, and a bounded channel.
#[derive(Clone)]
pub struct Inbox {
    pub filters: Vec<String>,
    pub sender: Sender<Inbound>,
    /// True while the broker has granted every filter on the current
    /// connection.
    pub subscribed: Arc<AtomicBool>,
    /// The current connection's session, to answer through (replaced when
    /// the publisher restarts).
    pub session: Arc<std::sync::Mutex<Option<session::Session>>>,
}

/// A message received, with the session to answer through.
pub struct Inbound {
    pub message: session::Received,
    /// Publishes replies (QoS 0) on the connection the message came from.
    pub replies: session::Session,
}

/// Counters the daemon reports in health events.
#[derive(Debug)]
pub struct PublishStats {
    pub connected: AtomicBool,
    /// Connections regained since start: each connection accepted after a
    /// lost one (the first connection is not counted, nor are failed
    /// attempts). Reported as `broker_reconnects`.
    pub reconnects: AtomicU64,
    /// Failed connection attempts and lost connections since start.
    pub failures: AtomicU64,
    /// Events acknowledged by the broker since start.
    pub acked: AtomicU64,
    /// Events set aside since start, each reported by a `dropped` event:
    /// refused by the broker, or too large to send.
    pub set_aside: AtomicU64,
    /// Time from each event's publish to its PUBACK.
    pub latency: crate::metrics::Histogram,
}

impl Default for PublishStats {
    fn default() -> Self {
        Self {
            connected: AtomicBool::default(),
            reconnects: AtomicU64::default(),
            failures: AtomicU64::default(),
            acked: AtomicU64::default(),
            set_aside: AtomicU64::default(),
            latency: crate::metrics::Histogram::new(&crate::metrics::PUBLISH_BOUNDS),
        }
    }
}

/// The running publisher. [`Publisher::stop`] ends it cleanly; dropping it
/// stops it without a grace period.
pub struct Publisher {
    pub stats: Arc<PublishStats>,
    /// Carries the drain grace to the publishing thread.
    stop: Option<Sender<Duration>>,
    publishing: Option<JoinHandle<bool>>,
    connection: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Starts publishing `outbox` with `settings`: opens nothing yet (the
    /// connection thread connects, and reconnects after failures); fails
    /// only on unreadable TLS or password files, or if a thread cannot
    /// start. `manifest`, the data manifest's JSON, is published retained
    /// on every connection.
    pub fn start(
        settings: &MqttSettings,
        origin: Origin,
        outbox: Arc<Outbox>,
        inbox: Option<Inbox>,
        manifest: Option<Vec<u8>>,
    ) -> Result<Publisher, PublishError> {
        let (client, connection) = session::open(settings, &origin)?;
        let stats = Arc::new(PublishStats::default());
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let (publishing, connection) = link::spawn(
            settings,
            origin,
            outbox,
            (client, connection),
            &stats,
            stopped,
            link::Beside { inbox, manifest },
        )?;
        Ok(Publisher {
            stats,
            stop: Some(stop),
            publishing: Some(publishing),
            connection: Some(connection),
        })
    }

    /// Stops: while connected, gives the broker up to `drain` to take every
    /// committed event, then publishes `offline`, disconnects and waits for
    /// both threads.
    pub fn stop(mut self, drain: Duration) {
        self.halt(drain);
    }

    fn halt(&mut self, drain: Duration) {
        let Some(stop) = self.stop.take() else {
            return;
        };
        let _ = stop.send(drain);
        let closed = self.publishing.take().is_some_and(|thread| {
            thread.join().unwrap_or_else(|_| {
                tracing::error!("the MQTT publishing thread panicked");
                false
            })
        });
        if let Some(thread) = self.connection.take() {
            if closed {
                let _ = thread.join();
            } else {
                // Still inside rumqttc (a connection attempt to a silent
                // broker): it ends on its own once that attempt does.
                tracing::warn!("the MQTT connection thread did not end in time; leaving it");
            }
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.halt(Duration::ZERO);
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
        Failure::Tls(e) => {
            let text = e.to_string();
            format!("TLS with broker {broker} failed: {text} ({})", tls_hint(&text, settings))
        }
        Failure::Io(e) => format!("broker {broker} unreachable: {e}"),
        Failure::Timeout => format!("broker {broker}: connection timed out"),
        Failure::Other(e) => format!("broker {broker}: connection lost: {e}"),
    }
}

/// What to check for a failed TLS handshake, from the error's text (rustls
/// names the certificate problem: `NotValidForName`, `UnknownIssuer`...).
fn tls_hint(text: &str, settings: &MqttSettings) -> String {
    let host = &settings.host;
    if text.contains("NotValidForName") {
        format!(
            "the broker's certificate does not name mqtt.host = {host:?}: reissue it with that name (or IP address) in its subject alternative names, or set mqtt.host to a name the certificate carries"
        )
    } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        "mqtt.ca_file must hold the CA that signed the broker's certificate".into()
    } else if text.contains("Expired") || text.contains("NotValidYet") {
        "the broker's certificate is outside its validity period: renew it, or check the pole's clock".into()
    } else if text.contains("alert") {
        "the broker refused the handshake: it may want a client certificate (mqtt.client_cert_file and mqtt.client_key_file) or not trust the pole's".into()
    } else {
        "check mqtt.ca_file, the client certificate if any, and the broker's TLS set-up".into()
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
