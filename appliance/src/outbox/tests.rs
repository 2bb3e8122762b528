use super::*;
use crate::events::{ErrorReport, Status};

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("luciole-outbox-unit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("outbox")
}

fn settings(path: &Path, max_bytes: u64, retention_ms: u64) -> OutboxSettings {
    OutboxSettings {
        path: path.to_owned(),
        limits: Limits {
            max_bytes,
            retention_ms,
        },
        flush_every: Duration::from_millis(10),
        cache_bytes: 4 << 20,
    }
}

const BOOT: clock::BootId = [7; 16];

/// Both clocks at `ms` (wall clock in step with the boot clock).
fn at(ms: u64) -> Now {
    Now {
        wall_ms: ms,
        boot_ms: ms,
        boot: BOOT,
    }
}

fn fake_clock(now: Now) -> (Arc<Mutex<Now>>, Box<dyn Clock>) {
    struct Shared(Arc<Mutex<Now>>);
    impl Clock for Shared {
        fn now(&self) -> Now {
            *lock(&self.0)
        }
    }
    let shared = Arc::new(Mutex::new(now));
    (Arc::clone(&shared), Box::new(Shared(shared)))
}

fn origin() -> Origin {
    Origin {
        site: "lyon".into(),
        device: "pole-7".into(),
    }
}

fn error(n: u32) -> Body {
    Body::Error(ErrorReport {
        code: crate::events::ErrorCode::PipelineFailed,
        message: format!("event {n}"),
    })
}

fn kinds_and_ids(outbox: &Outbox) -> Vec<(u64, String)> {
    outbox
        .all()
        .map(|e| {
            let e = e.unwrap();
            (e.id, e.body.kind().to_string())
        })
        .collect()
}

#[test]
fn ids_continue_across_restarts_even_when_everything_was_acknowledged() {
    let path = scratch("ids");
    let s = settings(&path, 1 << 20, u64::MAX);
    {
        let outbox = Outbox::open(&s, origin()).unwrap();
        for n in 0..3 {
            assert_eq!(outbox.push(error(n)).unwrap(), u64::from(n) + 1);
        }
        outbox.commit().unwrap();
        for id in 1..=3 {
            outbox.ack(id).unwrap();
        }
        outbox.commit().unwrap();
    }
    let outbox = Outbox::open(&s, origin()).unwrap();
    assert_eq!(outbox.depth(), 0);
    assert_eq!(outbox.push(error(9)).unwrap(), 4);
}

#[test]
fn only_committed_events_are_offered_and_in_id_order() {
    let path = scratch("offer");
    let outbox = Outbox::open(&settings(&path, 1 << 20, u64::MAX), origin()).unwrap();
    for n in 0..5 {
        outbox.push(error(n)).unwrap();
    }
    assert!(outbox.committed_after(0, 100).unwrap().is_empty());
    assert!(outbox.uncommitted());
    assert_eq!(outbox.commit().unwrap(), 5);
    let offered: Vec<u64> = outbox
        .committed_after(1, 3)
        .unwrap()
        .into_iter()
        .map(|(id, kind, json)| {
            assert_eq!(kind, "error");
            assert_eq!(Event::decode(id, &json).unwrap().id, id);
            id
        })
        .collect();
    assert_eq!(offered, vec![2, 3, 4]);
}

#[test]
fn acknowledged_events_are_gone_after_a_restart_and_the_rest_remain() {
    let path = scratch("ack");
    let s = settings(&path, 1 << 20, u64::MAX);
    {
        let outbox = Outbox::open(&s, origin()).unwrap();
        for n in 0..4 {
            outbox.push(error(n)).unwrap();
        }
        outbox.ack(2).unwrap();
        outbox.ack(3).unwrap();
        outbox.commit().unwrap();
    }
    let outbox = Outbox::open(&s, origin()).unwrap();
    let ids: Vec<u64> = kinds_and_ids(&outbox)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, vec![1, 4]);
    let summary = outbox.summary().unwrap();
    assert_eq!(summary.count, 2);
    assert_eq!(summary.oldest.unwrap().id, 1);
    assert_eq!(summary.newest.unwrap().id, 4);
    assert_eq!(outbox.oldest_id(), Some(1));
}

