//! Outbox benchmark against a real Mosquitto on a loopback port. Every
//! figure is given with its ratio to a reference measured in the same run,
//! on the same disk and broker, so that runs on different machines compare:
//!
//! - **append**: a plain append-only file, one `write` per event and
//!   `fdatasync` at the outbox's commit cadence (`FLUSH`): the least a
//!   durable store can cost;
//! - **raw QoS 1**: the same events published from memory by a bare
//!   rumqttc client with the same in-flight window, no store: what the
//!   broker and the loopback allow.
//!
//! Measured (the outbox with its flusher and the publisher, as the daemon
//! runs them):
//! 1. durable commit rate: events pushed as fast as possible, made durable
//!    by the flusher (no broker), and bytes written per event;
//! 2. sustained durable publish rate: events pushed, committed, published
//!    at QoS 1 and deleted on PUBACK, until the outbox is empty;
//! 3. bytes written per event at a pole's pace (20 events/s, where each
//!    commit carries one event), published as they come;
//! 4. time to drain a backlog built while the broker was away, and the
//!    store's size on disk for it.
//!
//! Bytes written are `write_bytes` of `/proc/self/io` (every thread of this
//! process: the store and its flushes). Event size: a ~230-byte `health`
//! event, as the daemon sends.
//!
//! Run: `cargo bench --bench outbox` (needs `mosquitto`, installed by
//! `tests/setup`); `cargo bench --bench outbox -- --quick` runs a fifth of
//! the events.
//!
//! redb was measured against sled with this benchmark and dropped (figures
//! of that run: durable publish sled 1,650–2,750 events/s, redb
//! 1,880–1,950; 100,000-event backlog drained by sled in 29–31 s, by redb
//! in 35–39 s; bytes written per event at 20 events/s sled 11.9 KB, redb
//! 49.4 KB; store size for that backlog sled 145 MB, redb 4.3 GB). sled
//! was then replaced by SQLite for its bytes written per event (the wear
//! benchmark, `benches/wear.rs`); the figures of both are in
//! docs/performance.md.

#[path = "../../tests/support/broker.rs"]
mod broker;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use luciole::backoff::Backoff;
use luciole::events::{Body, Health, Origin};
use luciole::outbox::ledger::Limits;
use luciole::outbox::{Outbox, OutboxSettings};
use luciole::publish::{MqttSettings, Publisher};

const FLUSH: Duration = Duration::from_millis(50);
const INFLIGHT: u16 = 32;

fn origin() -> Origin {
    Origin {
        site: "bench-site".into(),
        device: "pole-0001".into(),
    }
}

fn health(n: u64) -> Body {
    Body::Health(Health {
        fps: 24.9,
        frames: n * 250,
        dropped_frames: n / 7,
        reconnects: 0,
        outage_ms: 0,
        outbox_depth: n,
        broker_reconnects: 0,
        inferences: 0,
        skipped_by_motion: 0,
        predicted: 0,
        inference_fps: 0.0,
        queue_dropped: 0,
        inference_ms: 0.0,
        tracks: 0,
    })
}

fn write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io is readable");
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("write_bytes in /proc/self/io")
}

fn fresh(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
}

fn open(dir: &Path) -> Arc<Outbox> {
    fresh(dir);
    let settings = OutboxSettings {
        path: dir.join("outbox"),
        limits: Limits {
            max_bytes: 1 << 30,
            retention_ms: 24 * 3600 * 1000,
        },
        flush_every: FLUSH,
        cache_bytes: OutboxSettings::default().cache_bytes,
    };
    Arc::new(Outbox::open(&settings, origin()).unwrap())
}

/// A publisher of `outbox` to the broker on `port` (no commands, no manifest).
fn start_publisher(port: u16, outbox: &Arc<Outbox>) -> Publisher {
    Publisher::start(&mqtt(port), origin(), Arc::clone(outbox), None, None).unwrap()
}

fn mqtt(port: u16) -> MqttSettings {
    MqttSettings {
        port,
        client_id: "luciole-bench".into(),
        reconnect: Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_secs(1),
        },
        inflight: INFLIGHT,
        ..MqttSettings::new("127.0.0.1".into(), &origin(), None)
    }
}

