//! The whole pipeline on real footage with the real model and runtime:
//! `luciole demo` counts people on vtest.avi the same way on every run and
//! with motion gating on or off; gating spares the model on still scenes;
//! a pipeline slower than its camera drops the oldest frames and says so;
//! every event matches its JSON Schema; FIWARE entities match the official
//! Smart Data Models; `--broker` publishes to a real Mosquitto.

#[path = "support/broker.rs"]
mod broker;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use broker::{Broker, Consumer};
use support::{
    demo_config_text, fake_pwm, footage, luciole, models_cache, repo, repo_script, scratch, stderr,
    stdout,
};

/// The counts `luciole demo` prints for the whole of vtest.avi, as stated
/// in the README ("The demo's counts"), checked by stepping through the
/// frames.
const DEMO_COUNTS: &[(&str, &str, &str, u64)] = &[
    ("car-park", "north_to_south", "person", 3),
    ("car-park", "south_to_north", "person", 2),
    ("lamp-post", "east_to_west", "person", 13),
    ("lamp-post", "west_to_east", "person", 8),
];

/// A recording other than vtest.avi: path, pace, frames per second.
type Recording<'a> = (&'a Path, &'a str, u32);

/// The shipped demo configuration, with paths made absolute, the outbox in
/// `dir`, the recording replaced when given, and `extra` lines appended.
fn demo_config(dir: &Path, recording: Option<Recording<'_>>, extra: &str) -> PathBuf {
    footage();
    let mut text = demo_config_text(&dir.join("outbox"));
    if let Some((path, pace, fps)) = recording {
        text = text
            .replace(
                &format!(
                    "{}/footage/vtest.avi\"\npace = \"fast\"",
                    models_cache().display()
                ),
                &format!("{}\"\npace = \"{pace}\"", path.display()),
            )
            .replace(
                "source = \"replay\"",
                &format!("source = \"replay\"\nfps = {fps}"),
            );
        assert!(text.contains(&path.display().to_string()));
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("demo.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    path
}

/// What `luciole demo --json` printed: events, then the summary.
struct Demo {
    events: Vec<serde_json::Value>,
    summary: serde_json::Value,
}

impl Demo {
    fn counts(&self) -> BTreeMap<(String, String, String), u64> {
        self.summary["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    (
                        c["line"].as_str().unwrap().to_string(),
                        c["direction"].as_str().unwrap().to_string(),
                        c["class"].as_str().unwrap().to_string(),
                    ),
                    c["count"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    fn of_kind(&self, kind: &str) -> Vec<&serde_json::Value> {
        self.events.iter().filter(|e| e["kind"] == kind).collect()
    }

    fn n(&self, key: &str) -> u64 {
        self.summary[key].as_u64().unwrap()
    }
}

fn demo(config: &Path, args: &[&str]) -> Demo {
    let output = luciole()
        .args(["demo", "--json", "--config", config.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let mut events = Vec::new();
    let mut summary = None;
    for line in stdout(&output).lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
        match value.get("summary") {
            Some(s) => summary = Some(s.clone()),
            None => events.push(value),
        }
    }
    Demo {
        events,
        summary: summary.expect("a summary line at the end"),
    }
}

fn expected_counts() -> BTreeMap<(String, String, String), u64> {
    DEMO_COUNTS
        .iter()
        .map(|&(l, d, c, n)| ((l.into(), d.into(), c.into()), n))
        .collect()
}

#[test]
fn the_demo_counts_vtest_the_same_on_every_run_and_without_motion_gating() {
    let dir = scratch("demo-counts");
    let first = demo(&demo_config(&dir.join("a"), None, ""), &[]);
    assert_eq!(first.n("frames"), 795);
    assert_eq!(first.counts(), expected_counts(), "the README's counts");
    let crossings = first.of_kind("crossing").len() as u64;
    assert_eq!(crossings, expected_counts().values().sum::<u64>());
    let again = demo(&demo_config(&dir.join("b"), None, ""), &["--no-motion"]);
    assert_eq!(again.n("skipped_by_motion"), 0);
    assert_eq!(again.n("inferences"), 795);
    assert_eq!(again.counts(), first.counts());
    // Same crossings, in the same order, at the same frame times.
    let key = |d: &Demo| -> Vec<(String, String, String)> {
        d.of_kind("crossing")
            .iter()
            .map(|c| {
                let data = &c["data"];
                (
                    data["line"].to_string(),
                    data["direction"].to_string(),
                    data["position"].to_string(),
                )
            })
            .collect()
    };
    assert_eq!(key(&first), key(&again));
}

/// vtest.avi always has someone walking; a pole's street is often still.
/// This recording is the first 150 frames of vtest with frame 75 held for
/// 150 frames in the middle (15 s in which nothing moves).
fn still_clip(dir: &Path) -> PathBuf {
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(footage().join("vtest.avi"))
        .args(["-frames:v", "150", "-q:v", "2"])
        .arg(frames.join("src-%03d.jpg"))
        .status()
        .expect("ffmpeg runs (Debian package ffmpeg)");
    assert!(status.success());
    let clip = dir.join("clip");
    std::fs::create_dir_all(&clip).unwrap();
    let mut n = 0;
    let mut put = |src: usize| {
        std::fs::copy(
            frames.join(format!("src-{src:03}.jpg")),
            clip.join(format!("{n:05}.jpg")),
        )
        .unwrap();
        n += 1;
    };
    for i in 1..=75 {
        put(i);
    }
    for _ in 0..150 {
        put(75);
    }
    for i in 76..=150 {
        put(i);
    }
    clip
}

#[test]
fn motion_gating_spares_the_model_on_still_scenes_without_changing_counts() {
    let dir = scratch("demo-gating");
    let clip = still_clip(&dir);
    let recording = Some((clip.as_path(), "fast", 10));
    let gated = demo(&demo_config(&dir.join("on"), recording, ""), &[]);
    let every = demo(
        &demo_config(&dir.join("off"), recording, ""),
        &["--no-motion"],
    );
    assert_eq!(gated.n("frames"), 300);
    assert_eq!(every.n("inferences"), 300);
    let skipped = gated.n("skipped_by_motion");
    // The 15 still seconds need one refresh per second, after the hold.
    assert!(skipped >= 110, "only {skipped} of 300 frames spared");
    assert_eq!(gated.n("inferences") + skipped, 300);
    assert_eq!(gated.counts(), every.counts());
    assert!(
        !every.counts().is_empty(),
        "the clip has crossings to compare"
    );
    // Tracks coasted through the still part instead of ending.
    let tracks = |d: &Demo| d.of_kind("track").len();
    assert_eq!(tracks(&gated), tracks(&every));
}

#[test]
fn a_pipeline_slower_than_its_camera_drops_the_oldest_frames_and_counts_them() {
    let dir = scratch("demo-drops");
    let clip = still_clip(&dir);
    // Played in real time at 120 frames per second: faster than inference.
    let config = demo_config(&dir, Some((clip.as_path(), "realtime", 120)), "");
    let run = demo(&config, &["--no-motion"]);
    let dropped = run.n("queue_dropped");
    assert_eq!(run.n("frames"), 300);
    assert!(dropped > 50, "only {dropped} dropped at 120 fps");
    assert_eq!(run.n("inferences") + dropped, 300);
}

/// The validators of every schema file, by kind.
fn schemas() -> BTreeMap<String, jsonschema::Validator> {
    let dir = repo().join("appliance/schemas");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let kind = path.file_stem().unwrap().to_string_lossy().into_owned();
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        out.insert(kind, jsonschema::validator_for(&schema).unwrap());
    }
    out
}

#[test]
fn pipeline_events_match_their_schemas_and_fiware_entities_the_official_models() {
    let dir = scratch("demo-schemas");
    let config = demo_config(&dir, None, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "flow_interval_s = 10",
            "flow_interval_s = 10\nfiware = true",
        )
        .replace("health_interval_ms = 5000", "health_interval_ms = 500");
    std::fs::write(&config, text).unwrap();
    let run = demo(&config, &["--frames", "400"]);
    assert!(!run.of_kind("crossing").is_empty());
    // Every committed event, envelope included, from the outbox.
    let output = luciole()
        .args(["events", "--all", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let schemas = schemas();
    let mut kinds = BTreeMap::<String, usize>::new();
    let mut entities = String::new();
    let mut healths = Vec::new();
    for line in stdout(&output).lines().filter(|l| l.starts_with('{')) {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = event["kind"].as_str().unwrap().to_string();
        let errors: Vec<String> = schemas[&kind]
            .iter_errors(&event)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{event}: {errors:?}");
        if kind == "fiware" {
            entities += &format!("{}\n", event["data"]);
        }
        if kind == "health" {
            healths.push(event["data"].clone());
        }
        *kinds.entry(kind).or_default() += 1;
    }
    for kind in ["status", "health", "crossing", "track", "flow", "fiware"] {
        assert!(kinds.contains_key(kind), "no {kind} event among {kinds:?}");
    }
    // The last health event has the run's figures.
    let last = healths.last().unwrap();
    assert_eq!(last["frames"], 400, "{last}");
    assert!(last["inferences"].as_u64().unwrap() > 0, "{last}");
    assert!(
        healths
            .iter()
            .any(|h| h["inference_ms"].as_f64().unwrap() > 1.0),
        "{healths:?}"
    );
    // The official models, from PyPI pysmartdatamodels.
    let python = repo_script("tests/reference/fiware-setup");
    let mut check = Command::new(python)
        .arg(repo().join("tests/reference/fiware_check.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(entities.as_bytes())
        .unwrap();
    let result = check.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(report.contains("valid CrowdFlowObserved"), "{report}");
    // A broken entity is refused by the same check (it can fail).
    let mut check = Command::new(repo_script("tests/reference/fiware-setup"))
        .arg(repo().join("tests/reference/fiware_check.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(
            br#"{"id":"urn:ngsi-ld:TrafficFlowObserved:x","type":"TrafficFlowObserved","dateObserved":"2026-01-01T00:00:00Z","vehicleType":"truck"}"#,
        )
        .unwrap();
    let refused = check.wait_with_output().unwrap();
    assert!(!refused.status.success());
}

#[test]
fn the_demo_publishes_its_events_to_a_broker_given_on_the_command_line() {
    let dir = scratch("demo-broker");
    let broker = Broker::start(&dir.join("broker"));
    let consumer = Consumer::start(broker.plain_port, "luciole/demo/vtest/events/#");
    let config = demo_config(&dir, None, "");
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let run = demo(&config, &["--frames", "400", "--broker", &url]);
    let crossings = run.of_kind("crossing").len();
    assert!(crossings > 0);
    consumer.wait_for(
        Duration::from_secs(20),
        "the demo's crossings",
        |received| {
            received
                .iter()
                .filter(|r| r.topic.ends_with("/events/crossing"))
                .count()
                >= crossings
        },
    );
    let received = consumer.events();
    let ids: Vec<u64> = received
        .iter()
        .map(|r| r.payload["id"].as_u64().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "no duplicates on a healthy link");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    // An address that is not mqtt:// is refused with the reason.
    let output = luciole()
        .args([
            "demo",
            "--config",
            config.to_str().unwrap(),
            "--broker",
            "http://x:1",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("expected mqtt://HOST:PORT"),
        "{}",
        stderr(&output)
    );
}

/// Lighting for the demo: always night, base 30 %, boost 100 %, rated
/// (safe) 80 %, presence = people in the west footpath or approaching the
/// lamp-post line.
const LIGHTING: &str = "[lighting]\nmode = \"schedule\"\n\
    schedule = { on = \"00:00\", off = \"24:00\", timezone = \"UTC\" }\n\
    night_pct = 30\nboost_pct = 100\nrated_pct = 80\nramp_up_ms = 200\nhold_s = 1\nfade_s = 1\n\
    [lighting.presence]\nclasses = [\"person\"]\nzones = [\"footpath-west\"]\nlines = [\"lamp-post\"]\n\
    [lighting.dimmer]\nchip = \"pwmchip3\"\nchannel = 0\nperiod_ns = 1000000\npolarity = \"normal\"\n";

#[test]
fn the_pipeline_drives_the_lamp_from_presence_and_leaves_it_in_the_safe_state() {
    let dir = scratch("demo-lighting");
    let channel = fake_pwm(&dir.join("sys"));
    let config = demo_config(&dir, None, LIGHTING);
    let output = luciole()
        .args([
            "demo",
            "--json",
            "--frames",
            "300",
            "--config",
            config.to_str().unwrap(),
        ])
        .env("LUCIOLE_SYSFS", dir.join("sys"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let changes: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "light")
        .map(|e| e["data"].clone())
        .collect();
    let reasons: Vec<&str> = changes
        .iter()
        .map(|c| c["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"presence"), "{changes:?}");
    let boost = changes.iter().find(|c| c["reason"] == "presence").unwrap();
    assert_eq!(boost["level"], 1.0, "{boost}");
    assert!(
        changes
            .iter()
            .any(|c| c["reason"] == "schedule" && c["level"] == 0.3),
        "the base level once frames flow: {changes:?}"
    );
    let last = changes.last().unwrap();
    assert_eq!(last["reason"], "safe_exit", "{changes:?}");
    assert_eq!(last["level"], 0.8);
    // What the PWM interface holds after the daemon stopped: the rated level.
    let read = |name: &str| {
        std::fs::read_to_string(channel.join(name))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("period"), "1000000");
    assert_eq!(read("duty_cycle"), "800000");
    assert_eq!(read("enable"), "1");
    // A presence rule naming a zone that does not exist is refused.
    let bad = demo_config(
        &dir.join("bad"),
        None,
        &LIGHTING.replace("zones = [\"footpath-west\"]", "zones = [\"nowhere\"]"),
    );
    let output = luciole()
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(
            "lighting.presence.zones = \"nowhere\": no [[analytics.zones]] has this name"
        ),
        "{}",
        stderr(&output)
    );
}