#[test]
fn a_full_outbox_drops_the_oldest_and_says_which_with_a_dropped_event() {
    let path = scratch("full");
    let outbox = Outbox::open(&settings(&path, 2000, u64::MAX), origin()).unwrap();
    for n in 0..40 {
        outbox.push(error(n)).unwrap();
    }
    let check = |outbox: &Outbox| {
        let events: Vec<Event> = outbox.all().map(Result::unwrap).collect();
        assert!(outbox.summary().unwrap().bytes <= 2000);
        let last = events.last().unwrap().id;
        // Every id ever given is held, or counted by exactly one held
        // `dropped` event (whose own deletion folds into a later one).
        let lost: u64 = events
            .iter()
            .map(|e| match &e.body {
                Body::Dropped(d) => {
                    assert_eq!(d.reason, "overflow");
                    assert!(d.first_id <= d.last_id, "{d:?}");
                    d.count
                }
                _ => 0,
            })
            .sum();
        assert!(lost > 0);
        assert_eq!(events.len() as u64 + lost, last, "{events:#?}");
    };
    check(&outbox);
    outbox.commit().unwrap();
    drop(outbox);
    let outbox = Outbox::open(&settings(&path, 2000, u64::MAX), origin()).unwrap();
    for n in 40..60 {
        outbox.push(error(n)).unwrap();
    }
    check(&outbox);
}

#[test]
fn events_older_than_the_retention_expire_into_a_dropped_event() {
    let path = scratch("expire");
    let outbox = Outbox::open(&settings(&path, 1 << 20, 60_000), origin()).unwrap();
    outbox.push_at(error(0), at(1_000_000)).unwrap();
    outbox.push_at(error(1), at(1_030_000)).unwrap();
    outbox.push_at(error(2), at(1_065_000)).unwrap();
    let events: Vec<Event> = outbox.all().map(Result::unwrap).collect();
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![2, 3, 4], "event 1 expired, 3 reports it");
    let Body::Dropped(d) = &events[1].body else {
        panic!("{events:?}")
    };
    assert_eq!(
        (d.reason.as_str(), d.count, d.first_id, d.last_id),
        ("expired", 1, 1, 1)
    );
    assert_eq!(d.from, crate::events::rfc3339_ms(1_000_000));
}

#[test]
fn scribbled_data_ends_in_an_alert_and_ids_above_the_lost_ones() {
    let path = scratch("corrupt");
    let s = settings(&path, 1 << 20, u64::MAX);
    {
        let outbox = Outbox::open(&s, origin()).unwrap();
        for n in 0..10 {
            outbox.push(error(n)).unwrap();
        }
        outbox.commit().unwrap();
    }
    // Scribble over the data, as a failing SD card would.
    let data = path.join(store::DB_FILE);
    let len = std::fs::metadata(&data).unwrap().len() as usize;
    std::fs::write(&data, vec![0xA5; len.max(4096)]).unwrap();
    // The store is either refused (moved aside) or opens without the
    // data; both must end in an alert and ids above every old one.
    let outbox = Outbox::open(&s, origin()).unwrap();
    let events: Vec<Event> = outbox.all().map(Result::unwrap).collect();
    let Some(Body::Alert(alert)) = events.last().map(|e| &e.body) else {
        panic!("{events:?}")
    };
    assert!(
        ["outbox_corrupted", "outbox_lost_events"].contains(&alert.code.as_str()),
        "{alert:?}"
    );
    assert!(events.iter().all(|e| e.id > 10 || e.body.kind() != "alert"));
    assert!(
        events.last().unwrap().id > 10,
        "ids continue above the lost ones"
    );
    assert_eq!(
        outbox.committed(),
        events.last().unwrap().id,
        "the alert is committed"
    );
}

