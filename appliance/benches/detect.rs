//! Detection benchmark: the shipped models on the real runtimes, on a frame
//! of real footage (vtest.avi frame 200 as a 640x480 YUYV camera frame),
//! beside the Python `ai-edge-litert` Interpreter timed in the same run on
//! the same input tensor.
//!
//! Run: `cargo bench --bench detect` (runs models/fetch and
//! tests/reference/setup, which cache what they download). Prints one
//! markdown table: median milliseconds per inference at 1 and 2 threads,
//! pre- and post-processing, the Python median and the Rust/Python ratio.
//! `LUCIOLE_BENCH_RUNS` sets the timed runs per row (default 50).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use luciole::capture::{FrameLayout, FrameRef, PixelFormat, YuvEncoding};
use luciole::convert::Converter;
use luciole::detect::{self, Accelerator, Backend, Class, DetectSettings, Detection, Detector};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
const WARM_UP: usize = 5;
/// Turns Rust and Python take, each timing runs / ROUNDS inferences.
const ROUNDS: usize = 5;

/// Frame 200 of vtest.avi at 640x480 in YUYV, as a camera delivers it.
fn camera_frame() -> Vec<u8> {
    let footage = support::footage();
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(footage.join("vtest.avi"))
        .args([
            "-vf",
            &format!("select=eq(n\\,200),scale={WIDTH}:{HEIGHT}"),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuyv422",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg failed");
    out.stdout
}

fn frame(data: &[u8]) -> FrameRef<'_> {
    FrameRef {
        data,
        layout: FrameLayout {
            format: PixelFormat::Yuyv,
            width: WIDTH,
            height: HEIGHT,
            stride: WIDTH * 2,
            yuv: YuvEncoding::default(),
        },
        sequence: 0,
        timestamp: Duration::ZERO,
        stream: 0,
    }
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

/// The fastest run: what the code costs when nothing else competes for the
/// cores (this machine is shared, medians move with its load).
fn min_ms(samples: &[Duration]) -> f64 {
    samples.iter().min().unwrap().as_secs_f64() * 1000.0
}

/// Per-run times of the Rust detector: (pre, inference, post).
#[derive(Default)]
struct Samples {
    pre: Vec<Duration>,
    inference: Vec<Duration>,
    post: Vec<Duration>,
}

fn time_rust(
    detector: &mut dyn Detector,
    data: &[u8],
    runs: usize,
    samples: &mut Samples,
) -> usize {
    let mut found: Vec<Detection> = Vec::new();
    for _ in 0..runs {
        detector.detect(&frame(data), &mut found).expect("detects");
        let t = detector.timings();
        samples.pre.push(t.preprocess);
        samples.inference.push(t.inference);
        samples.post.push(t.postprocess);
    }
    found.len()
}

/// Invoke times of the Python Interpreter on the same input tensor (its
/// own warm-up runs left out).
fn time_python(
    python: &Path,
    manifest: &Path,
    models: &Path,
    input: &Path,
    threads: u32,
    runs: usize,
) -> Vec<Duration> {
    let out = Command::new(python)
        .arg(support::repo().join("tests/reference/detect_reference.py"))
        .arg("--manifest")
        .arg(manifest)
        .arg("--model-dir")
        .arg(models)
        .arg("--input")
        .arg(input)
        .arg("--frame")
        .arg(format!("{WIDTH}x{HEIGHT}"))
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--repeat")
        .arg((WARM_UP + runs).to_string())
        .output()
        .expect("the reference runs");
    assert!(
        out.status.success(),
        "reference: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    result["invoke_ms"].as_array().unwrap()[WARM_UP..]
        .iter()
        .map(|v| Duration::from_secs_f64(v.as_f64().unwrap() / 1000.0))
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing.
    let runs: usize = std::env::var("LUCIOLE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
        .max(ROUNDS);
    let cache = PathBuf::from(support::repo_script("models/fetch"));
    let python = PathBuf::from(support::repo_script("tests/reference/setup"));
    let models = cache.join("models");
    let data = camera_frame();
    let scratch = std::env::temp_dir().join(format!("luciole-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();

    println!("Detection, vtest.avi frame 200 as {WIDTH}x{HEIGHT} YUYV; median of {runs} runs after {WARM_UP} warm-up, Rust and Python in {ROUNDS} alternating rounds; ms");
    println!();
    println!("| model | backend | threads | inference median (min) | pre | post | (pre+post)/inference | Python invoke median (min) | Rust/Python median (min) | detections |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, backends) in [
        (
            "mobilenet_ssd_v2_coco_quant_postprocess",
            &[Backend::Litert, Backend::Tflite][..],
        ),
        ("ssd_mobilenetv2_oidv4_fp16", &[Backend::Litert][..]),
    ] {
        let manifest = support::repo().join("models").join(format!("{name}.toml"));
        let spec: toml::Table =
            toml::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        let input = spec["input"].as_table().unwrap();
        let (w, h) = (
            input["width"].as_integer().unwrap() as u32,
            input["height"].as_integer().unwrap() as u32,
        );
        let mut tensor = vec![0u8; (w * h * 3) as usize];
        Converter::new()
            .to_rgb_scaled(&frame(&data), w, h, &mut tensor)
            .unwrap();
        let input_path = scratch.join(format!("{name}.rgb"));
        std::fs::write(&input_path, &tensor).unwrap();
        for &backend in backends {
            for threads in [1, 2] {
                let runtime = match backend {
                    Backend::Litert => cache
                        .join("runtime")
                        .join(std::env::consts::ARCH)
                        .join("libLiteRt.so"),
                    Backend::Tflite => cache
                        .join("runtime")
                        .join(std::env::consts::ARCH)
                        .join("libtensorflowlite_c.so"),
                };
                let settings = DetectSettings {
                    model: manifest.clone(),
                    model_dir: models.clone(),
                    backend,
                    runtime,
                    accelerator: Accelerator::Cpu,
                    npu_dispatch_dir: None,
                    threads,
                    delegate: None,
                    min_scores: Class::ALL.iter().map(|c| (*c, 0.5)).collect(),
                    letterbox: false,
                };
                // Rust and Python take turns, so that a change in the
                // machine's load weighs on both alike.
                let mut detector = detect::open(&settings).expect("the detector opens");
                time_rust(detector.as_mut(), &data, WARM_UP, &mut Samples::default());
                let (mut ours, mut theirs) = (Samples::default(), Vec::new());
                let mut detections = 0;
                for _ in 0..ROUNDS {
                    detections = time_rust(detector.as_mut(), &data, runs / ROUNDS, &mut ours);
                    theirs.extend(time_python(
                        &python,
                        &manifest,
                        &models,
                        &input_path,
                        threads,
                        runs / ROUNDS,
                    ));
                }
                let (inference, inference_min) =
                    (median_ms(ours.inference.clone()), min_ms(&ours.inference));
                let (pre, post) = (median_ms(ours.pre), median_ms(ours.post));
                let (python, python_min) = (median_ms(theirs.clone()), min_ms(&theirs));
                println!(
                    "| {name} | {} | {threads} | {:.2} ({:.2}) | {:.3} | {:.3} | {:.1}% | {python:.2} ({python_min:.2}) | {:.2} ({:.2}) | {} |",
                    backend.name(),
                    inference,
                    inference_min,
                    pre,
                    post,
                    (pre + post) / inference * 100.0,
                    inference / python,
                    inference_min / python_min,
                    detections,
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(scratch);
}
