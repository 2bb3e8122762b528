//! The pipeline's threads and queues with scripted stages: a source and a
//! detector from `capture::fake` and `detect::fake`, the lamp on simulated
//! outputs, events collected in a `Vec`. No device, model or footage.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use super::*;
use crate::analytics::ZoneSettings;
use crate::capture::fake::ScriptedSource;
use crate::capture::CaptureError;
use crate::detect::fake::ScriptedDetector;
use crate::light::schedule::Schedule;
use crate::light::{
    DimmerBackend, DimmerSettings, LightReason, LightingSettings, Mode, PresenceSettings,
};

fn options() -> Options {
    Options {
        queue: 2,
        lossless: false,
        max_frames: None,
        camera_lost_after: Duration::from_secs(60),
        health_interval: Duration::from_secs(3600),
        motion: MotionSettings {
            enabled: false,
            ..MotionSettings::default()
        },
        // The model on every frame, unless a test says otherwise.
        pace: pace::PaceSettings {
            adaptive: false,
            ..pace::PaceSettings::default()
        },
        tracking: TrackSettings::default(),
        analytics: AnalyticsSettings::default(),
        // Everything analytics make, so that these tests see it all.
        profile: crate::privacy::Profile::Tracks,
        masks: Vec::new(),
        origin: Origin {
            site: "test".into(),
            device: "pole".into(),
        },
        inference_time: None,
        snapshots: None,
    }
}

/// A run on its own thread, so that a hang fails the test instead of
/// blocking it: the outcome, the events, the elapsed time.
fn run_within(
    limit: Duration,
    stages: Stages,
    options: Options,
    shutdown: &Shutdown,
) -> (Result<Summary, PipelineError>, Vec<Body>, Duration) {
    let (tx, rx) = mpsc::channel();
    let shutdown = shutdown.clone();
    let started = Instant::now();
    std::thread::spawn(move || {
        let mut events = Vec::new();
        let outcome = run(stages, &options, &mut events, &shutdown);
        let _ = tx.send((outcome, events));
    });
    let (outcome, events) = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("the pipeline did not end within {limit:?}"));
    (outcome, events, started.elapsed())
}

fn stages(source: ScriptedSource, detector: ScriptedDetector) -> Stages {
    Stages {
        source: Box::new(source),
        detector: Some(Box::new(detector)),
        lamp: None,
    }
}

/// A scratch folder for state files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("luciole-pipeline-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Always night, base 30 %, boost 100 %, rated 80 %, presence = a person
/// in zone `here`; a simulated dimmer writing its state into `dir`.
fn lamp(dir: &Path) -> Lamp {
    let mut settings = LightingSettings::new(Mode::Schedule(
        Schedule::parse("00:00", "24:00", "UTC").unwrap(),
    ));
    settings.rated = 0.8;
    settings.ramp_up = Duration::ZERO;
    settings.presence = PresenceSettings {
        classes: vec!["person".into()],
        zones: vec!["here".into()],
        lines: Vec::new(),
    };
    let dimmer = DimmerSettings {
        backend: DimmerBackend::Simulated,
        state_file: Some(dir.join("dimmer.json")),
        ..DimmerSettings::default()
    };
    settings.steps = dimmer.default_steps();
    settings.dimmer = Some(dimmer);
    Lamp {
        presence: settings.presence.clone(),
        lighting: Lighting::open(&settings).unwrap(),
        feed: crate::light::runner::LightFeed::new(),
    }
}

/// The level the simulated dimmer holds now.
fn dimmer_level(dir: &Path) -> f64 {
    let text = std::fs::read_to_string(dir.join("dimmer.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    state["level"].as_f64().unwrap()
}

fn lights(events: &[Body]) -> Vec<&LightState> {
    events
        .iter()
        .filter_map(|e| match e {
            Body::Light(l) => Some(l),
            _ => None,
        })
        .collect()
}

fn errors(events: &[Body]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            Body::Error(e) => Some(e.code.as_str()),
            _ => None,
        })
        .collect()
}