#[test]
fn an_outbox_reopened_before_anything_was_committed_has_lost_nothing() {
    let path = scratch("reopen-fresh");
    let s = settings(&path, 1 << 20, u64::MAX);
    // A pole killed before its first commit leaves a fresh store and the
    // id reservation beside it.
    drop(Outbox::open(&s, origin()).unwrap());
    let outbox = Outbox::open(&s, origin()).unwrap();
    assert_eq!(outbox.depth(), 0, "no alert: {:?}", kinds_and_ids(&outbox));
    assert_eq!(outbox.push(error(0)).unwrap(), 1, "ids start at 1");
}

#[test]
fn an_unreadable_outbox_is_moved_aside_and_a_fresh_one_starts_with_an_alert() {
    let path = scratch("unreadable");
    let s = settings(&path, 1 << 20, u64::MAX);
    {
        let outbox = Outbox::open(&s, origin()).unwrap();
        for n in 0..10 {
            outbox.push(error(n)).unwrap();
        }
        outbox.commit().unwrap();
    }
    // A newer firmware's layout, as after a rollback.
    rusqlite::Connection::open(path.join(store::DB_FILE))
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    assert!(matches!(
        Outbox::inspect(&s, origin()),
        Err(OutboxError::Open { .. })
    ));
    let outbox = Outbox::open(&s, origin()).unwrap();
    let events: Vec<Event> = outbox.all().map(Result::unwrap).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let Body::Alert(alert) = &events[0].body else {
        panic!("{events:?}")
    };
    assert_eq!(alert.code, "outbox_corrupted");
    assert!(events[0].id > 10, "ids continue above the lost ones");
    let parent = path.parent().unwrap();
    let aside: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("outbox.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
}

#[test]
fn a_sled_store_of_an_earlier_firmware_is_moved_aside_with_an_alert() {
    let path = scratch("sled");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("conf"), b"segment_size: 524288\n").unwrap();
    std::fs::write(path.join("db"), vec![0u8; 4096]).unwrap();
    let outbox = Outbox::open(&settings(&path, 1 << 20, u64::MAX), origin()).unwrap();
    let events: Vec<Event> = outbox.all().map(Result::unwrap).collect();
    let [Event {
        body: Body::Alert(alert),
        ..
    }] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    assert_eq!(alert.code, "outbox_corrupted");
    assert!(
        !path.join("conf").exists(),
        "the sled files went with the old folder"
    );
    assert!(path.join(store::DB_FILE).exists());
}

#[test]
fn a_store_just_created_is_locked_against_a_second_opener() {
    let path = scratch("lock");
    let first = store::Store::open(&path, 1 << 20).unwrap();
    first.apply(&[(1, b"x".to_vec())], &[], 2).unwrap();
    first.flush().unwrap();
    assert!(matches!(
        store::Store::open(&path, 1 << 20),
        Err(store::StoreError::Locked(_))
    ));
    drop(first);
    let again = store::Store::open(&path, 1 << 20).unwrap();
    assert_eq!(again.next_id().unwrap(), Some(2));
}

#[test]
fn inspecting_a_missing_outbox_creates_nothing() {
    let path = scratch("missing");
    let err = Outbox::inspect(&settings(&path, 1 << 20, u64::MAX), origin())
        .err()
        .unwrap();
    assert!(err.to_string().contains("no outbox here"), "{err}");
    assert!(!path.exists());
}

#[test]
fn status_events_round_trip_through_the_store() {
    let path = scratch("status");
    let outbox = Outbox::open(&settings(&path, 1 << 20, u64::MAX), origin()).unwrap();
    let body = Body::Status(Status {
        state: "started".into(),
        version: "0.1.0".into(),
        detail: "test".into(),
    });
    let id = outbox.push(body.clone()).unwrap();
    let event = outbox.get(id).unwrap().unwrap();
    assert_eq!(event.body, body);
    assert_eq!(
        (event.site.as_str(), event.device.as_str()),
        ("lyon", "pole-7")
    );
}

