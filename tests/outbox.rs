//! The outbox end to end with the real `luciole` binary: events from
//! `luciole run` survive SIGKILL and reach a real Mosquitto (whose last
//! will marks the killed pole offline), `luciole
//! events` shows what is held, and every produced event matches its JSON
//! Schema in `appliance/schemas/`.

#[path = "support/broker.rs"]
mod broker;
#[path = "support/delivery.rs"]
mod delivery;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use broker::{Broker, Consumer};
use support::{footage, luciole, repo, run, scratch, stderr, stdout};

/// A pole replaying the real footage in a loop, reporting health every
/// 100 ms, with `extra` sections appended.
fn pole_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("pole.toml");
    let text = format!(
        "[device]\nsite = \"test-site\"\nid = \"pole-1\"\n\n[camera]\nsource = \"replay\"\npixel_formats = [\"YUYV\"]\n\n[camera.replay]\npath = \"{}\"\npace = \"realtime\"\nloop = true\n\n[events]\nhealth_interval_ms = 100\n\n[outbox]\npath = \"{}\"\nflush_ms = 20\n{extra}",
        footage().join("vtest.avi").display(),
        dir.join("outbox").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn mqtt_section(port: u16) -> String {
    format!(
        "\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\ntls = false\nreconnect_min_ms = 100\nreconnect_max_ms = 1000\nkeep_alive_s = 5\n"
    )
}

fn start(config: &Path) -> Child {
    luciole()
        .args(["run", "--config", config.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, name: &str) {
    std::process::Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
}

/// The validators of every event schema file, by kind (`manifest.json`,
/// the data manifest, is not an event).
fn schemas() -> std::collections::BTreeMap<String, jsonschema::Validator> {
    let dir = repo().join("appliance/schemas");
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let kind = path.file_stem().unwrap().to_string_lossy().into_owned();
        if kind == "manifest" {
            continue;
        }
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.insert(kind, validator);
    }
    out
}

fn assert_valid(
    schemas: &std::collections::BTreeMap<String, jsonschema::Validator>,
    event: &serde_json::Value,
) {
    let kind = event["kind"].as_str().expect("every event has a kind");
    let validator = schemas
        .get(kind)
        .unwrap_or_else(|| panic!("no schema for kind {kind}"));
    let errors: Vec<String> = validator
        .iter_errors(event)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{event}: {errors:?}");
}

#[test]
fn events_committed_before_five_sigkills_are_all_delivered_in_order() {
    let dir = scratch("outbox-crash");
    let broker = Broker::start(&dir.join("broker"));
    let consumer = Consumer::start(broker.plain_port, "luciole/test-site/pole-1/events/#");
    let presence = Consumer::start(broker.plain_port, "luciole/test-site/pole-1/status");
    let last_state = || {
        luciole::sync::lock(&presence.received)
            .last()
            .map(|r| r.payload["state"].as_str().unwrap_or("").to_string())
    };
    // Runs whose `started` status was delivered (replays de-duplicated).
    let started_runs = || {
        consumer
            .events()
            .iter()
            .filter(|r| r.payload["kind"] == "status" && r.payload["data"]["state"] == "started")
            .map(|r| r.id)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let config = pole_config(&dir, &mqtt_section(broker.port));
    // Kill at different points of the stream, once the pole is online and
    // its run has started (on a loaded machine a replay can take a while
    // to open).
    for (round, ms) in [700u64, 1300, 100, 1700, 900].into_iter().enumerate() {
        let runs = started_runs();
        let mut child = start(&config);
        let deadline = Instant::now() + Duration::from_secs(30);
        while last_state().as_deref() != Some("online") || started_runs() == runs {
            assert!(Instant::now() < deadline, "round {round}: never started");
            assert!(
                child.try_wait().unwrap().is_none(),
                "round {round}: exited early"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(ms));
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: exited early"
        );
        signal(&child, "KILL");
        let status = child.wait().unwrap();
        assert_eq!(status.code(), None, "round {round}: killed by a signal");
        // The broker publishes the last will: the retained status goes
        // offline without the pole saying so.
        let deadline = Instant::now() + Duration::from_secs(15);
        while last_state().as_deref() != Some("offline") {
            assert!(Instant::now() < deadline, "round {round}: no last will");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // A last run ends cleanly: everything it holds is committed and drained.
    let child = start(&config);
    std::thread::sleep(Duration::from_secs(3));
    signal(&child, "TERM");
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    let listing = run(&["events", "--config", config.to_str().unwrap()]);
    assert!(listing.status.success(), "{}", stderr(&listing));
    assert!(
        stdout(&listing).contains(": 0 event(s)"),
        "{}",
        stdout(&listing)
    );

    let received = consumer.events();
    let last = received.iter().map(|r| r.id).max().unwrap();
    // Ids are contiguous and stored with the events they name: an id lost
    // with an uncommitted event is given again, so after a clean stop
    // 1..=last are exactly the committed events.
    let delivery = delivery::check_contract(&received, 1..=last);
    assert_eq!(delivery.reported_dropped, 0, "{delivery}");
    let starts = received
        .iter()
        .filter(|r| r.payload["kind"] == "status" && r.payload["data"]["state"] == "started")
        .map(|r| r.id)
        .collect::<std::collections::BTreeSet<_>>();
    assert!(starts.len() >= 5, "started events: {starts:?}");
    let schemas = schemas();
    for r in &received {
        assert_valid(&schemas, &r.payload);
    }
    eprintln!(
        "crash test: {} distinct events delivered ({} messages, {} duplicates) over 5 SIGKILLs",
        last,
        received.len(),
        received.len() as u64 - last
    );
}

#[test]
fn luciole_events_lists_what_the_outbox_holds() {
    let dir = scratch("outbox-list");
    let config = pole_config(&dir, "");
    let missing = run(&["events", "--config", config.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no outbox here"),
        "{}",
        stderr(&missing)
    );

    let mut child = start(&config);
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
    let summary = run(&["events", "--config", config.to_str().unwrap()]);
    assert!(summary.status.success(), "{}", stderr(&summary));
    let text = stdout(&summary);
    assert!(text.contains("oldest: id 1 at "), "{text}");
    assert!(text.contains("(status)"), "{text}");
    let all = run(&["events", "--config", config.to_str().unwrap(), "--all"]);
    let lines: Vec<serde_json::Value> = stdout(&all)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count: usize = text
        .lines()
        .next()
        .and_then(|l| l.rsplit(": ").next())
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert_eq!(lines.len(), count, "{text}");
    // started, health (every 100 ms once capturing: at least one even on a
    // loaded machine), stopping.
    assert!(lines.len() >= 3, "{lines:?}");
    let ids: Vec<u64> = lines.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    assert_eq!(lines[0]["data"]["state"], "started");
    assert_eq!(lines.last().unwrap()["data"]["state"], "stopping");
    assert!(lines.iter().any(|e| e["kind"] == "health"));
    let schemas = schemas();
    for event in &lines {
        assert_valid(&schemas, event);
    }
}

#[test]
fn every_kind_of_event_matches_its_schema_and_a_wrong_one_does_not() {
    use luciole::events::*;
    let origin = Origin {
        site: "test-site".into(),
        device: "pole-1".into(),
    };
    let bodies = [
        Body::Status(Status {
            state: "camera_back".into(),
            version: "0.1.0".into(),
            detail: "x".into(),
        }),
        Body::Health(Health {
            fps: 9.9,
            frames: 1,
            dropped_frames: 0,
            reconnects: 0,
            outage_ms: 0,
            outbox_depth: 3,
            broker_reconnects: 1,
            inferences: 0,
            skipped_by_motion: 0,
            predicted: 0,
            inference_fps: 0.0,
            queue_dropped: 0,
            inference_ms: 0.0,
            tracks: 0,
        }),
        Body::Error(ErrorReport {
            code: luciole::events::ErrorCode::CameraLost,
            message: "x".into(),
        }),
        Body::Dropped(Dropped {
            reason: "expired".into(),
            count: 2,
            first_id: 1,
            last_id: 2,
            from: rfc3339_ms(0),
            to: rfc3339_ms(1),
        }),
        Body::Alert(Alert {
            code: "outbox_corrupted".into(),
            message: "x".into(),
        }),
        Body::Light(luciole::light::LightState {
            level: 1.0,
            previous: 0.3,
            reason: luciole::light::LightReason::FailSafe,
            night: true,
            detail: "camera lost".into(),
        }),
        Body::Crossing(luciole::events::Crossing {
            line: "gate".into(),
            direction: "east_to_west".into(),
            class: "person".into(),
            track: Some(77),
            at: rfc3339_ms(5),
            position: Some([430.5, 300.0]),
            speed_px_s: 61.2,
            speed_m_s: Some(1.3),
        }),
        Body::Track(luciole::events::TrackSummary {
            track: 77,
            class: "bicycle".into(),
            first_seen: rfc3339_ms(1),
            duration_ms: 4000,
            detections: 38,
            first: [10.0, 20.0],
            last: [600.0, 310.0],
            distance_px: 700.0,
            speed_px_s: 175.0,
            distance_m: None,
            speed_m_s: None,
            zones: vec!["square".into()],
        }),
        Body::Flow(luciole::events::Flow {
            from: rfc3339_ms(0),
            to: rfc3339_ms(60_000),
            interval_s: 60.0,
            lines: vec![luciole::events::FlowCount {
                line: "gate".into(),
                direction: "east_to_west".into(),
                class: "car".into(),
                count: 4,
            }],
            zones: vec![luciole::events::FlowZone {
                zone: "square".into(),
                class: "person".into(),
                occupancy_mean: 1.5,
                occupancy_max: 3,
                dwell_mean_s: Some(12.5),
                dwells: 2,
            }],
            speeds: vec![luciole::events::FlowSpeed {
                class: "car".into(),
                tracks: 4,
                speed_px_s: 220.0,
                speed_m_s: Some(8.1),
            }],
            part: None,
        }),
        Body::Fiware(serde_json::json!({
            "id": "urn:ngsi-ld:CrowdFlowObserved:test-site:pole-1:gate:19700101000000000",
            "type": "CrowdFlowObserved",
            "peopleCount": 3,
        })),
        Body::Audit(luciole::events::Audit {
            key: Some("acme-install".into()),
            role: Some("integrator".into()),
            command: Some("config.apply".into()),
            outcome: "failed".into(),
            code: Some("rolled_back".into()),
            detail: "no frame analysed".into(),
        }),
        Body::Update(luciole::events::UpdateStep {
            step: "downloading".into(),
            url: "https://updates.city.example/v2.raucb".into(),
            sha256: "ab".repeat(32),
            bytes: Some(1_048_576),
            percent: None,
            slot: None,
            at: None,
            code: None,
            detail: "resuming from byte 1048576".into(),
        }),
        Body::Energy(luciole::events::Energy {
            from: rfc3339_ms(0),
            to: rfc3339_ms(43_200_000),
            night_h: 12.0,
            used_kwh: 0.43,
            full_kwh: 1.2,
            saved_kwh: 0.77,
            lamp_watts: 100.0,
        }),
    ];
    let schemas = schemas();
    assert_eq!(schemas.len(), bodies.len(), "one schema per kind");
    for (n, body) in bodies.into_iter().enumerate() {
        let event = origin.event(n as u64 + 1, now_ms(), body);
        let json: serde_json::Value = serde_json::from_slice(&event.encode()).unwrap();
        assert_valid(&schemas, &json);
        // Every body is closed, FIWARE entities too (the attributes the
        // mapper writes; the official models check their values).
        let mut wrong = json.clone();
        wrong["data"]["unexpected"] = serde_json::json!(1);
        assert!(!schemas[event.body.kind()].is_valid(&wrong));
    }
}

#[test]
fn a_daemon_whose_credentials_are_refused_says_so_retries_and_keeps_its_events() {
    let dir = scratch("outbox-refused");
    let broker = Broker::start_with(
        &dir.join("broker"),
        broker::BrokerOptions {
            users: vec![("pole-1".into(), "right-password".into())],
            ..Default::default()
        },
    );
    let password = dir.join("mqtt-password");
    std::fs::write(&password, "wrong-password\n").unwrap();
    let extra = format!(
        "{}username = \"pole-1\"\npassword_file = \"{}\"\n",
        mqtt_section(broker.port),
        password.display()
    );
    let config = pole_config(&dir, &extra);
    let child = start(&config);
    std::thread::sleep(Duration::from_secs(3));
    signal(&child, "TERM");
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    let refusals = log
        .lines()
        .filter(|l| {
            l.contains(&format!(
                "broker 127.0.0.1:{} refused the credentials",
                broker.port
            )) && l.contains("check mqtt.username and mqtt.password_file")
        })
        .count();
    assert!(refusals >= 2, "retried with a clear error:\n{log}");
    // Nothing was delivered, so everything is still held, from id 1.
    let listing = run(&["events", "--config", config.to_str().unwrap(), "--all"]);
    let text = stdout(&listing);
    assert!(text.contains("oldest: id 1 at "), "{text}");
    let held = text.lines().filter(|l| l.starts_with('{')).count();
    assert!(held >= 5, "{text}");
}

/// The delivery contract over every id up to the last one received.
fn check_all(received: &[broker::Received]) -> delivery::Delivery {
    let last = received.iter().map(|r| r.id).max().unwrap();
    let found = delivery::check_contract(received, 1..=last);
    eprintln!("{found}");
    found
}

/// Runs the daemon without a broker for a moment so events are held, and
/// stops it cleanly.
fn hold_some_events(config: &Path) {
    let child = start(config);
    std::thread::sleep(Duration::from_millis(2500));
    signal(&child, "TERM");
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn stored_events_a_newer_firmware_wrote_are_set_aside_and_reported_and_the_rest_arrive_in_order() {
    let dir = scratch("outbox-future");
    let offline = pole_config(&dir, "");
    hold_some_events(&offline);
    // A newer firmware (before a rollback) left two records this one cannot
    // read: one in a storage format it does not know, one in the first
    // storage format (8 bytes of time, then JSON) but of a newer schema.
    let (second, fourth, held_last) = {
        let db = rusqlite::Connection::open(dir.join("outbox").join("events.sqlite")).unwrap();
        let ids: Vec<u64> = db
            .prepare("SELECT key FROM records WHERE key > 0 ORDER BY key")
            .unwrap()
            .query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|id| id.unwrap() as u64)
            .collect();
        assert!(ids.len() >= 5, "held: {ids:?}");
        let put = |id: u64, value: &[u8]| {
            db.execute(
                "UPDATE records SET body = ?2 WHERE key = ?1",
                rusqlite::params![id as i64, value],
            )
            .unwrap()
        };
        let mut unknown_format = vec![0x7f];
        unknown_format.extend_from_slice(b"\x00\x01future storage format");
        assert_eq!(put(ids[1], &unknown_format), 1);
        let future = format!(
            r#"{{"schema":3,"id":{},"time":"2026-01-01T00:00:00.000Z","site":"test-site","device":"pole-1","kind":"hologram","data":{{"depth":3}}}}"#,
            ids[3]
        );
        let mut value = 1_767_225_600_000u64.to_be_bytes().to_vec();
        value.extend_from_slice(future.as_bytes());
        assert_eq!(put(ids[3], &value), 1);
        (ids[1], ids[3], *ids.last().unwrap())
    };
    let broker = Broker::start(&dir.join("broker"));
    let consumer = Consumer::start(broker.plain_port, "luciole/test-site/pole-1/events/#");
    let config = pole_config(&dir, &mqtt_section(broker.port));
    let child = start(&config);
    consumer.wait_for(
        Duration::from_secs(60),
        "the held events, the report of the unreadable ones and new events",
        |received| {
            received
                .iter()
                .any(|r| r.payload["data"]["reason"] == "unreadable")
                && received.iter().filter(|r| r.id > held_last).count() >= 5
        },
    );
    signal(&child, "TERM");
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    let received = consumer.events();
    let dropped: Vec<&serde_json::Value> = received
        .iter()
        .filter(|r| r.payload["data"]["reason"] == "unreadable")
        .map(|r| &r.payload["data"])
        .collect();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(
        (
            dropped[0]["first_id"].as_u64(),
            dropped[0]["last_id"].as_u64(),
            dropped[0]["count"].as_u64()
        ),
        (Some(second), Some(fourth), Some(2))
    );
    assert!(received.iter().all(|r| r.id != second && r.id != fourth));
    assert_eq!(check_all(&received).reported_dropped, 2);
    let schemas = schemas();
    for r in &received {
        assert_valid(&schemas, &r.payload);
    }
    // Said once (rate-limited), not once per retry.
    let lines = log.lines().filter(|l| l.contains("cannot be read")).count();
    assert!((1..=2).contains(&lines), "{lines} lines:\n{log}");
    let listing = run(&["events", "--config", config.to_str().unwrap()]);
    assert!(
        stdout(&listing).contains(&format!(
            "set aside (unreadable, reported): ids [{second}, {fourth}]"
        )),
        "{}{}",
        stdout(&listing),
        stderr(&listing)
    );
}

#[test]
fn luciole_events_says_once_that_the_running_daemon_holds_the_outbox() {
    let dir = scratch("outbox-held");
    let config = pole_config(&dir, "");
    let child = start(&config);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("outbox").join("id-reservation").exists() {
        assert!(
            Instant::now() < deadline,
            "the daemon never opened its outbox"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let listing = run(&["events", "--config", config.to_str().unwrap()]);
    signal(&child, "TERM");
    assert!(child.wait_with_output().unwrap().status.success());
    let err = stderr(&listing);
    assert_eq!(listing.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("held by a running daemon").count(), 1, "{err}");
    assert!(!err.contains("could not acquire lock"), "{err}");
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        let uid = std::process::Command::new("id").arg("-u").output().unwrap();
        assert!(
            String::from_utf8_lossy(&uid.stdout).trim() == "0",
            "this test mounts a small tmpfs of its own and must run as root (tests/run runs as root)"
        );
        std::fs::create_dir_all(path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount (util-linux) is needed");
        assert!(status.success(), "mount -t tmpfs {} failed", path.display());
        SmallDisk(path.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem of `dir` to the last byte; returns the filler.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5a; 4096];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.raw_os_error() == Some(28) => break,
            Err(err) => panic!("filling {}: {err}", path.display()),
        }
    }
    path
}

#[test]
fn a_full_disk_under_the_running_daemon_is_reported_and_survived_and_nothing_is_lost_silently() {
    let dir = scratch("outbox-enospc");
    let disk = SmallDisk::mount(&dir.join("small"), "24m");
    let broker = Broker::start(&dir.join("broker"));
    let consumer = Consumer::start(broker.plain_port, "luciole/test-site/pole-1/events/#");
    let path = pole_config(&dir, &mqtt_section(broker.port));
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &format!("path = \"{}\"", dir.join("outbox").display()),
        &format!("path = \"{}\"", disk.0.join("outbox").display()),
    );
    std::fs::write(&path, text).unwrap();
    let child = start(&path);
    consumer.wait_for(Duration::from_secs(60), "the first events", |r| {
        r.len() >= 5
    });
    let filler = fill(&disk.0);
    // Full for a while: health events every 100 ms cannot be stored.
    std::thread::sleep(Duration::from_secs(5));
    let before = consumer.events().iter().map(|r| r.id).max().unwrap();
    std::fs::remove_file(&filler).unwrap();
    // The alert may come while the disk is still full (SQLite can reuse
    // the room its write-ahead log already has); either way, events made
    // after the disk has room again must arrive too.
    consumer.wait_for(
        Duration::from_secs(90),
        "the disk-error alert and events after it, and after the disk has room again",
        |received| {
            let alert = received
                .iter()
                .find(|r| r.payload["data"]["code"] == "outbox_disk_error");
            alert.is_some_and(|a| received.iter().filter(|r| r.id > a.id).count() >= 5)
                && received.iter().filter(|r| r.id > before).count() >= 5
        },
    );
    signal(&child, "TERM");
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    let received = consumer.events();
    let alert = received
        .iter()
        .find(|r| r.payload["data"]["code"] == "outbox_disk_error")
        .unwrap();
    let message = alert.payload["data"]["message"].as_str().unwrap();
    assert!(
        message.contains("could not be stored") || message.contains("are lost"),
        "{message}"
    );
    assert!(alert.id > before || received.iter().any(|r| r.id > before));
    check_all(&received);
    eprintln!("disk-full alert: {message}");
    let schemas = schemas();
    for r in &received {
        assert_valid(&schemas, &r.payload);
    }
    let errors = log.lines().filter(|l| l.contains("ERROR")).count();
    assert!(
        errors < 40,
        "errors are rate-limited, not one per event:\n{log}"
    );
    drop(disk);
}

#[test]
fn a_flow_of_a_busy_junction_is_stored_in_parts_that_each_fit_the_event_limit() {
    use luciole::outbox::{Outbox, OutboxSettings};
    let dir = scratch("outbox-big-flow");
    let settings = OutboxSettings {
        path: dir.join("outbox"),
        ..OutboxSettings::default()
    };
    let origin = luciole::events::Origin {
        site: "test-site".into(),
        device: "pole-1".into(),
    };
    // 150 counting lines, 4 classes, both directions, one-minute interval.
    let mut lines = Vec::new();
    for l in 0..150 {
        for class in ["person", "bicycle", "car", "truck"] {
            for direction in ["north_to_south", "south_to_north"] {
                lines.push(serde_json::json!({
                    "line": format!("junction-line-{l:03}"),
                    "direction": direction,
                    "class": class,
                    "count": 7,
                }));
            }
        }
    }
    let body: luciole::events::Body = serde_json::from_value(serde_json::json!({
        "kind": "flow",
        "data": {
            "from": "2026-11-29T10:00:00.000Z",
            "to": "2026-11-29T10:01:00.000Z",
            "interval_s": 60.0,
            "lines": lines,
            "zones": [],
            "speeds": [],
        }
    }))
    .unwrap();
    let whole = origin.event(1, 0, body.clone()).encode().len();
    assert!(whole > luciole::events::MAX_EVENT_BYTES, "{whole}");
    let outbox = Outbox::open(&settings, origin).unwrap();
    outbox.push(body).unwrap();
    outbox.commit().unwrap();
    let stored = outbox.committed_after(0, 1000).unwrap();
    let schemas = schemas();
    let mut counted = 0;
    for (_, kind, json) in &stored {
        assert_eq!(kind, "flow");
        assert!(
            json.len() <= luciole::events::MAX_EVENT_BYTES,
            "a stored event of {} bytes",
            json.len()
        );
        let event: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert_valid(&schemas, &event);
        counted += event["data"]["lines"].as_array().unwrap().len();
    }
    assert_eq!(counted, 150 * 8, "every count is in one part");
    assert!(stored.len() >= 2);
}