/// A detector that records the sequence numbers it is shown.
fn recording(cost: Duration) -> (ScriptedDetector, Arc<Mutex<Vec<u64>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let detector = ScriptedDetector::new(move |sequence| {
        lock(&log).push(sequence);
        Vec::new()
    })
    .costing(cost);
    (detector, seen)
}

#[test]
fn a_camera_faster_than_inference_drops_the_oldest_frames_and_counts_them() {
    let (detector, seen) = recording(Duration::from_millis(5));
    let source = ScriptedSource::new().frames(300, 0);
    let (outcome, _, _) = run_within(
        Duration::from_secs(30),
        stages(source, detector),
        options(),
        &Shutdown::new(),
    );
    let summary = outcome.unwrap();
    let seen = lock(&seen).clone();
    assert_eq!(summary.frames, 300);
    assert!(summary.queue_dropped > 100, "{summary:?}");
    assert_eq!(summary.analysed + summary.queue_dropped, 300);
    assert_eq!(summary.inferences, summary.analysed);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    assert_eq!(seen.last(), Some(&300), "the freshest frame is analysed");
}

#[test]
fn a_recording_played_fast_loses_no_frame_behind_a_slow_detector() {
    let (detector, seen) = recording(Duration::from_millis(2));
    let source = ScriptedSource::new().frames(200, 0);
    let mut options = options();
    options.lossless = true;
    let (outcome, _, _) = run_within(
        Duration::from_secs(30),
        stages(source, detector),
        options,
        &Shutdown::new(),
    );
    let summary = outcome.unwrap();
    assert_eq!((summary.frames, summary.analysed), (200, 200));
    assert_eq!(summary.queue_dropped, 0);
    assert_eq!(*lock(&seen), (1..=200).collect::<Vec<u64>>());
}

#[test]
fn at_a_stop_the_queued_frames_are_analysed_tracks_closed_and_the_lamp_made_safe_last() {
    let dir = scratch("drain");
    let shutdown = Shutdown::new();
    let stopper = shutdown.clone();
    // A person in zone "here" on every frame; the stop comes at frame 40.
    let detector = ScriptedDetector::new(move |sequence| {
        if sequence == 40 {
            stopper.request();
        }
        vec![Detection {
            class: Class::Person,
            score: 0.9,
            bbox: [10.0, 10.0, 20.0, 40.0],
        }]
    })
    .costing(Duration::from_millis(1));
    let source = ScriptedSource::new().frames(1000, 0).stopped_by(&shutdown);
    let mut options = options();
    options.lossless = true;
    options.queue = 4;
    options.analytics.zones = vec![ZoneSettings {
        name: "here".into(),
        polygon: vec![[0.0, 0.0], [64.0, 0.0], [64.0, 48.0], [0.0, 48.0]],
        classes: Vec::new(),
    }];
    let mut stages = stages(source, detector);
    stages.lamp = Some(lamp(&dir));
    let (outcome, events, _) = run_within(Duration::from_secs(30), stages, options, &shutdown);
    let summary = outcome.unwrap();
    assert!(summary.frames < 1000, "the stop ended the capture");
    assert_eq!(summary.analysed, summary.frames, "queued frames analysed");
    let kinds: Vec<&str> = events.iter().map(Body::kind).collect();
    let track = kinds
        .iter()
        .position(|k| *k == "track")
        .expect("a track event");
    let lights = lights(&events);
    assert!(
        lights
            .iter()
            .any(|l| l.reason == LightReason::Presence && l.level == 1.0),
        "{lights:?}"
    );
    let last_light = kinds.iter().rposition(|k| *k == "light").unwrap();
    assert!(track < last_light, "{kinds:?}");
    assert_eq!(lights.last().unwrap().reason, LightReason::SafeExit);
    assert_eq!(
        &kinds[last_light + 1..],
        ["health"],
        "the lamp's safe exit, then the closing health"
    );
    assert_eq!(dimmer_level(&dir), 0.8, "the rated level after the run");
}

