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
    }
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
    outbox.push_at(error(0), 1_000_000).unwrap();
    outbox.push_at(error(1), 1_030_000).unwrap();
    outbox.push_at(error(2), 1_065_000).unwrap();
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
    let data = path.join("db");
    let len = std::fs::metadata(&data).unwrap().len() as usize;
    std::fs::write(&data, vec![0xA5; len.max(4096)]).unwrap();
    // sled either refuses the store (moved aside) or recovers it without
    // the data; both must end in an alert and ids above every old one.
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
    std::fs::write(path.join("conf"), b"\xA5\xA5 not a sled configuration").unwrap();
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
    let held = store::Store::open(&path).unwrap();
    let started = std::time::Instant::now();
    match store::Store::open(&path) {
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
    store::Store::open(&path).unwrap();
    release.join().unwrap();
}
