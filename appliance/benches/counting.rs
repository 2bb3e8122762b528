//! Counting on a small board's budget: the demo footage through the whole
//! pipeline (`luciole demo --json`, the real model and runtime) with the
//! model on every frame and with the adaptive inference rate, plus fixed
//! rates of 5 and 2.5 inferences per second, on vtest.avi and variants of
//! it: looped three times (length), with 15 still seconds in the middle,
//! and re-sampled to 5 frames per second.
//!
//! Run: `cargo bench --bench counting` (needs `bash tests/setup`). Prints a
//! markdown table per recording: frames, inferences (and their share of the
//! every-frame run's), CPU seconds of the demo process and its decoder
//! (`getrusage` of the waited-for children), CPU seconds per hour of video,
//! and the counts per line and direction with their difference from the
//! every-frame run. Target: half the inferences or fewer, every count
//! within ±1.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How the model is paced in one run.
#[derive(Clone, Copy)]
enum Mode {
    /// `--every-frame`: motion gating and the adaptive rate off.
    Every,
    /// As shipped: motion gating and the adaptive rate at its default
    /// bounds.
    Adaptive,
    /// The adaptive rate pinned to this many inferences per second.
    Fixed(f32),
}

impl Mode {
    fn name(self) -> String {
        match self {
            Mode::Every => "every frame".into(),
            Mode::Adaptive => "adaptive".into(),
            Mode::Fixed(fps) => format!("fixed {fps}/s"),
        }
    }
}

/// A recording: a name, its replay keys and the frames to play.
struct Recording {
    name: &'static str,
    /// Replaces the demo's `[camera.replay]` path and pace lines.
    replay: String,
    /// Frames per second of video (for the per-hour figures).
    fps: f64,
    frames: Option<u64>,
}

/// What one run printed and cost.
struct Outcome {
    frames: u64,
    inferences: u64,
    cpu_s: f64,
    counts: BTreeMap<String, u64>,
}

fn cpu_of_children() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is handed.
    let usage = unsafe {
        assert_eq!(
            libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()),
            0
        );
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn run(dir: &Path, recording: &Recording, mode: Mode) -> Outcome {
    let shipped = format!(
        "path = \"{}/footage/vtest.avi\"\npace = \"fast\"",
        support::models_cache().display()
    );
    let mut text = support::demo_config_text(&dir.join("outbox"));
    assert!(text.contains(&shipped), "the demo replays vtest.avi");
    text = text.replace(&shipped, &recording.replay).replace(
        "source = \"replay\"",
        &format!("source = \"replay\"\nfps = {}", recording.fps),
    );
    let pace = match mode {
        Mode::Every => String::new(),
        Mode::Adaptive => String::new(),
        Mode::Fixed(fps) => format!("adaptive = true\nmin_fps = {fps}\nmax_fps = {fps}\n"),
    };
    assert!(text.contains("\n[detect]\n"));
    text = text.replace("\n[detect]\n", &format!("\n[detect]\n{pace}"));
    let _ = std::fs::remove_dir_all(dir.join("outbox"));
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("demo.toml");
    std::fs::write(&config, text).unwrap();
    let mut command = support::luciole();
    command.args(["demo", "--json", "--config", config.to_str().unwrap()]);
    if matches!(mode, Mode::Every) {
        command.arg("--every-frame");
    }
    if let Some(n) = recording.frames {
        command.args(["--frames", &n.to_string()]);
    }
    let before = cpu_of_children();
    let output = command.output().expect("luciole runs");
    let cpu_s = cpu_of_children() - before;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let summary: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("summary").cloned())
        .expect("a summary line");
    let counts = summary["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                format!(
                    "{} {}",
                    c["line"].as_str().unwrap(),
                    c["direction"].as_str().unwrap()
                ),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect();
    Outcome {
        frames: summary["frames"].as_u64().unwrap(),
        inferences: summary["inferences"].as_u64().unwrap(),
        cpu_s,
        counts,
    }
}

/// Frames of vtest.avi as JPEG files in `dir`, through an ffmpeg filter.
fn frames(dir: &Path, filter: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-i"])
        .arg(support::footage().join("vtest.avi"))
        .args(["-vf", filter, "-fps_mode", "passthrough", "-q:v", "2"])
        .arg(dir.join("%05d.jpg"))
        .status()
        .expect("ffmpeg runs (Debian package ffmpeg)");
    assert!(status.success());
    dir.to_owned()
}

fn image_replay(dir: &Path) -> String {
    format!("path = \"{}\"\npace = \"fast\"", dir.display())
}

fn main() {
    support::footage();
    let scratch =
        std::env::temp_dir().join(format!("luciole-bench-counting-{}", std::process::id()));
    let vtest = support::footage().join("vtest.avi");
    let recordings = [
        Recording {
            name: "vtest.avi (795 frames, 10 fps)",
            replay: format!("path = \"{}\"\npace = \"fast\"", vtest.display()),
            fps: 10.0,
            frames: None,
        },
        Recording {
            name: "vtest.avi at 5 fps (every other frame)",
            replay: image_replay(&frames(&scratch.join("half"), "select=not(mod(n\\,2))")),
            fps: 5.0,
            frames: None,
        },
        Recording {
            name: "vtest.avi with 15 still seconds (550 frames, 10 fps)",
            // The first 400 frames, frame 200 held for 150 more (15 still
            // seconds) in the middle.
            replay: image_replay(&support::still_clip(&scratch.join("still"), 400, 200, 150)),
            fps: 10.0,
            frames: None,
        },
        Recording {
            name: "vtest.avi looped 3 times (2385 frames, 10 fps)",
            replay: format!(
                "path = \"{}\"\npace = \"fast\"\nloop = true",
                vtest.display()
            ),
            fps: 10.0,
            frames: Some(3 * 795),
        },
    ];
    for (r, recording) in recordings.iter().enumerate() {
        let modes: &[Mode] = if r == 0 {
            &[
                Mode::Every,
                Mode::Adaptive,
                Mode::Fixed(5.0),
                Mode::Fixed(2.5),
            ]
        } else {
            &[Mode::Every, Mode::Adaptive]
        };
        let outcomes: Vec<Outcome> = modes
            .iter()
            .enumerate()
            .map(|(m, &mode)| run(&scratch.join(format!("run-{r}-{m}")), recording, mode))
            .collect();
        let reference = &outcomes[0];
        let mut lines: Vec<&String> = outcomes.iter().flat_map(|o| o.counts.keys()).collect();
        lines.sort();
        lines.dedup();
        println!("\n{}\n", recording.name);
        print!("| mode | frames | inferences | share | CPU s | CPU s per hour of video |");
        for line in &lines {
            print!(" {line} |");
        }
        println!();
        println!("|{}", "---|".repeat(6 + lines.len()));
        for (mode, o) in modes.iter().zip(&outcomes) {
            let hours = o.frames as f64 / recording.fps / 3600.0;
            print!(
                "| {} | {} | {} | {:.2} | {:.1} | {:.0} |",
                mode.name(),
                o.frames,
                o.inferences,
                o.inferences as f64 / reference.inferences.max(1) as f64,
                o.cpu_s,
                o.cpu_s / hours
            );
            for line in &lines {
                let n = o.counts.get(*line).copied().unwrap_or(0);
                let base = reference.counts.get(*line).copied().unwrap_or(0);
                let diff = n as i64 - base as i64;
                if std::ptr::eq(o, reference) {
                    print!(" {n} |");
                } else {
                    print!(" {n} ({diff:+}) |");
                }
            }
            println!();
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
