//! SD-card wear: bytes written to disk per event at a pole's pace, through
//! the real outbox (push, durable commit by its flusher, acknowledgement
//! and deletion as the publisher does on PUBACK), on a real filesystem.
//!
//! Bytes written are `write_bytes` of `/proc/self/io` (every thread of this
//! process: the store's writes and fsyncs, counted by the kernel as pages are
//! dirtied), over the whole run, divided by the events pushed; the ratio is
//! to the event's own encoded size. Events are `crossing` events of about
//! 330 bytes, as the daemon sends one per counted passage.
//!
//! Run (in the background; it is mostly idle):
//!
//! ```text
//! cargo run --profile emulated --example wear -- --rate 20 --seconds 600 --dir /var/tmp/wear-20
//! cargo run --profile emulated --example wear -- --rate 1 --seconds 600 --dir /var/tmp/wear-1
//! ```
//!
//! Options: `--flush-ms N` (the outbox's commit period, default 1000, the
//! shipped default), `--store append` (a plain append-only file with
//! `fdatasync` at the same period and no deletions: the least any durable
//! store can write), `--cache-bytes N`. Figures: docs/performance.md.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use luciole::events::{self, Body, Crossing, Origin};
use luciole::outbox::ledger::Limits;
use luciole::outbox::{Outbox, OutboxSettings};

struct Args {
    rate: f64,
    seconds: u64,
    dir: PathBuf,
    flush_ms: u64,
    store: String,
    cache_bytes: u64,
}

fn args() -> Args {
    let mut out = Args {
        rate: 20.0,
        seconds: 600,
        dir: std::env::temp_dir().join("luciole-wear"),
        flush_ms: 1000,
        store: "outbox".into(),
        cache_bytes: OutboxSettings::default().cache_bytes,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--rate" => out.rate = value().parse().expect("--rate: events per second"),
            "--seconds" => out.seconds = value().parse().expect("--seconds"),
            "--dir" => out.dir = value().into(),
            "--flush-ms" => out.flush_ms = value().parse().expect("--flush-ms"),
            "--store" => out.store = value(),
            "--cache-bytes" => out.cache_bytes = value().parse().expect("--cache-bytes"),
            // cargo bench passes --bench.
            "--bench" => {}
            other => panic!("unknown option {other}"),
        }
    }
    out
}

fn origin() -> Origin {
    Origin {
        site: "bench-site".into(),
        device: "pole-0001".into(),
    }
}

fn crossing(n: u64) -> Body {
    Body::Crossing(Crossing {
        line: "main-street-crossing".into(),
        direction: "east_to_west".into(),
        class: "person".into(),
        track: Some(10_000 + n as u32),
        at: events::rfc3339_ms(events::now_ms()),
        position: Some([431.5, 301.25]),
        speed_px_s: 61.25,
        speed_m_s: Some(1.32),
    })
}

fn write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io is readable");
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("write_bytes in /proc/self/io")
}

fn main() {
    let args = args();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir).unwrap();
    let event_size = origin().event(1, 0, crossing(0)).encode().len() as u64;
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let flush = Duration::from_millis(args.flush_ms);
    let total = (args.rate * args.seconds as f64) as u64;
    let started = Instant::now();
    let before = write_bytes();
    match args.store.as_str() {
        "outbox" => {
            let settings = OutboxSettings {
                path: args.dir.join("outbox"),
                limits: Limits {
                    max_bytes: 1 << 30,
                    retention_ms: 24 * 3600 * 1000,
                },
                flush_every: flush,
                cache_bytes: args.cache_bytes,
            };
            let outbox = Arc::new(Outbox::open(&settings, origin()).unwrap());
            let flusher = outbox.spawn_flusher(flush).unwrap();
            // The publisher's part: every committed event is acknowledged
            // (deleted) as soon as it is published.
            let commits = outbox.on_commit();
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let acker = {
                let outbox = Arc::clone(&outbox);
                let done = Arc::clone(&done);
                std::thread::spawn(move || {
                    let mut acked = outbox.committed();
                    while !done.load(std::sync::atomic::Ordering::SeqCst) {
                        if commits.recv_timeout(Duration::from_millis(200)).is_err() {
                            continue;
                        }
                        let upto = outbox.committed();
                        for id in acked + 1..=upto {
                            outbox.ack(id).unwrap();
                        }
                        acked = upto;
                    }
                })
            };
            for n in 0..total {
                let due = started + period.mul_f64(n as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                outbox.push(crossing(n)).unwrap();
            }
            // The last events' acknowledgements, then the final commit.
            std::thread::sleep(flush * 4);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            acker.join().unwrap();
            flusher.stop();
            drop(outbox);
        }
        "append" => {
            let mut file = std::fs::File::create(args.dir.join("append.log")).unwrap();
            let mut last_sync = Instant::now();
            let mut pending = false;
            for n in 0..total {
                let due = started + period.mul_f64(n as f64);
                while let Some(wait) = due.checked_duration_since(Instant::now()) {
                    if pending && last_sync.elapsed() >= flush {
                        file.sync_data().unwrap();
                        pending = false;
                    }
                    std::thread::sleep(wait.min(flush));
                }
                file.write_all(&origin().event(n + 1, 0, crossing(n)).encode())
                    .unwrap();
                if !pending {
                    last_sync = Instant::now();
                }
                pending = true;
            }
            file.sync_data().unwrap();
        }
        other => panic!("--store {other}: outbox or append"),
    }
    let _ = std::process::Command::new("sync").status();
    let written = write_bytes() - before;
    report(&args, total, started, written, event_size);
}

fn report(args: &Args, total: u64, started: Instant, written: u64, event_size: u64) {
    let per_event = written as f64 / total as f64;
    println!(
        "store {} rate {}/s flush {} ms: {} events in {:.0} s, {} bytes written, {:.0} B/event, event {} B, ratio {:.1}",
        args.store,
        args.rate,
        args.flush_ms,
        total,
        started.elapsed().as_secs_f64(),
        written,
        per_event,
        event_size,
        per_event / event_size as f64
    );
}