#[test]
fn a_commit_that_makes_events_publishable_signals_every_listener_once() {
    let path = scratch("signal");
    let outbox = Outbox::open(&settings(&path, 1 << 20, u64::MAX), origin()).unwrap();
    let (first, second) = (outbox.on_commit(), outbox.on_commit());
    outbox.commit().unwrap();
    assert!(first.try_recv().is_err(), "nothing new, no signal");
    outbox.push(error(0)).unwrap();
    assert!(first.try_recv().is_err(), "written is not publishable");
    outbox.commit().unwrap();
    outbox.push(error(1)).unwrap();
    outbox.commit().unwrap();
    for listener in [&first, &second] {
        assert!(listener.try_recv().is_ok());
        assert!(listener.try_recv().is_err(), "signals coalesce");
    }
    outbox.ack(1).unwrap();
    outbox.commit().unwrap();
    assert!(first.try_recv().is_err(), "a deletion publishes nothing");
    drop(second);
    outbox.push(error(2)).unwrap();
    outbox.commit().unwrap();
    assert!(first.try_recv().is_ok());
    assert_eq!(
        lock(&outbox.commit_listeners).len(),
        1,
        "dropped listeners are forgotten"
    );
}

#[test]
fn the_flusher_commits_writes_within_its_period_and_what_is_left_when_stopped() {
    let path = scratch("flusher");
    let outbox = Arc::new(Outbox::open(&settings(&path, 1 << 20, u64::MAX), origin()).unwrap());
    let commits = outbox.on_commit();
    let flusher = outbox.spawn_flusher(Duration::from_millis(20)).unwrap();
    let pushed = std::time::Instant::now();
    outbox.push(error(0)).unwrap();
    commits
        .recv_timeout(Duration::from_secs(5))
        .expect("the flusher committed");
    assert!(
        pushed.elapsed() >= Duration::from_millis(20),
        "writes are grouped"
    );
    assert_eq!(outbox.committed(), 1);
    outbox.ack(1).unwrap();
    outbox.push(error(1)).unwrap();
    flusher.stop();
    assert!(!outbox.uncommitted(), "stopping commits what is left");
    assert_eq!(outbox.committed(), 2);
}

#[test]
fn a_store_held_elsewhere_is_refused_after_a_bounded_wait_and_opens_once_released() {
    let path = scratch("locked");
    let held = store::Store::open(&path, 4 << 20).unwrap();
    let started = std::time::Instant::now();
    match store::Store::open(&path, 4 << 20) {
        Err(err @ store::StoreError::Locked(_)) => {
            assert!(err.to_string().contains("locked"), "{err}")
        }
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second handle opened a locked store"),
    }
    assert!(started.elapsed() >= Duration::from_secs(2));

    // Released while the second open is waiting: it gets the store.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
    });
    store::Store::open(&path, 4 << 20).unwrap();
    release.join().unwrap();
}

#[test]
fn a_failed_write_gives_no_id_and_leaves_no_entry_and_a_reopen_reports_it() {
    let path = scratch("write-first");
    let outbox = Outbox::open(&settings(&path, 1 << 20, u64::MAX), origin()).unwrap();
    assert_eq!(outbox.push(error(0)).unwrap(), 1);
    outbox.commit().unwrap();
    let fail = |on: bool| {
        let db = outbox.db();
        db.as_ref().unwrap().fail_writes.store(on, Ordering::SeqCst);
    };
    fail(true);
    assert!(matches!(
        outbox.push(error(1)),
        Err(OutboxError::Store { .. })
    ));
    assert_eq!(outbox.depth(), 1, "no phantom entry");
    assert_eq!(lock(&outbox.state).next_id, 2, "no id given");
    assert!(outbox.broken());
    // Until the store is reopened, nothing is written (and nothing given).
    assert!(matches!(
        outbox.push(error(2)),
        Err(OutboxError::Unavailable { .. })
    ));
    outbox.ack(1).unwrap();
    assert_eq!(outbox.depth(), 1, "the deletion waits for the reopen");
    assert!(outbox.recover());
    assert!(!outbox.broken());
    let events: Vec<Event> = outbox.all().map(Result::unwrap).collect();
    assert_eq!(
        events.len(),
        1,
        "event 1 deleted after the reopen: {events:?}"
    );
    let Body::Alert(alert) = &events[0].body else {
        panic!("{events:?}")
    };
    assert_eq!(
        (events[0].id, alert.code.as_str()),
        (2, "outbox_disk_error")
    );
    assert!(
        alert.message.contains("2 event(s) made from"),
        "{}",
        alert.message
    );
    assert_eq!(outbox.push(error(3)).unwrap(), 3);
}

