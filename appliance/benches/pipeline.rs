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

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use luciole::capture::{FrameLayout, FrameRef, PixelFormat, YuvEncoding};
use luciole::config;
use luciole::detect::{self, Detection};
use luciole::pipeline::{self, Options, Quiet};
use luciole::shutdown::Shutdown;

const WIDTH: u32 = 768;
const HEIGHT: u32 = 576;

fn cache() -> PathBuf {
    PathBuf::from(support::repo_script("models/fetch"))
}

/// The demo configuration with absolute paths and the given threads.
fn settings(threads: u32, motion: bool, dir: &std::path::Path) -> config::Settings {
    let text = std::fs::read_to_string(support::repo().join("appliance/config/demo.toml"))
        .unwrap()
        .replace(
            "\"../../models/",
            &format!("\"{}/models/", support::repo().display()),
        )
        .replace(
            "${HOME}/.cache/luciole/demo-outbox",
            &dir.join("outbox").display().to_string(),
        )
        .replace("${HOME}/.cache/luciole", &cache().display().to_string())
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
    let detect = pipeline::detector_settings(
        settings.detect.as_ref().unwrap(),
        settings.tracking.low_score,
    );
    let mut detector = detect::open(&detect).unwrap();
    let mut out: Vec<Detection> = Vec::new();
    let frame = |data: &[u8], i: usize| FrameRef {
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
    };
    detector.detect(&frame(&frames[0], 0), &mut out).unwrap();
    let start = Instant::now();
    for (i, data) in frames.iter().enumerate() {
        detector.detect(&frame(data, i), &mut out).unwrap();
    }
    frames.len() as f64 / start.elapsed().as_secs_f64()
}

fn end_to_end(settings: &config::Settings, n: usize) -> (f64, u64) {
    let options = Options {
        max_frames: Some(n as u64),
    };
    let summary = pipeline::run(settings, &options, &Shutdown::new(), None, &mut Quiet).unwrap();
    assert_eq!(summary.frames, n as u64);
    (
        summary.frames as f64 / summary.elapsed.as_secs_f64(),
        summary.inferences,
    )
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
}
