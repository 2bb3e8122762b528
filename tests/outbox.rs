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

/// The validators of every schema file, by kind.
fn schemas() -> std::collections::BTreeMap<String, jsonschema::Validator> {
    let dir = repo().join("appliance/schemas");
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let kind = path.file_stem().unwrap().to_string_lossy().into_owned();
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
            queue_dropped: 0,
            inference_ms: 0.0,
            tracks: 0,
        }),
        Body::Error(ErrorReport {
            code: "camera_lost".into(),
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
            track: 77,
            at: rfc3339_ms(5),
            position: [430.5, 300.0],
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
        }),
        Body::Fiware(serde_json::json!({
            "id": "urn:ngsi-ld:CrowdFlowObserved:test-site:pole-1:gate:19700101000000000",
            "type": "CrowdFlowObserved",
            "peopleCount": 3,
        })),
    ];
    let schemas = schemas();
    assert_eq!(schemas.len(), bodies.len(), "one schema per kind");
    for (n, body) in bodies.into_iter().enumerate() {
        let event = origin.event(n as u64 + 1, now_ms(), body);
        let json: serde_json::Value = serde_json::from_slice(&event.encode()).unwrap();
        assert_valid(&schemas, &json);
        let mut wrong = json.clone();
        if event.body.kind() == "fiware" {
            // Entities are open (the official models check them); the
            // type is not.
            wrong["data"]["type"] = serde_json::json!("Streetlight");
        } else {
            wrong["data"]["unexpected"] = serde_json::json!(1);
        }
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