#[test]
fn a_failed_commit_stops_writing_until_the_flusher_reopens_the_store() {
    let path = scratch("flusher-recovers");
    let outbox = Arc::new(Outbox::open(&settings(&path, 1 << 20, u64::MAX), origin()).unwrap());
    let commits = outbox.on_commit();
    let flusher = outbox.spawn_flusher(Duration::from_millis(5)).unwrap();
    outbox.push(error(0)).unwrap();
    commits.recv_timeout(Duration::from_secs(10)).unwrap();
    outbox
        .db()
        .as_ref()
        .unwrap()
        .fail_writes
        .store(true, Ordering::SeqCst);
    // The write fails; the flusher reopens the store and reports it.
    assert!(outbox.push(error(1)).is_err());
    let deadline = Instant::now() + Duration::from_secs(20);
    while outbox.committed() < 2 {
        assert!(Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(20));
    }
    flusher.stop();
    let kinds = kinds_and_ids(&outbox);
    assert_eq!(kinds, vec![(1, "error".into()), (2, "alert".into())]);
}

#[test]
fn a_clock_jump_in_either_direction_neither_expires_nor_keeps_events() {
    let path = scratch("jumps");
    let (clock, boxed) = fake_clock(at(1_000_000));
    let outbox =
        Outbox::open_with_clock(&settings(&path, 1 << 20, 60_000), origin(), boxed).unwrap();
    let push = |wall_ms: u64, boot_ms: u64| {
        let now = Now {
            wall_ms,
            boot_ms,
            boot: BOOT,
        };
        *lock(&clock) = now;
        outbox.push_at(error(0), now).unwrap()
    };
    push(1_000_000, 1_000_000);
    // NTP sets the wall clock three days ahead: nothing expires.
    push(1_000_000 + 3 * 86_400_000, 1_001_000);
    // And back by a day and a half: still nothing expires.
    push(1_000_000 + 86_400_000 - 86_400_000 / 2, 1_002_000);
    assert_eq!(outbox.depth(), 3);
    // 61 s of boot clock later, the first two have expired.
    push(5, 1_061_500);
    let events: Vec<Event> = outbox.all().map(Result::unwrap).collect();
    let ids: Vec<(u64, &str)> = events.iter().map(|e| (e.id, e.body.kind())).collect();
    assert_eq!(
        ids,
        vec![(3, "error"), (4, "dropped"), (5, "error")],
        "{events:#?}"
    );
    let held = outbox.held();
    let first = held[0].as_ref().unwrap();
    assert!(first.this_boot);
    assert_eq!(first.age_ms, 59_500);
    assert_eq!(first.expires_in_ms, 500);
}

