//! Outbox benchmark against a real Mosquitto on a loopback port:
//!
//! 1. durable commit rate: events pushed as fast as possible, made durable
//!    by the flusher every `flush_ms` (no broker);
//! 2. sustained durable publish rate: events pushed, committed, published
//!    at QoS 1 and deleted on PUBACK, until the outbox is empty;
//! 3. time to drain a 100,000-event backlog built while the broker was
//!    away;
//! 4. bytes written to disk per event (`write_bytes` of `/proc/self/io`,
//!    which counts every thread of this process: the store and its
//!    flushes), at full speed and at a pole's pace (20 events/s, where each
//!    commit carries only one event).
//!
//! Each is run for both stores the outbox supports: sled (the default) and
//! redb (the alternative), through the same code path.
//!
//! Run: `cargo bench --bench outbox` (needs `mosquitto`, installed by
//! `tests/setup`). Event size: a ~230-byte `health` event, as the daemon
//! sends.

#[path = "../../tests/support/broker.rs"]
mod broker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use luciole::events::{Body, Health, Origin};
use luciole::outbox::ledger::Limits;
use luciole::outbox::store::Backend;
use luciole::outbox::{Outbox, OutboxSettings};
use luciole::publish::{MqttSettings, Publisher};
use luciole::shutdown::Shutdown;

const FLUSH: Duration = Duration::from_millis(50);

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

fn open(dir: &Path, backend: Backend) -> Arc<Outbox> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let settings = OutboxSettings {
        path: dir.join("outbox"),
        backend,
        limits: Limits {
            max_bytes: 1 << 30,
            retention_ms: 24 * 3600 * 1000,
        },
        flush_every: FLUSH,
    };
    Arc::new(Outbox::open(&settings, origin()).unwrap())
}

fn mqtt(port: u16) -> MqttSettings {
    MqttSettings {
        protocol: Default::default(),
        host: "127.0.0.1".into(),
        port,
        tls: None,
        username: None,
        password_file: None,
        client_id: "luciole-bench".into(),
        topic_prefix: "luciole".into(),
        keep_alive: Duration::from_secs(30),
        reconnect: luciole::backoff::Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_secs(1),
        },
        inflight: 32,
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

fn main() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("outbox-bench");
    let _ = std::fs::remove_dir_all(&root);
    let broker = broker::Broker::start(&root.join("broker"));
    for backend in [Backend::Sled, Backend::Redb] {
        bench(&root.join(backend.name()), backend, broker.port);
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&root);
}

fn bench(root: &Path, backend: Backend, port: u16) {
    let event_len = origin().event(1, 0, health(1)).encode().len();
    println!(
        "outbox benchmark: {} (flush every {FLUSH:?}, event {event_len} bytes of JSON)",
        backend.name()
    );

    // 1. Commit only.
    {
        let outbox = open(&root.join("commit"), backend);
        let stop = Shutdown::new();
        let flusher = outbox.spawn_flusher(FLUSH, stop.clone()).unwrap();
        sync_disk();
        let n = 50_000;
        let before = write_bytes();
        let started = Instant::now();
        for i in 0..n {
            outbox.push(health(i)).unwrap();
        }
        let last = outbox.commit().unwrap();
        let elapsed = started.elapsed();
        stop.request();
        flusher.join().unwrap();
        drop(outbox);
        let written = write_bytes() - before;
        assert_eq!(last, n);
        println!(
            "  durable commit: {n} events in {:.2} s = {:.0} events/s; {:.0} bytes written per event",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64(),
            written as f64 / n as f64
        );
    }

    // 2. Sustained publish: push, commit, publish, PUBACK, delete.
    {
        let outbox = open(&root.join("publish"), backend);
        let stop = Shutdown::new();
        let flusher = outbox.spawn_flusher(FLUSH, stop.clone()).unwrap();
        let publisher =
            Publisher::start(&mqtt(port), origin(), Arc::clone(&outbox), stop.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        sync_disk();
        let n = 20_000;
        let before = write_bytes();
        let started = Instant::now();
        for i in 0..n {
            outbox.push(health(i)).unwrap();
        }
        wait_empty(&outbox, Duration::from_secs(300));
        let elapsed = started.elapsed();
        let written = write_bytes() - before;
        stop.request();
        flusher.join().unwrap();
        publisher.join();
        println!(
            "  durable publish (QoS 1, inflight 32): {n} events acknowledged in {:.2} s = {:.0} events/s; {:.0} bytes written per event (store + delete)",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64(),
            written as f64 / n as f64
        );
    }

    // 4. A pole's pace: one event every 50 ms, published as it comes.
    {
        let outbox = open(&root.join("trickle"), backend);
        let stop = Shutdown::new();
        let flusher = outbox.spawn_flusher(FLUSH, stop.clone()).unwrap();
        let publisher =
            Publisher::start(&mqtt(port), origin(), Arc::clone(&outbox), stop.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        sync_disk();
        let n = 200;
        let before = write_bytes();
        for i in 0..n {
            outbox.push(health(i)).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        wait_empty(&outbox, Duration::from_secs(30));
        std::thread::sleep(FLUSH * 2);
        let written = write_bytes() - before;
        stop.request();
        flusher.join().unwrap();
        publisher.join();
        println!(
            "  at 20 events/s, published as they come: {:.0} bytes written per event (store + delete)",
            written as f64 / n as f64
        );
    }

    // 3. Drain a 100,000-event backlog.
    {
        let outbox = open(&root.join("drain"), backend);
        let n = 100_000;
        for i in 0..n {
            outbox.push(health(i)).unwrap();
        }
        outbox.commit().unwrap();
        let size = dir_size(&root.join("drain/outbox"));
        let stop = Shutdown::new();
        let flusher = outbox.spawn_flusher(FLUSH, stop.clone()).unwrap();
        let started = Instant::now();
        let publisher =
            Publisher::start(&mqtt(port), origin(), Arc::clone(&outbox), stop.clone()).unwrap();
        wait_empty(&outbox, Duration::from_secs(600));
        let elapsed = started.elapsed();
        stop.request();
        flusher.join().unwrap();
        publisher.join();
        println!(
            "  backlog drain: {n} events in {:.2} s = {:.0} events/s (store on disk before: {:.1} MB)",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64(),
            size as f64 / 1e6
        );
    }
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