#[test]
fn a_detector_failure_ends_a_lossless_run_cleanly_with_an_error_event() {
    let dir = scratch("fail-lossless");
    let detector = ScriptedDetector::empty().failing_from(5);
    let shutdown = Shutdown::new();
    // A long recording: without the fix the capture thread blocks on a
    // full queue nobody reads, and the run never ends.
    let source = ScriptedSource::new()
        .frames(100_000, 0)
        .stopped_by(&shutdown);
    let mut options = options();
    options.lossless = true;
    let mut stages = stages(source, detector);
    stages.lamp = Some(lamp(&dir));
    let (outcome, events, elapsed) =
        run_within(Duration::from_secs(20), stages, options, &shutdown);
    match outcome {
        Err(PipelineError::Detect { sequence: 5, .. }) => {}
        other => panic!("expected a detection failure on frame 5, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(shutdown.requested(), "every other loop is told to stop");
    assert_eq!(errors(&events), ["detector_failed"]);
    assert_eq!(
        lights(&events).last().unwrap().reason,
        LightReason::SafeExit
    );
    assert_eq!(dimmer_level(&dir), 0.8);
}

#[test]
fn a_detector_failure_ends_a_camera_run_even_while_the_camera_is_away() {
    let detector = ScriptedDetector::empty().failing_from(3);
    let shutdown = Shutdown::new();
    // Three frames, then a camera that says nothing for a minute.
    let source = ScriptedSource::new()
        .frames(3, 0)
        .silence(Duration::from_secs(60))
        .frames(10, 0)
        .stopped_by(&shutdown);
    let (outcome, events, elapsed) = run_within(
        Duration::from_secs(20),
        stages(source, detector),
        options(),
        &shutdown,
    );
    assert!(matches!(
        outcome,
        Err(PipelineError::Detect { sequence: 3, .. })
    ));
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(errors(&events), ["detector_failed"]);
}

#[test]
fn a_capture_failure_ends_the_run_with_an_error_event_after_the_frames_before_it() {
    let (detector, seen) = recording(Duration::ZERO);
    let source = ScriptedSource::new()
        .frames(20, 0)
        .fail(CaptureError::Replay {
            path: "street.avi".into(),
            reason: "decoder died".into(),
        });
    let mut options = options();
    options.lossless = true;
    let (outcome, events, _) = run_within(
        Duration::from_secs(20),
        stages(source, detector),
        options,
        &Shutdown::new(),
    );
    assert!(
        matches!(outcome, Err(PipelineError::Capture(_))),
        "{outcome:?}"
    );
    assert_eq!(lock(&seen).len(), 20);
    assert_eq!(errors(&events), ["capture_failed"]);
}

#[test]
fn a_silent_camera_is_reported_lost_then_back_and_the_lamp_fails_on_meanwhile() {
    let dir = scratch("camera-lost");
    let shutdown = Shutdown::new();
    let source = ScriptedSource::new()
        .paced(50)
        .frames(10, 0)
        .silence(Duration::from_millis(1500))
        .frames(20, 0)
        .stopped_by(&shutdown);
    let mut options = options();
    options.camera_lost_after = Duration::from_millis(600);
    let mut stages = stages(source, ScriptedDetector::empty());
    stages.lamp = Some(lamp(&dir));
    let (outcome, events, _) = run_within(Duration::from_secs(20), stages, options, &shutdown);
    outcome.unwrap();
    let lost = events
        .iter()
        .position(|e| matches!(e, Body::Error(r) if r.code == "camera_lost"))
        .expect("camera_lost");
    let back = events
        .iter()
        .position(|e| matches!(e, Body::Status(s) if s.state == "camera_back"))
        .expect("camera_back");
    assert!(lost < back);
    // (The lamp may also start at its fail-safe level, before any frame.)
    let fail_safe = events[lost..]
        .iter()
        .position(|e| matches!(e, Body::Light(l) if l.reason == LightReason::FailSafe))
        .map(|i| lost + i)
        .expect("the lamp fails on while the camera is lost");
    assert!(fail_safe < back, "{events:?}");
}

#[test]
fn health_events_come_on_time_and_the_last_one_has_the_run_totals() {
    let shutdown = Shutdown::new();
    let source = ScriptedSource::new()
        .paced(50)
        .frames(40, 0)
        .stopped_by(&shutdown);
    let mut options = options();
    options.health_interval = Duration::from_millis(200);
    let (outcome, events, _) = run_within(
        Duration::from_secs(20),
        stages(source, ScriptedDetector::empty()),
        options,
        &shutdown,
    );
    outcome.unwrap();
    let healths: Vec<&events::Health> = events
        .iter()
        .filter_map(|e| match e {
            Body::Health(h) => Some(h),
            _ => None,
        })
        .collect();
    // 40 frames at 50 fps: 0.8 s, so three on time plus the closing one.
    assert!(healths.len() >= 4, "{healths:?}");
    let last = healths.last().unwrap();
    assert_eq!((last.frames, last.inferences), (40, 40));
    assert!(
        healths[1].fps > 30.0 && healths[1].fps < 70.0,
        "{healths:?}"
    );
    assert!(matches!(&events[0], Body::Status(s) if s.state == "started"));
}

#[test]
fn max_frames_ends_the_run_and_counts_are_reported() {
    let (detector, _) = recording(Duration::ZERO);
    let source = ScriptedSource::new().frames(50, 0);
    let mut options = options();
    options.max_frames = Some(12);
    options.lossless = true;
    let (outcome, _, _) = run_within(
        Duration::from_secs(20),
        stages(source, detector),
        options,
        &Shutdown::new(),
    );
    let summary = outcome.unwrap();
    assert_eq!((summary.frames, summary.analysed), (12, 12));
}

/// A person (40×100 px) walking right at 50 px/s across a line at x = 350,
/// seen by the scripted detector on every frame it is asked about.
fn walker() -> ScriptedDetector {
    ScriptedDetector::new(|sequence| {
        let x = 100.0 + 2.0 * sequence as f32;
        vec![Detection {
            class: Class::Person,
            score: 0.9,
            bbox: [x, 200.0, x + 40.0, 300.0],
        }]
    })
}

fn crossings(events: &[Body]) -> Vec<&crate::events::Crossing> {
    events
        .iter()
        .filter_map(|e| match e {
            Body::Crossing(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn the_adaptive_rate_runs_the_model_on_a_fraction_of_the_frames_and_counts_the_same() {
    let run_with = |adaptive: bool| {
        let mut options = options();
        options.lossless = true;
        options.pace.adaptive = adaptive;
        options
            .analytics
            .lines
            .push(crate::analytics::LineSettings::new(
                "line",
                [350.0, 0.0],
                [350.0, 400.0],
            ));
        // 250 frames at 25 fps: 10 s, the line crossed after 4.5 s.
        let (outcome, events, _) = run_within(
            Duration::from_secs(30),
            stages(ScriptedSource::new().frames(250, 0), walker()),
            options,
            &Shutdown::new(),
        );
        (outcome.unwrap(), events)
    };
    let (every, every_events) = run_with(false);
    let (paced, paced_events) = run_with(true);
    assert_eq!((every.inferences, every.predicted), (250, 0));
    assert_eq!(paced.frames, 250);
    assert_eq!(paced.inferences + paced.predicted, 250, "{paced:?}");
    // Slow for its size: seen at the floor rate (min_fps, 3 a second) once
    // confirmed; a fraction of 25.
    assert!(
        paced.inferences <= 45,
        "{} inferences of 250 frames",
        paced.inferences
    );
    assert_eq!(paced.totals, every.totals);
    let (a, b) = (crossings(&every_events), crossings(&paced_events));
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_eq!(b[0].direction, a[0].direction);
    // Reported where the path meets the line.
    let at = b[0].position.unwrap();
    assert!((at[0] - 350.0).abs() < 0.5, "{at:?}");
    let last = paced_events
        .iter()
        .rev()
        .find_map(|e| match e {
            Body::Health(h) => Some(h),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (last.inferences, last.predicted),
        (paced.inferences, paced.predicted)
    );
}
