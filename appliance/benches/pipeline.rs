//! End-to-end pipeline benchmark: `luciole demo`'s pipeline (replay of
//! vtest.avi as fast as possible → capture thread → queue → motion gate →
//! detector → tracker → analytics → events) against the pure inference rate
//! on the same frames (decoded beforehand into memory as the same YUYV
//! frames) with the same model and threads, in the same run.
//!
//! Run: `cargo bench --bench pipeline` (needs `bash tests/setup`). Prints a
//! markdown table: frames per second of pure inference and of the
//! pipeline (gating off, so both run the model on every frame, and gating
//! on), and the ratio. Target: pipeline ≥ 0.95 × pure inference.
//! `LUCIOLE_BENCH_FRAMES` sets the frames (default 400).
//!
//! A second table times the lamp: the pipeline (2 threads, gating on) on
//! vtest.avi played at its own pace (10 fps, as a camera delivers frames)
//! with a `[lighting]` section driving a PWM dimmer through the sysfs
//! interface (a file tree standing in for `/sys`, handed to the pipeline
//! as an opened lamp);
//! presence = a person approaching the lamp-post line, no hold, so every
//! approach boosts again. For each boost: time from the arrival of the
//! frame that first showed the presence to the return of the output write
//! that started the ramp (p50, p99, max).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Instant;

use luciole::capture::{self, FrameLayout, FrameRef, PixelFormat, YuvEncoding};
use luciole::config;
use luciole::detect::{self, Detection};
use luciole::light::Lighting;
use luciole::pipeline::{self, Lamp, Stages};
use luciole::shutdown::Shutdown;

const WIDTH: u32 = 768;
const HEIGHT: u32 = 576;

/// The demo configuration with absolute paths and the given threads.
fn settings(threads: u32, motion: bool, dir: &std::path::Path) -> config::Settings {
    let text = support::demo_config_text(&dir.join("outbox"))
        .replace("threads = 2", &format!("threads = {threads}"))
        .replace("enabled = true", &format!("enabled = {motion}"));
    let path = dir.join("demo.toml");
    std::fs::write(&path, text).unwrap();
    config::load(&path).unwrap()
}

/// The first `n` frames of vtest.avi as YUYV, as the replay delivers them.
fn frames(n: usize) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(support::footage().join("vtest.avi"))
        .args([
            "-frames:v",
            &n.to_string(),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuyv422",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success());
    out.stdout
        .chunks_exact((WIDTH * HEIGHT * 2) as usize)
        .map(<[u8]>::to_vec)
        .collect()
}

fn pure_inference(settings: &config::Settings, frames: &[Vec<u8>]) -> f64 {
    let mut detector = detect::open(&settings.detector().unwrap()).unwrap();
    let mut out: Vec<Detection> = Vec::new();
    fn frame(data: &[u8], i: usize) -> FrameRef<'_> {
        FrameRef {
            data,
            layout: FrameLayout {
                format: PixelFormat::Yuyv,
                width: WIDTH,
                height: HEIGHT,
                stride: WIDTH * 2,
                yuv: YuvEncoding::default(),
            },
            sequence: i as u64,
            timestamp: std::time::Duration::from_millis(100 * i as u64),
            stream: 0,
        }
    }
    detector.detect(&frame(&frames[0], 0), &mut out).unwrap();
    let start = Instant::now();
    for (i, data) in frames.iter().enumerate() {
        detector.detect(&frame(data, i), &mut out).unwrap();
    }
    frames.len() as f64 / start.elapsed().as_secs_f64()
}

/// The stages the daemon would open for `settings`, with `lamp`.
fn stages(settings: &config::Settings, shutdown: &Shutdown, lamp: Option<Lamp>) -> Stages {
    Stages {
        source: capture::open(&settings.camera, shutdown).unwrap(),
        detector: Some(detect::open(&settings.detector().unwrap()).unwrap()),
        lamp,
    }
}

fn end_to_end(settings: &config::Settings, n: usize) -> (f64, u64) {
    let mut options = settings.pipeline_options();
    options.max_frames = Some(n as u64);
    let shutdown = Shutdown::new();
    let stages = stages(settings, &shutdown, None);
    let summary = pipeline::run(
        stages,
        &options,
        &mut Vec::<luciole::events::Body>::new(),
        &shutdown,
    )
    .unwrap();
    assert_eq!(summary.frames, n as u64);
    (
        summary.frames as f64 / summary.elapsed.as_secs_f64(),
        summary.inferences,
    )
}

fn percentile(sorted: &[std::time::Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn lamp_latency(dir: &std::path::Path) {
    let sys = dir.join("sys");
    let _ = std::fs::remove_dir_all(&sys);
    support::fake_pwm(&sys);
    let mut settings = settings(2, true, dir);
    let text = std::fs::read_to_string(dir.join("demo.toml"))
        .unwrap()
        .replace("pace = \"fast\"", "pace = \"realtime\"")
        + "[lighting]\nmode = \"schedule\"\nschedule = { on = \"00:00\", off = \"24:00\", timezone = \"UTC\" }\n\
           night_pct = 30\nboost_pct = 100\nhold_s = 0\nfade_s = 1\n\
           [lighting.presence]\nclasses = [\"person\"]\nlines = [\"lamp-post\"]\n\
           [lighting.dimmer]\nchip = \"pwmchip3\"\nchannel = 0\nperiod_ns = 1000000\n";
    std::fs::write(dir.join("demo.toml"), text).unwrap();
    settings = config::load(&dir.join("demo.toml")).unwrap_or(settings);
    let lighting = settings.lighting.as_ref().unwrap();
    let lamp = Lamp {
        lighting: Lighting::open_with_sysfs(lighting, &sys).unwrap(),
        presence: lighting.presence.clone(),
        feed: luciole::light::runner::LightFeed::new(),
    };
    let shutdown = Shutdown::new();
    let stages = stages(&settings, &shutdown, Some(lamp));
    let options = settings.pipeline_options();
    let summary = pipeline::run(
        stages,
        &options,
        &mut Vec::<luciole::events::Body>::new(),
        &shutdown,
    )
    .unwrap();
    let mut latencies = summary.boost_latencies.clone();
    latencies.sort();
    assert!(!latencies.is_empty(), "no presence boost on vtest");
    println!();
    println!("| boosts | frame → lamp write p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {:.1} | {:.1} | {:.1} |",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap().as_secs_f64() * 1000.0
    );
}

fn main() {
    let n: usize = std::env::var("LUCIOLE_BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let dir = support::scratch("bench-pipeline");
    let frames = frames(n);
    assert_eq!(frames.len(), n);
    println!("| threads | pure inference fps | pipeline fps, gating off | ratio | pipeline fps, gating on | inferences with gating |");
    println!("|---|---|---|---|---|---|");
    for threads in [1, 2] {
        let off = settings(threads, false, &dir);
        let on = settings(threads, true, &dir);
        let pure = pure_inference(&off, &frames);
        let (e2e, _) = end_to_end(&off, n);
        let (gated, inferences) = end_to_end(&on, n);
        println!(
            "| {threads} | {pure:.1} | {e2e:.1} | {:.3} | {gated:.1} | {inferences} of {n} |",
            e2e / pure
        );
    }
    lamp_latency(&dir);
}
