//! The publisher against a real Mosquitto (Debian package) started by each
//! test on free loopback ports: broker outages, credentials, TLS trust and
//! a full outbox. Events go through the real outbox (SQLite) and the real
//! publisher (rumqttc); a separate consumer checks what the city would see.

#[path = "support/broker.rs"]
mod broker;
#[path = "support/delivery.rs"]
mod delivery;
mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::{check_delivery, make_pki, make_pki_naming, Broker, BrokerOptions, Consumer, Pki};
use luciole::backoff::Backoff;
use luciole::events::{Body, ErrorCode, ErrorReport, Origin};
use luciole::outbox::ledger::Limits;
use luciole::outbox::{Flusher, Outbox, OutboxSettings};
use luciole::publish::session::Protocol;
use luciole::publish::{MqttSettings, Publisher, TlsSettings};
use support::scratch;

const FILTER: &str = "luciole/test-site/pole-1/events/#";

fn origin() -> Origin {
    Origin {
        site: "test-site".into(),
        device: "pole-1".into(),
    }
}

fn outbox(dir: &Path, max_bytes: u64) -> Arc<Outbox> {
    let settings = OutboxSettings {
        path: dir.join("outbox"),
        limits: Limits {
            max_bytes,
            retention_ms: 24 * 3600 * 1000,
        },
        flush_every: Duration::from_millis(20),
        cache_bytes: 4 << 20,
    };
    Arc::new(Outbox::open(&settings, origin()).unwrap())
}

fn mqtt(port: u16) -> MqttSettings {
    MqttSettings {
        port,
        client_id: format!("luciole-test-{}-{port}", std::process::id()),
        keep_alive: Duration::from_secs(5),
        reconnect: Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(2),
        },
        inflight: 16,
        ..MqttSettings::new("127.0.0.1".into(), &origin(), None)
    }
}

fn event(n: u64) -> Body {
    Body::Error(ErrorReport {
        code: luciole::events::ErrorCode::PipelineFailed,
        message: format!("event {n}"),
    })
}

/// A running outbox + flusher + publisher, stopped on drop (with the
/// daemon's 2-second drain grace).
struct Pole {
    outbox: Arc<Outbox>,
    publisher: Option<Publisher>,
    flusher: Option<Flusher>,
}

impl Pole {
    fn start(outbox: Arc<Outbox>, settings: &MqttSettings) -> Pole {
        let flusher = outbox.spawn_flusher(Duration::from_millis(20)).unwrap();
        let publisher =
            Publisher::start(settings, origin(), Arc::clone(&outbox), None, None).unwrap();
        Pole {
            outbox,
            publisher: Some(publisher),
            flusher: Some(flusher),
        }
    }

    /// Stops the publisher, giving the broker up to `drain` to take what
    /// is committed, then the flusher.
    fn stop(mut self, drain: Duration) {
        if let Some(publisher) = self.publisher.take() {
            publisher.stop(drain);
        }
        if let Some(flusher) = self.flusher.take() {
            flusher.stop();
        }
    }

    fn stats(&self) -> &luciole::publish::PublishStats {
        &self.publisher.as_ref().unwrap().stats
    }