#[test]
fn events_of_an_earlier_boot_age_from_this_boot_and_old_records_are_read() {
    let path = scratch("reboot");
    let s = settings(&path, 1 << 20, 60_000);
    {
        let (_, boxed) = fake_clock(at(500_000));
        let outbox = Outbox::open_with_clock(&s, origin(), boxed).unwrap();
        outbox.push_at(error(0), at(500_000)).unwrap();
        outbox.commit().unwrap();
        // A record of the first storage format (8 bytes of time, JSON).
        let json = origin().event(2, 400_000, error(1)).encode();
        let mut value = 400_000u64.to_be_bytes().to_vec();
        value.extend_from_slice(&json);
        let db = outbox.db();
        let db = db.as_ref().unwrap();
        db.apply(&[(2, value)], &[], 3).unwrap();
        db.flush().unwrap();
    }
    // Another boot, 10 s in, with a wall clock a year ahead.
    let rebooted = Now {
        wall_ms: 500_000 + 365 * 86_400_000,
        boot_ms: 10_000,
        boot: [8; 16],
    };
    let (clock, boxed) = fake_clock(rebooted);
    let outbox = Outbox::open_with_clock(&s, origin(), boxed).unwrap();
    let held = outbox.held();
    assert_eq!(held.len(), 2, "{held:?}");
    for h in &held {
        let h = h.as_ref().unwrap();
        assert!(!h.this_boot);
        assert_eq!(h.age_ms, 10_000, "aged from this boot's start");
    }
    assert_eq!(held[1].as_ref().unwrap().boot, None, "first format");
    outbox.push_at(error(2), rebooted).unwrap();
    assert_eq!(outbox.depth(), 3, "nothing expired by the wall clock");
    let later = Now {
        boot_ms: 60_001,
        ..rebooted
    };
    *lock(&clock) = later;
    outbox.push_at(error(3), later).unwrap();
    let kinds: Vec<String> = kinds_and_ids(&outbox).into_iter().map(|(_, k)| k).collect();
    assert_eq!(kinds, vec!["error", "dropped", "error"]);
}

#[test]
fn an_unreadable_record_is_set_aside_reported_and_skipped_and_the_rest_is_offered() {
    let path = scratch("future");
    let s = settings(&path, 1 << 20, u64::MAX);
    let outbox = Outbox::open(&s, origin()).unwrap();
    for n in 0..3 {
        outbox.push(error(n)).unwrap();
    }
    outbox.commit().unwrap();
    // Event 2 rewritten as a newer firmware would have stored it.
    let future = r#"{"schema":3,"id":2,"time":"2026-01-01T00:00:00.000Z","site":"lyon","device":"pole-7","kind":"hologram","data":{}}"#;
    let value = encode_value(&at(events::now_ms()), future.as_bytes());
    {
        let db = outbox.db();
        db.as_ref().unwrap().apply(&[(2, value)], &[], 4).unwrap();
    }
    let offered: Vec<(u64, String)> = outbox
        .committed_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|(id, kind, _)| (id, kind))
        .collect();
    assert_eq!(offered, vec![(1, "error".into()), (3, "error".into())]);
    // Reported by a `dropped` event, published after the next commit.
    outbox.commit().unwrap();
    let next = outbox.committed_after(3, 10).unwrap();
    assert_eq!(next.len(), 1);
    let dropped = Event::decode(next[0].0, &next[0].2).unwrap();
    let Body::Dropped(d) = dropped.body else {
        panic!("{dropped:?}")
    };
    assert_eq!(
        (d.reason.as_str(), d.first_id, d.last_id, d.count),
        ("unreadable", 2, 2, 1)
    );
    // Set aside once, not offered again.
    assert!(outbox
        .committed_after(0, 10)
        .unwrap()
        .iter()
        .all(|(id, ..)| *id != 2));
    let summary = outbox.summary().unwrap();
    assert_eq!(summary.set_aside, vec![2]);
    assert!(summary.unreadable.is_empty());
}