fn wait_empty(outbox: &Outbox, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while outbox.depth() > 0 {
        assert!(Instant::now() < deadline, "{} left", outbox.depth());
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn sync_disk() {
    let _ = std::process::Command::new("sync").status();
}

/// The reference store: an append-only file made durable by `fdatasync`
/// every [`FLUSH`] by its own thread, as the outbox's flusher does.
struct AppendLog {
    file: Arc<File>,
    stop: Option<crossbeam_channel::Sender<()>>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl AppendLog {
    fn create(path: &Path) -> AppendLog {
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
        );
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let flusher = {
            let file = Arc::clone(&file);
            std::thread::spawn(move || loop {
                let running = matches!(stopped.recv_timeout(FLUSH), Err(RecvTimeoutError::Timeout));
                file.sync_data().unwrap();
                if !running {
                    break;
                }
            })
        };
        AppendLog {
            file,
            stop: Some(stop),
            flusher: Some(flusher),
        }
    }

    /// One record: id, time and JSON, as the outbox stores them.
    fn push(&self, id: u64, body: Body) {
        let now = luciole::events::now_ms();
        let json = origin().event(id, now, body).encode();
        let mut record = Vec::with_capacity(20 + json.len());
        record.extend_from_slice(&id.to_be_bytes());
        record.extend_from_slice(&now.to_be_bytes());
        record.extend_from_slice(&(json.len() as u32).to_be_bytes());
        record.extend_from_slice(&json);
        (&*self.file).write_all(&record).unwrap();
    }

    /// Makes everything durable and stops the flusher.
    fn close(mut self) {
        drop(self.stop.take());
        self.flusher.take().unwrap().join().unwrap();
    }
}

/// Events per second of a bare rumqttc client publishing `n` events at
/// QoS 1 from memory, `INFLIGHT` at most unacknowledged.
fn raw_qos1(port: u16, n: u64) -> f64 {
    use rumqttc::{Client, Event, Incoming, MqttOptions, QoS};
    let mut options = MqttOptions::new("luciole-bench-raw", "127.0.0.1", port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(INFLIGHT);
    let (client, mut connection) = Client::new(options, usize::from(INFLIGHT) + 4);
    let (connected_tx, connected) = crossbeam_channel::bounded(1);
    let counter = std::thread::spawn(move || {
        let mut acked = 0;
        for event in connection.iter() {
            match event.unwrap() {
                Event::Incoming(Incoming::ConnAck(_)) => connected_tx.send(()).unwrap(),
                Event::Incoming(Incoming::PubAck(_)) => {
                    acked += 1;
                    if acked == n {
                        return Instant::now();
                    }
                }
                _ => {}
            }
        }
        panic!("connection ended after {acked} acknowledgements");
    });
    connected.recv_timeout(Duration::from_secs(10)).unwrap();
    let topic = origin().event_topic("luciole", "health");
    let started = Instant::now();
    for id in 1..=n {
        let json = origin()
            .event(id, luciole::events::now_ms(), health(id))
            .encode();
        client
            .publish(topic.clone(), QoS::AtLeastOnce, false, json)
            .unwrap();
    }
    let done = counter.join().unwrap();
    let _ = client.disconnect();
    n as f64 / done.duration_since(started).as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 5 } else { 1 };
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("outbox-bench");
    let _ = std::fs::remove_dir_all(&root);
    let broker = broker::Broker::start(&root.join("broker"));
    let event_len = origin().event(1, 0, health(1)).encode().len();
    println!(
        "outbox benchmark: SQLite (flush every {FLUSH:?}, event {event_len} bytes of JSON{})",
        if quick { ", quick" } else { "" }
    );
    let mut table = Vec::new();
    let mut row = |what: &str, outbox: String, reference: String, ratio: f64| {
        table.push(format!("| {what} | {outbox} | {reference} | {ratio:.2} |"));
    };

    // 1. Durable commit, no broker.
    let n = 50_000 / scale;
    let (append_rate, append_bytes) = {
        let dir = root.join("append-commit");
        fresh(&dir);
        sync_disk();
        let before = write_bytes();
        let started = Instant::now();
        let log = AppendLog::create(&dir.join("log"));
        for id in 1..=n {
            log.push(id, health(id));
        }
        log.close();
        let elapsed = started.elapsed();
        (
            n as f64 / elapsed.as_secs_f64(),
            (write_bytes() - before) as f64 / n as f64,
        )
    };
    let (outbox_rate, outbox_bytes) = {
        let outbox = open(&root.join("commit"));
        let flusher = outbox.spawn_flusher(FLUSH).unwrap();
        sync_disk();
        let before = write_bytes();
        let started = Instant::now();
        for i in 0..n {
            outbox.push(health(i)).unwrap();
        }
        let last = outbox.commit().unwrap();
        let elapsed = started.elapsed();
        flusher.stop();
        drop(outbox);
        assert_eq!(last, n);
        (
            n as f64 / elapsed.as_secs_f64(),
            (write_bytes() - before) as f64 / n as f64,
        )
    };
    row(
        &format!("durable commit, {n} events (events/s)"),
        format!("{outbox_rate:.0}"),
        format!("{append_rate:.0} (append)"),
        outbox_rate / append_rate,
    );
    row(
        "bytes written per event at full speed",
        format!("{outbox_bytes:.0}"),
        format!("{append_bytes:.0} (append)"),
        outbox_bytes / append_bytes,
    );

    // 2. Sustained publish: push, commit, publish, PUBACK, delete.
    let n = 20_000 / scale;
    let raw_rate = raw_qos1(broker.port, n);
    let publish_rate = {
        let outbox = open(&root.join("publish"));
        let flusher = outbox.spawn_flusher(FLUSH).unwrap();
        let publisher = start_publisher(broker.port, &outbox);
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        for i in 0..n {
            outbox.push(health(i)).unwrap();
        }
        wait_empty(&outbox, Duration::from_secs(300));
        let elapsed = started.elapsed();
        publisher.stop(Duration::ZERO);
        flusher.stop();
        n as f64 / elapsed.as_secs_f64()
    };
    row(
        &format!("durable publish (QoS 1, inflight {INFLIGHT}), {n} events (events/s)"),
        format!("{publish_rate:.0}"),
        format!("{raw_rate:.0} (raw QoS 1)"),
        publish_rate / raw_rate,
    );

    // 3. A pole's pace: one event every 50 ms.
    let n = 200 / scale;
    let append_trickle = {
        let dir = root.join("append-trickle");
        fresh(&dir);
        sync_disk();
        let before = write_bytes();
        let log = AppendLog::create(&dir.join("log"));
        for id in 1..=n {
            log.push(id, health(id));
            std::thread::sleep(Duration::from_millis(50));
        }
        log.close();
        (write_bytes() - before) as f64 / n as f64
    };
    let outbox_trickle = {
        let outbox = open(&root.join("trickle"));
        let flusher = outbox.spawn_flusher(FLUSH).unwrap();
        let publisher = start_publisher(broker.port, &outbox);
        std::thread::sleep(Duration::from_millis(300));
        sync_disk();
        let before = write_bytes();
        for i in 0..n {
            outbox.push(health(i)).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        wait_empty(&outbox, Duration::from_secs(30));
        publisher.stop(Duration::ZERO);
        flusher.stop();
        (write_bytes() - before) as f64 / n as f64
    };
    row(
        "bytes written per event at 20 events/s (store + delete)",
        format!("{outbox_trickle:.0}"),
        format!("{append_trickle:.0} (append, no delete)"),
        outbox_trickle / append_trickle,
    );

    // 4. Drain a backlog.
    let n = 100_000 / scale;
    let (drain_rate, drain_s, size) = {
        let outbox = open(&root.join("drain"));
        for i in 0..n {
            outbox.push(health(i)).unwrap();
        }
        outbox.commit().unwrap();
        let size = dir_size(&root.join("drain/outbox"));
        let flusher = outbox.spawn_flusher(FLUSH).unwrap();
        let started = Instant::now();
        let publisher = start_publisher(broker.port, &outbox);
        wait_empty(&outbox, Duration::from_secs(900));
        let elapsed = started.elapsed();
        publisher.stop(Duration::ZERO);
        flusher.stop();
        (
            n as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64(),
            size,
        )
    };
    let append_size = {
        let dir = root.join("append-drain");
        fresh(&dir);
        let log = AppendLog::create(&dir.join("log"));
        for id in 1..=n {
            log.push(id, health(id));
        }
        log.close();
        dir_size(&dir)
    };
    row(
        &format!("backlog of {n} drained (events/s; {drain_s:.1} s)"),
        format!("{drain_rate:.0}"),
        format!("{raw_rate:.0} (raw QoS 1)"),
        drain_rate / raw_rate,
    );
    row(
        &format!("store size for {n} events (MB)"),
        format!("{:.1}", size as f64 / 1e6),
        format!("{:.1} (append)", append_size as f64 / 1e6),
        size as f64 / append_size as f64,
    );

    println!("\n| measure | outbox (SQLite) | reference (same run) | ratio |");
    println!("|---|---|---|---|");
    for line in table {
        println!("{line}");
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&root);
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}