    fn wait_until_drained(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.outbox.depth() > 0 {
            assert!(
                Instant::now() < deadline,
                "outbox still holds {} event(s)",
                self.outbox.depth()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pole {
    fn drop(&mut self) {
        if let Some(publisher) = self.publisher.take() {
            publisher.stop(Duration::from_secs(2));
        }
        if let Some(flusher) = self.flusher.take() {
            flusher.stop();
        }
    }
}

#[test]
fn every_event_arrives_in_order_after_the_broker_was_away_for_30_seconds() {
    let dir = scratch("mqtt-outage");
    let mut broker = Broker::start(&dir.join("broker"));
    let consumer = Consumer::start(broker.plain_port, FILTER);
    let pole = Pole::start(outbox(&dir, 64 << 20), &mqtt(broker.port));

    // Events keep coming every 20 ms before, during and after the outage.
    let producer = {
        let outbox = Arc::clone(&pole.outbox);
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            let started = Instant::now();
            let mut n = 0;
            while started.elapsed() < Duration::from_secs(36) {
                ids.push(outbox.push(event(n)).unwrap());
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            ids
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    broker.stop();
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(30));
    assert!(
        pole.outbox.depth() > 500,
        "events pile up while the broker is away"
    );
    assert!(!pole.stats().connected.load(Ordering::SeqCst));
    broker.resume();
    let ids = producer.join().unwrap();
    assert!(stopped.elapsed() >= Duration::from_secs(30));
    pole.outbox.commit().unwrap();
    pole.wait_until_drained(Duration::from_secs(60));
    consumer.wait_for(Duration::from_secs(30), "every event", |r| {
        r.iter().any(|e| e.id == *ids.last().unwrap())
    });
    check_delivery(&consumer.events(), ids.iter().copied());
    assert_eq!(pole.stats().reconnects.load(Ordering::SeqCst), 1);
}

#[test]
fn a_broker_refusing_the_credentials_is_retried_and_nothing_is_lost() {
    let dir = scratch("mqtt-credentials");
    let password_file = dir.join("password");
    std::fs::write(&password_file, "wrong-password\n").unwrap();
    let broker = Broker::start_with(
        &dir.join("broker"),
        BrokerOptions {
            users: vec![("pole-1".into(), "right-password".into())],
            ..Default::default()
        },
    );
    let consumer = Consumer::start(broker.plain_port, FILTER);
    let mut settings = mqtt(broker.port);
    settings.username = Some("pole-1".into());
    settings.password_file = Some(password_file.clone());
    let store = outbox(&dir, 64 << 20);
    let ids: Vec<u64> = (0..50).map(|n| store.push(event(n)).unwrap()).collect();
    store.commit().unwrap();
    {
        let pole = Pole::start(Arc::clone(&store), &settings);
        let deadline = Instant::now() + Duration::from_secs(20);
        while pole.stats().failures.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "no retries seen");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!pole.stats().connected.load(Ordering::SeqCst));
        assert_eq!(pole.outbox.depth(), 50, "nothing is dropped while refused");
    }
    assert!(consumer.events().is_empty());
    // The installer fixes the password: everything held is delivered.
    std::fs::write(&password_file, "right-password\n").unwrap();
    let pole = Pole::start(store, &settings);
    pole.wait_until_drained(Duration::from_secs(20));
    consumer.wait_for(Duration::from_secs(10), "50 events", |r| r.len() >= 50);
    check_delivery(&consumer.events(), ids);
}

#[test]
fn the_refusal_is_explained_in_terms_of_the_configuration() {
    let settings = mqtt(1883);
    let refused = rumqttc::ConnectionError::ConnectionRefused(
        rumqttc::ConnectReturnCode::BadUserNamePassword,
    );
    let text = luciole::publish::explain(&refused, &settings);
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(
        text.contains("mqtt.username and mqtt.password_file"),
        "{text}"
    );
    assert!(text.contains("127.0.0.1:1883"), "{text}");
}

/// A broker on a TLS listener with `pki`'s server certificate (and a
/// plaintext one for the consumer); `client_certs`: clients must present a
/// certificate signed by `pki`'s CA.
fn tls_broker(dir: &Path, pki: &Pki, client_certs: bool) -> Broker {
    Broker::start_with(
        &dir.join("broker"),
        BrokerOptions {
            tls: Some((
                pki.ca.clone(),
                pki.server_cert.clone(),
                pki.server_key.clone(),
                client_certs,
            )),
            ..Default::default()
        },
    )
}

fn tls_settings(port: u16, ca: &Path, client: Option<(&Path, &Path)>) -> MqttSettings {
    let mut settings = mqtt(port);
    settings.tls = Some(TlsSettings {
        ca_file: ca.to_owned(),
        client_cert: client.map(|(c, k)| (c.to_owned(), k.to_owned())),
    });
    settings
}

#[test]
fn a_server_certificate_from_an_unknown_ca_is_refused() {
    let dir = scratch("mqtt-unknown-ca");
    let city = make_pki(&dir, "city");
    let stranger = make_pki(&dir, "stranger");
    let broker = tls_broker(&dir, &city, false);
    let consumer = Consumer::start(broker.plain_port, FILTER);
    let store = outbox(&dir, 64 << 20);
    let ids: Vec<u64> = (0..10).map(|n| store.push(event(n)).unwrap()).collect();
    store.commit().unwrap();
    {
        let pole = Pole::start(
            Arc::clone(&store),
            &tls_settings(broker.port, &stranger.ca, None),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while pole.stats().failures.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "no refusal seen");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!pole.stats().connected.load(Ordering::SeqCst));
        assert_eq!(pole.outbox.depth(), 10);
    }
    assert!(consumer.events().is_empty(), "nothing reached the broker");
    // With the city's CA the same events go through.
    let pole = Pole::start(store, &tls_settings(broker.port, &city.ca, None));
    pole.wait_until_drained(Duration::from_secs(20));
    consumer.wait_for(Duration::from_secs(10), "10 events", |r| r.len() >= 10);
    check_delivery(&consumer.events(), ids);
}

#[test]
fn a_broker_requiring_client_certificates_accepts_the_poles_certificate() {
    let dir = scratch("mqtt-client-cert");
    let city = make_pki(&dir, "city");
    let broker = tls_broker(&dir, &city, true);
    let consumer = Consumer::start(broker.plain_port, FILTER);
    let store = outbox(&dir, 64 << 20);
    // Without a client certificate the broker hangs up.
    {
        let pole = Pole::start(
            Arc::clone(&store),
            &tls_settings(broker.port, &city.ca, None),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while pole.stats().failures.load(Ordering::SeqCst) < 1 {
            assert!(Instant::now() < deadline, "no refusal seen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let ids: Vec<u64> = (0..10).map(|n| store.push(event(n)).unwrap()).collect();
    store.commit().unwrap();
    let pole = Pole::start(
        store,
        &tls_settings(
            broker.port,
            &city.ca,
            Some((&city.client_cert, &city.client_key)),
        ),
    );
    pole.wait_until_drained(Duration::from_secs(20));
    consumer.wait_for(Duration::from_secs(10), "10 events", |r| r.len() >= 10);
    check_delivery(&consumer.events(), ids);
}

#[test]
fn a_full_outbox_drops_the_oldest_and_the_consumer_sees_the_gap_accounted_for() {
    let dir = scratch("mqtt-full");
    let store = outbox(&dir, 64 * 1024);
    // No broker yet: the outbox fills up and overflows.
    let mut last = 0;
    for n in 0..2000 {
        last = store.push(event(n)).unwrap();
    }
    store.commit().unwrap();
    assert!(store.depth() < 2000);
    let broker = Broker::start(&dir.join("broker"));
    let consumer = Consumer::start(broker.plain_port, FILTER);
    let pole = Pole::start(Arc::clone(&store), &mqtt(broker.port));
    pole.wait_until_drained(Duration::from_secs(30));
    consumer.wait_for(Duration::from_secs(10), "the newest event", |r| {
        r.iter().any(|e| e.id == last)
    });
    let received = consumer.events();
    let mut seen = std::collections::BTreeSet::new();
    let mut lost = 0;
    for r in &received {
        if seen.insert(r.id) && r.payload["kind"] == "dropped" {
            assert_eq!(r.payload["data"]["reason"], "overflow");
            lost += r.payload["data"]["count"].as_u64().unwrap();
        }
    }
    assert!(lost > 0);
    // Every id given was either received or counted by a `dropped` event.
    assert_eq!(seen.len() as u64 + lost, last, "received {}", seen.len());
    let held: Vec<u64> = seen.iter().copied().collect();
    check_delivery(&received, held);
}

#[test]
fn the_retained_status_says_online_and_the_last_will_says_offline() {
    let dir = scratch("mqtt-presence");
    let broker = Broker::start(&dir.join("broker"));
    let status = Consumer::start(broker.plain_port, "luciole/test-site/pole-1/status");
    let mut settings = mqtt(broker.port);
    settings.keep_alive = Duration::from_secs(5);
    let pole = Pole::start(outbox(&dir, 64 << 20), &settings);
    let states = |c: &Consumer| -> Vec<String> {
        luciole::sync::lock(&c.received)
            .iter()
            .map(|r| r.payload["state"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !states(&status).contains(&"online".to_string()) {
        assert!(Instant::now() < deadline, "{:?}", states(&status));
        std::thread::sleep(Duration::from_millis(50));
    }
    // A clean stop publishes `offline` itself.
    drop(pole);
    let deadline = Instant::now() + Duration::from_secs(10);
    while states(&status).last().map(String::as_str) != Some("offline") {
        assert!(Instant::now() < deadline, "{:?}", states(&status));
        std::thread::sleep(Duration::from_millis(50));
    }
    // A late subscriber gets the retained state.
    let late = Consumer::start(broker.plain_port, "luciole/test-site/pole-1/status");
    let deadline = Instant::now() + Duration::from_secs(10);
    while states(&late).is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(states(&late), vec!["offline".to_string()]);
}

#[test]
fn mqtt_5_retries_refused_credentials_then_delivers_everything_in_order() {
    let dir = scratch("mqtt-5");
    let password_file = dir.join("password");
    std::fs::write(&password_file, "wrong-password\n").unwrap();
    let broker = Broker::start_with(
        &dir.join("broker"),
        BrokerOptions {
            users: vec![("pole-1".into(), "right-password".into())],
            ..Default::default()
        },
    );
    let consumer = Consumer::start(broker.plain_port, FILTER);
    let mut settings = mqtt(broker.port);
    settings.protocol = Protocol::V5;
    settings.username = Some("pole-1".into());
    settings.password_file = Some(password_file.clone());
    let store = outbox(&dir, 64 << 20);
    let ids: Vec<u64> = (0..300).map(|n| store.push(event(n)).unwrap()).collect();
    store.commit().unwrap();
    {
        let pole = Pole::start(Arc::clone(&store), &settings);
        let deadline = Instant::now() + Duration::from_secs(20);
        while pole.stats().failures.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "no retries seen");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(pole.outbox.depth(), 300, "nothing is dropped while refused");
    }
    std::fs::write(&password_file, "right-password\n").unwrap();
    let pole = Pole::start(store, &settings);
    // New events keep coming while the backlog drains.
    let more: Vec<u64> = (300..400)
        .map(|n| {
            std::thread::sleep(Duration::from_millis(2));
            pole.outbox.push(event(n)).unwrap()
        })
        .collect();
    pole.outbox.commit().unwrap();
    pole.wait_until_drained(Duration::from_secs(20));
    consumer.wait_for(Duration::from_secs(10), "400 events", |r| r.len() >= 400);
    check_delivery(&consumer.events(), ids.into_iter().chain(more));
}

#[test]
fn mqtt_5_refusals_are_explained_in_terms_of_the_configuration() {
    let settings = mqtt(1883);
    let refused = rumqttc::v5::ConnectionError::ConnectionRefused(
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::NotAuthorized,
    );
    let text = luciole::publish::session::explain_v5(&refused, &settings);
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(
        text.contains("mqtt.username and mqtt.password_file"),
        "{text}"
    );
}

/// Ids of this process's threads called `name`.
fn threads_named(name: &str) -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let task = task.ok()?.path();
            let comm = std::fs::read_to_string(task.join("comm")).ok()?;
            let tid = task.file_name()?.to_string_lossy().into_owned();
            (comm.trim() == name).then_some(tid)
        })
        .collect()
}

/// How many times thread `tid` of this process was switched out so far
/// (each wake-up of a sleeping thread ends in one).
fn context_switches(tid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .map(|l| l.split_whitespace().last().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn events_committed_after_the_publisher_went_idle_are_published_at_once_without_polling() {
    let dir = scratch("mqtt-idle");
    let broker = Broker::start(&dir.join("broker"));
    let consumer = Consumer::start(broker.plain_port, FILTER);
    // No keep-alive ping within the test: only a commit can wake the
    // publisher. No flusher either: the test commits itself.
    let mut settings = mqtt(broker.port);
    settings.keep_alive = Duration::from_secs(120);
    let store = outbox(&dir, 64 << 20);
    let before = threads_named("mqtt-pub");
    let publisher = Publisher::start(&settings, origin(), Arc::clone(&store), None, None).unwrap();
    let first = store.push(event(0)).unwrap();
    store.commit().unwrap();
    consumer.wait_for(Duration::from_secs(10), "the first event", |r| {
        r.iter().any(|e| e.id == first)
    });
    // A thread names itself once running: by now it has.
    let ours: Vec<String> = threads_named("mqtt-pub")
        .difference(&before)
        .cloned()
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.depth() > 0 {
        assert!(
            Instant::now() < deadline,
            "the first event was not acknowledged"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut latencies = Vec::new();
    for n in 1..=5 {
        // Idle: nothing in flight, nothing committed to offer.
        std::thread::sleep(Duration::from_millis(300));
        let id = store.push(event(n)).unwrap();
        let committed = Instant::now();
        store.commit().unwrap();
        consumer.wait_for(Duration::from_secs(5), "the late event", |r| {
            r.iter().any(|e| e.id == id)
        });
        let arrived = consumer.events().iter().find(|e| e.id == id).unwrap().at;
        latencies.push(arrived.duration_since(committed));
    }
    let slowest = latencies.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_millis(500),
        "commit to arrival: {latencies:?}"
    );
    eprintln!("commit to arrival after an idle period: {latencies:?}");

    // Asleep while idle: a polling loop would wake up every few
    // milliseconds. (Checked when no other test started a publisher at the
    // same moment, so that the thread is surely this test's.)
    if let [tid] = ours.as_slice() {
        let before = context_switches(tid);
        std::thread::sleep(Duration::from_secs(1));
        let wakeups = context_switches(tid) - before;
        eprintln!("the idle publisher woke up {wakeups} times in 1 s");
        assert!(
            wakeups <= 3,
            "the idle publisher woke up {wakeups} times in 1 s"
        );
    } else {
        eprintln!("publisher thread not identified ({ours:?}): wake-ups not counted");
    }
    publisher.stop(Duration::from_secs(2));
    check_delivery(&consumer.events(), 1..=6);
}

#[test]
fn a_stopping_publisher_lets_the_broker_take_every_committed_event_first() {
    let dir = scratch("mqtt-drain");
    let broker = Broker::start(&dir.join("broker"));
    let consumer = Consumer::start(broker.plain_port, FILTER);
    let store = outbox(&dir, 64 << 20);
    let pole = Pole::start(Arc::clone(&store), &mqtt(broker.port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pole.stats().connected.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "never connected");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Far more than the window (16): most are still to be offered when the
    // stop comes.
    let ids: Vec<u64> = (0..2000).map(|n| store.push(event(n)).unwrap()).collect();
    store.commit().unwrap();
    pole.stop(Duration::from_secs(20));
    assert_eq!(
        store.depth(),
        0,
        "everything was acknowledged before the stop"
    );
    consumer.wait_for(Duration::from_secs(10), "2000 events", |r| r.len() >= 2000);
    check_delivery(&consumer.events(), ids);
}

/// An `error` event whose JSON is about `bytes` long.
fn big_event(bytes: usize) -> Body {
    Body::Error(ErrorReport {
        code: ErrorCode::PipelineFailed,
        message: "x".repeat(bytes.saturating_sub(181)),
    })
}

/// The `state` of every retained presence message received so far.
fn presence_states(c: &Consumer) -> Vec<String> {
    luciole::sync::lock(&c.received)
        .iter()
        .map(|r| r.payload["state"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn an_event_over_10_kib_is_delivered_and_the_connection_stays_up() {
    for protocol in [Protocol::V311, Protocol::V5] {
        let dir = scratch(&format!("mqtt-big-{protocol:?}"));
        let broker = Broker::start(&dir.join("broker"));
        let consumer = Consumer::start(broker.plain_port, FILTER);
        let status = Consumer::start(broker.plain_port, "luciole/test-site/pole-1/status");
        let store = outbox(&dir, 64 << 20);
        // As a busy junction's one-minute `flow` event: 11,973 bytes.
        let mut ids: Vec<u64> = (0..20).map(|n| store.push(event(n)).unwrap()).collect();
        ids.push(store.push(big_event(11_973)).unwrap());
        ids.extend((20..40).map(|n| store.push(event(n)).unwrap()));
        store.commit().unwrap();
        let big = store.get(ids[20]).unwrap().unwrap();
        assert!(
            serde_json::to_vec(&big).unwrap().len() > 11_000,
            "the test event is over 10 KiB"
        );
        let mut settings = mqtt(broker.port);
        settings.protocol = protocol;
        let pole = Pole::start(Arc::clone(&store), &settings);
        pole.wait_until_drained(Duration::from_secs(20));
        consumer.wait_for(Duration::from_secs(10), "41 events", |r| r.len() >= 41);
        check_delivery(&consumer.events(), ids);
        let online = presence_states(&status)
            .iter()
            .filter(|s| *s == "online")
            .count();
        assert_eq!(online, 1, "{protocol:?}: the connection stayed up");
        assert_eq!(pole.stats().reconnects.load(Ordering::SeqCst), 0);
    }
}

/// Mosquitto ACL (anonymous clients) refusing the pole's `alert` topic.
const DENY_ALERTS: &str =
    "topic deny luciole/test-site/pole-1/events/alert\ntopic readwrite luciole/#\n";

#[test]
fn mqtt_5_events_the_broker_refuses_are_reported_and_the_rest_flows_in_order() {
    let dir = scratch("mqtt-5-refused");
    let broker = Broker::start_with(
        &dir.join("broker"),
        BrokerOptions {
            acl: Some(DENY_ALERTS.into()),
            ..Default::default()
        },
    );
    let consumer = Consumer::start(broker.plain_port, FILTER);
    let mut settings = mqtt(broker.port);
    settings.protocol = Protocol::V5;
    let store = outbox(&dir, 64 << 20);
    let pole = Pole::start(Arc::clone(&store), &settings);
    // More refused events than the window (16) holds.
    let mut sent = Vec::new();
    let mut refused = Vec::new();
    for n in 0..200 {
        if n % 5 == 0 {
            refused.push(
                store
                    .push(Body::Alert(luciole::events::Alert {
                        code: "test".into(),
                        message: format!("alert {n}"),
                    }))
                    .unwrap(),
            );
        } else {
            sent.push(store.push(event(n)).unwrap());
        }
        if n % 20 == 0 {
            store.commit().unwrap();
        }
    }
    store.commit().unwrap();
    let last = *sent.last().unwrap();
    consumer.wait_for(Duration::from_secs(30), "the last event", |r| {
        r.iter().any(|e| e.id == last)
    });
    // Every refusal is reported by a `dropped` event naming the event.
    consumer.wait_for(Duration::from_secs(30), "a report of each refusal", |r| {
        r.iter()
            .filter(|e| e.payload["kind"] == "dropped" && e.payload["data"]["reason"] == "refused")
            .count()
            >= refused.len()
    });
    let received = consumer.events();
    let reported: std::collections::BTreeSet<u64> = received
        .iter()
        .filter(|e| e.payload["kind"] == "dropped")
        .map(|e| {
            assert_eq!(e.payload["data"]["count"], 1);
            assert_eq!(e.payload["data"]["first_id"], e.payload["data"]["last_id"]);
            e.payload["data"]["first_id"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(reported, refused.iter().copied().collect());
    assert!(received.iter().all(|e| e.payload["kind"] != "alert"));
    check_delivery(&received, sent.iter().copied());
    let delivery = delivery::check_contract(&received, 1..=last.max(*refused.last().unwrap()));
    assert_eq!(
        delivery.reported_dropped,
        refused.len() as u64,
        "{delivery}"
    );
    eprintln!("{delivery}");
    pole.wait_until_drained(Duration::from_secs(20));
    assert_eq!(
        pole.stats().set_aside.load(Ordering::SeqCst),
        refused.len() as u64
    );
}

#[test]
fn a_corrected_password_file_is_read_at_the_next_attempt_without_a_restart() {
    for protocol in [Protocol::V311, Protocol::V5] {
        let dir = scratch(&format!("mqtt-password-fixed-{protocol:?}"));
        let password_file = dir.join("password");
        std::fs::write(&password_file, "wrong-password\n").unwrap();
        let broker = Broker::start_with(
            &dir.join("broker"),
            BrokerOptions {
                users: vec![("pole-1".into(), "right-password".into())],
                ..Default::default()
            },
        );
        let consumer = Consumer::start(broker.plain_port, FILTER);
        let mut settings = mqtt(broker.port);
        settings.protocol = protocol;
        settings.username = Some("pole-1".into());
        settings.password_file = Some(password_file.clone());
        let store = outbox(&dir, 64 << 20);
        let ids: Vec<u64> = (0..20).map(|n| store.push(event(n)).unwrap()).collect();
        store.commit().unwrap();
        let pole = Pole::start(Arc::clone(&store), &settings);
        wait_for_failures(&pole, 2);
        std::fs::write(&password_file, "right-password\n").unwrap();
        pole.wait_until_drained(Duration::from_secs(20));
        consumer.wait_for(Duration::from_secs(10), "20 events", |r| r.len() >= 20);
        check_delivery(&consumer.events(), ids);
    }
}

#[test]
fn a_corrected_ca_file_is_read_at_the_next_attempt_without_a_restart() {
    let dir = scratch("mqtt-ca-fixed");
    let city = make_pki(&dir, "city");
    let stranger = make_pki(&dir, "stranger");
    let broker = tls_broker(&dir, &city, false);
    let consumer = Consumer::start(broker.plain_port, FILTER);
    let ca_file = dir.join("pole-ca.pem");
    std::fs::copy(&stranger.ca, &ca_file).unwrap();
    let store = outbox(&dir, 64 << 20);
    let ids: Vec<u64> = (0..10).map(|n| store.push(event(n)).unwrap()).collect();
    store.commit().unwrap();
    let pole = Pole::start(
        Arc::clone(&store),
        &tls_settings(broker.port, &ca_file, None),
    );
    wait_for_failures(&pole, 2);
    std::fs::copy(&city.ca, &ca_file).unwrap();
    pole.wait_until_drained(Duration::from_secs(20));
    consumer.wait_for(Duration::from_secs(10), "10 events", |r| r.len() >= 10);
    check_delivery(&consumer.events(), ids);
}

/// Waits until the publisher saw `n` failed attempts.
fn wait_for_failures(pole: &Pole, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pole.stats().failures.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "no failed attempts seen");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pole.stats().connected.load(Ordering::SeqCst));
}

#[test]
fn a_certificate_not_naming_the_host_is_explained_as_a_name_mismatch() {
    let dir = scratch("mqtt-name-mismatch");
    let city = make_pki_naming(&dir, "city", &["broker.city.invalid"]);
    let broker = tls_broker(&dir, &city, false);
    let settings = tls_settings(broker.port, &city.ca, None);
    // The real handshake's error, as the publisher gets it.
    let mut options = rumqttc::MqttOptions::new("name-mismatch", "127.0.0.1", broker.port);
    options.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
        ca: std::fs::read(&city.ca).unwrap(),
        alpn: None,
        client_auth: None,
    }));
    let (_client, mut connection) = rumqttc::Client::new(options, 10);
    let err = connection
        .iter()
        .find_map(Result::err)
        .expect("the handshake fails");
    let text = luciole::publish::explain(&err, &settings);
    assert!(text.contains("does not name mqtt.host"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(!text.contains("mqtt.ca_file"), "{text}");
}

#[test]
fn broker_reconnects_counts_connections_regained_not_failed_attempts() {
    let dir = scratch("mqtt-reconnects");
    let mut broker = Broker::start(&dir.join("broker"));
    broker.stop();
    let store = outbox(&dir, 64 << 20);
    let pole = Pole::start(Arc::clone(&store), &mqtt(broker.port));
    // Refused attempts while the broker is away.
    std::thread::sleep(Duration::from_secs(2));
    broker.resume();
    let connected = |pole: &Pole| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pole.stats().connected.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "never connected");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    connected(&pole);
    assert_eq!(
        pole.stats().reconnects.load(Ordering::SeqCst),
        0,
        "the first connection is no reconnection"
    );
    broker.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pole.stats().connected.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the loss was not noticed");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    broker.resume();
    connected(&pole);
    assert_eq!(pole.stats().reconnects.load(Ordering::SeqCst), 1);
}

/// Pushes an event every 20 ms until `stop` is set; returns their ids.
fn produce(
    outbox: &Arc<Outbox>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<u64>> {
    let (outbox, stop) = (Arc::clone(outbox), Arc::clone(stop));
    std::thread::spawn(move || {
        let mut ids = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            ids.push(outbox.push(event(n)).unwrap());
            n += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        ids
    })
}

/// Waits until the publisher's connection state is `up`; returns how long
/// that took.
fn wait_connected(pole: &Pole, up: bool, timeout: Duration) -> Duration {
    let started = Instant::now();
    while pole.stats().connected.load(Ordering::SeqCst) != up {
        assert!(
            started.elapsed() < timeout,
            "still {} after {timeout:?}",
            if up { "disconnected" } else { "connected" }
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Stops the producer, lets the pole deliver everything, and checks what
/// the consumer got: every event delivered, in order per topic, no
/// duplicate id with different content.
fn finish_and_check(
    pole: &Pole,
    consumer: &Consumer,
    stop: &Arc<std::sync::atomic::AtomicBool>,
    producer: std::thread::JoinHandle<Vec<u64>>,
) {
    stop.store(true, Ordering::SeqCst);
    let ids = producer.join().unwrap();
    pole.outbox.commit().unwrap();
    pole.wait_until_drained(Duration::from_secs(60));
    let last = *ids.last().unwrap();
    consumer.wait_for(Duration::from_secs(30), "the last event", |r| {
        r.iter().any(|e| e.id == last)
    });
    let delivery = delivery::check_contract(&consumer.events(), ids[0]..=last);
    assert_eq!(delivery.reported_dropped, 0, "{delivery}");
    eprintln!("{delivery}");
}

#[test]
fn a_broker_killed_mid_stream_and_restarted_loses_nothing() {
    let dir = scratch("mqtt-sigkill");
    let mut broker = Broker::start(&dir.join("broker"));
    let consumer = Consumer::start(broker.plain_port, FILTER);
    let pole = Pole::start(outbox(&dir, 64 << 20), &mqtt(broker.port));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = produce(&pole.outbox, &stop);
    for _ in 0..3 {
        wait_connected(&pole, true, Duration::from_secs(20));
        // Mid-stream: events in flight when the broker dies.
        std::thread::sleep(Duration::from_secs(2));
        broker.kill();
        wait_connected(&pole, false, Duration::from_secs(20));
        std::thread::sleep(Duration::from_secs(2));
        broker.resume();
    }
    wait_connected(&pole, true, Duration::from_secs(20));
    finish_and_check(&pole, &consumer, &stop, producer);
    assert_eq!(pole.stats().reconnects.load(Ordering::SeqCst), 3);
}

/// The keep-alive of the network tests, and the longest a silent broker
/// may go unnoticed: rumqttc pings once per keep-alive period and gives up
/// when the previous ping got no answer, so within two periods; plus a
/// margin for a loaded machine.
const NET_KEEP_ALIVE: Duration = Duration::from_secs(5);
const DETECTION_BOUND: Duration = Duration::from_secs(2 * 5 + 3);

#[test]
fn a_network_partition_is_detected_within_the_keep_alive_and_nothing_is_lost() {
    let dir = scratch("mqtt-partition");
    let broker = Broker::start(&dir.join("broker"));
    let proxy = broker::Proxy::start(broker.port);
    let consumer = Consumer::start(broker.plain_port, FILTER);
    let mut settings = mqtt(proxy.port);
    settings.keep_alive = NET_KEEP_ALIVE;
    let pole = Pole::start(outbox(&dir, 64 << 20), &settings);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = produce(&pole.outbox, &stop);
    wait_connected(&pole, true, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    // Nothing forwarded either way, no socket closed: attempts to
    // reconnect meanwhile get no CONNACK either.
    proxy.pause();
    let detected = wait_connected(&pole, false, DETECTION_BOUND);
    eprintln!("partition detected after {detected:?}");
    std::thread::sleep(Duration::from_secs(8));
    assert!(!pole.stats().connected.load(Ordering::SeqCst));
    assert!(pole.outbox.depth() > 100, "events wait in the outbox");
    proxy.resume();
    let back = wait_connected(&pole, true, Duration::from_secs(20));
    eprintln!("reconnected {back:?} after the network came back");
    finish_and_check(&pole, &consumer, &stop, producer);
}

#[test]
fn a_half_open_connection_is_detected_within_the_keep_alive_and_nothing_is_lost() {
    let dir = scratch("mqtt-half-open");
    let broker = Broker::start(&dir.join("broker"));
    let proxy = broker::Proxy::start(broker.port);
    let consumer = Consumer::start(broker.plain_port, FILTER);
    let mut settings = mqtt(proxy.port);
    settings.keep_alive = NET_KEEP_ALIVE;
    let pole = Pole::start(outbox(&dir, 64 << 20), &settings);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = produce(&pole.outbox, &stop);
    wait_connected(&pole, true, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    // The broker's side goes away; the pole's socket stays open and
    // silent (as after a NAT or firewall forgot the connection).
    proxy.sever_broker_side();
    let detected = wait_connected(&pole, false, DETECTION_BOUND);
    eprintln!("half-open connection detected after {detected:?}");
    // New connections go through.
    let back = wait_connected(&pole, true, Duration::from_secs(20));
    eprintln!("reconnected {back:?} after detection");
    std::thread::sleep(Duration::from_secs(1));
    finish_and_check(&pole, &consumer, &stop, producer);
    assert_eq!(pole.stats().reconnects.load(Ordering::SeqCst), 1);
}

#[test]
fn an_event_over_the_brokers_packet_limit_is_set_aside_and_reported_not_retried_forever() {
    for protocol in [Protocol::V311, Protocol::V5] {
        let dir = scratch(&format!("mqtt-broker-limit-{protocol:?}"));
        let broker = Broker::start_with(
            &dir.join("broker"),
            BrokerOptions {
                max_packet_size: Some(12_000),
                ..Default::default()
            },
        );
        let consumer = Consumer::start(broker.plain_port, FILTER);
        let store = outbox(&dir, 64 << 20);
        let mut ids: Vec<u64> = (0..20).map(|n| store.push(event(n)).unwrap()).collect();
        let big = store.push(big_event(15_000)).unwrap();
        ids.extend((20..40).map(|n| store.push(event(n)).unwrap()));
        store.commit().unwrap();
        let mut settings = mqtt(broker.port);
        settings.protocol = protocol;
        let pole = Pole::start(Arc::clone(&store), &settings);
        consumer.wait_for(Duration::from_secs(60), "the report", |r| {
            r.iter().any(|e| e.payload["kind"] == "dropped")
        });
        pole.wait_until_drained(Duration::from_secs(30));
        let received = consumer.events();
        let report = received
            .iter()
            .find(|e| e.payload["kind"] == "dropped")
            .unwrap();
        let data = &report.payload["data"];
        assert_eq!(data["first_id"], big, "{protocol:?}: {data}");
        assert_eq!(
            (data["last_id"].as_u64(), data["count"].as_u64()),
            (Some(big), Some(1))
        );
        // MQTT 5 brokers announce their limit: nothing is even sent.
        let reason = if protocol == Protocol::V5 {
            "too_large"
        } else {
            "refused"
        };
        assert_eq!(data["reason"], reason, "{protocol:?}");
        assert!(received.iter().all(|e| e.id != big));
        let last = *ids.last().unwrap();
        check_delivery(&received, ids);
        let delivery = delivery::check_contract(&received, 1..=last);
        assert_eq!(delivery.reported_dropped, 1, "{delivery}");
        assert_eq!(pole.stats().set_aside.load(Ordering::SeqCst), 1);
        if protocol == Protocol::V5 {
            assert_eq!(pole.stats().failures.load(Ordering::SeqCst), 0);
        }
    }
}