#[test]
fn an_unreadable_dropped_event_and_damaged_bytes_do_not_stop_the_outbox_opening() {
    let path = scratch("bad-dropped");
    let s = settings(&path, 1 << 20, u64::MAX);
    {
        let outbox = Outbox::open(&s, origin()).unwrap();
        outbox.push(error(0)).unwrap();
        let db = outbox.db();
        let db = db.as_ref().unwrap();
        let broken_dropped =
            br#"{"schema":2,"id":2,"kind":"dropped","data":{"reason":"overflow"}}"#;
        let value = encode_value(&at(1), broken_dropped);
        db.apply(&[(2, value), (3, vec![0xA5; 40])], &[], 4)
            .unwrap();
        db.flush().unwrap();
    }
    let inspected = Outbox::inspect(&s, origin()).unwrap();
    let unreadable: Vec<u64> = inspected
        .summary()
        .unwrap()
        .unreadable
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(unreadable, vec![2, 3]);
    drop(inspected);
    let outbox = Outbox::open(&s, origin()).unwrap();
    let events: Vec<Event> = outbox.all().map(Result::unwrap).collect();
    let ids: Vec<(u64, &str)> = events.iter().map(|e| (e.id, e.body.kind())).collect();
    assert_eq!(ids, vec![(1, "error"), (4, "dropped")]);
    let Body::Dropped(d) = &events[1].body else {
        unreachable!()
    };
    assert_eq!(
        (d.reason.as_str(), d.first_id, d.last_id, d.count),
        ("unreadable", 2, 3, 2)
    );
    assert_eq!(outbox.summary().unwrap().set_aside, vec![2, 3]);
}

#[test]
fn a_large_flow_is_stored_in_parts_that_each_fit() {
    let path = scratch("parts");
    let outbox = Outbox::open(&settings(&path, 1 << 20, u64::MAX), origin()).unwrap();
    let mut lines = Vec::new();
    for l in 0..600 {
        lines.push(crate::events::FlowCount {
            line: format!("line-{l}"),
            direction: "north_to_south".into(),
            class: "car".into(),
            count: 3,
        });
    }
    let flow = crate::events::Flow {
        from: events::rfc3339_ms(0),
        to: events::rfc3339_ms(60_000),
        interval_s: 60.0,
        lines,
        zones: Vec::new(),
        speeds: Vec::new(),
        part: None,
    };
    let last = outbox.push(Body::Flow(flow)).unwrap();
    outbox.commit().unwrap();
    let stored = outbox.committed_after(0, 100).unwrap();
    assert!(stored.len() >= 2, "{}", stored.len());
    assert_eq!(stored.last().unwrap().0, last);
    for (_, kind, json) in &stored {
        assert_eq!(kind, "flow");
        assert!(json.len() <= events::MAX_EVENT_BYTES, "{}", json.len());
    }
}

#[test]
fn old_corrupted_outboxes_are_bounded_to_the_newest_and_by_age() {
    let path = scratch("prune");
    let parent = path.parent().unwrap();
    for stamp in [100, 300, 200, 400] {
        std::fs::create_dir_all(parent.join(format!("outbox.corrupt-{stamp}"))).unwrap();
    }
    std::fs::create_dir_all(parent.join("other.corrupt-1")).unwrap();
    let day = Duration::from_secs(86_400);
    prune_corrupt(&path, 2, day, 300 + 86_400);
    let mut left: Vec<String> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            "other.corrupt-1",
            "outbox.corrupt-300",
            "outbox.corrupt-400"
        ]
    );
    // Past the age limit: gone, even among the newest.
    prune_corrupt(&path, 2, day, 300 + 86_401);
    assert!(!parent.join("outbox.corrupt-300").exists());
    assert!(parent.join("outbox.corrupt-400").exists());
}

#[test]
fn the_disk_cap_follows_the_real_size_on_disk_and_the_free_space() {
    // 1 MB of events taking 4 MB on disk, limit 8 MB, plenty free: 2 MB.
    assert_eq!(disk_cap(1 << 20, 4 << 20, 1 << 40, 8 << 20), 2 << 20);
    // Room on the disk for 2 MB more than the store only, minus the
    // reserve: the store may not grow past 6 MB - 4 MB on disk.
    let cap = disk_cap(1 << 20, 4 << 20, (2 << 20) + FREE_RESERVE, 1 << 30);
    assert_eq!(cap, (6 << 20) / 4);
    // Never below a few events.
    assert!(disk_cap(1, 1 << 30, 0, 1 << 20) >= 4 * events::MAX_EVENT_BYTES as u64);
    // A nearly empty store is mostly its fixed pages: no scaling.
    assert_eq!(disk_cap(10_000, 12_288, 1 << 30, 256 << 20), 256 << 20);
}
