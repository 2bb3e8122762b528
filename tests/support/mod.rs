//! Helpers shared by the integration tests: the real `luciole` binary, the
//! real footage, scratch folders.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The `luciole` binary cargo built for these tests.
pub fn luciole() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_luciole"));
    command.env_remove("RUST_LOG");
    command
}

/// Runs the binary with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    luciole()
        .args(args)
        .output()
        .expect("the luciole binary runs")
}

/// Runs one of the repository's set-up scripts (`tests/assets/fetch-footage`,
/// `models/fetch`, `tests/reference/setup`) and returns the last line it
/// printed: the folder or program it provides. Fails loudly if it fails.
pub fn repo_script(path: &str) -> String {
    let path = repo().join(path);
    let output = Command::new(&path).output().expect("the script runs");
    assert!(
        output.status.success(),
        "{} failed:\n{}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// The folder holding the real footage (Debian opencv-doc samples),
/// fetched and checked by `tests/assets/fetch-footage`.
pub fn footage() -> PathBuf {
    PathBuf::from(repo_script("tests/assets/fetch-footage"))
}

/// A fresh scratch folder named after the test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("luciole-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a configuration file into `dir` and returns its path.
pub fn write_config(dir: &Path, name: &str, camera: &str) -> PathBuf {
    let path = dir.join(name);
    // Images (captures, snapshots) may be written anywhere in `dir`.
    let text = format!(
        "[device]\nsite = \"test-site\"\nid = \"pole-1\"\n\n[camera]\n{camera}\n\n[privacy]\nimages_dir = {:?}\n",
        dir.display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `luciole capture --config CONFIG --frames N --out OUT`.
pub fn capture(config: &Path, frames: u64, out: &Path) -> Output {
    run(&[
        "capture",
        "--config",
        config.to_str().unwrap(),
        "--frames",
        &frames.to_string(),
        "--out",
        out.to_str().unwrap(),
    ])
}

/// Runs `luciole capture` on a pole whose `[camera]` section is `camera`,
/// expects it to fail with exit code 1, and returns its standard error.
pub fn capture_failure(name: &str, camera: &str) -> String {
    let dir = scratch(name);
    let config = write_config(&dir, "pole.toml", camera);
    let output = capture(&config, 3, &dir.join("frames"));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    stderr(&output)
}

/// The cache holding models and runtimes, fetched by `models/fetch`.
pub fn models_cache() -> PathBuf {
    PathBuf::from(repo_script("models/fetch"))
}

/// The shipped demo configuration's text with every path made absolute
/// (repository models, the cache) and its outbox in `outbox`.
pub fn demo_config_text(outbox: &Path) -> String {
    std::fs::read_to_string(repo().join("appliance/config/demo.toml"))
        .unwrap()
        .replace(
            "\"../../models/",
            &format!("\"{}/models/", repo().display()),
        )
        .replace(
            "${LUCIOLE_CACHE:-${HOME}/.cache/luciole}/demo-outbox",
            &outbox.display().to_string(),
        )
        // Images may be written anywhere beside the outbox.
        .replace(
            "${LUCIOLE_CACHE:-${HOME}/.cache/luciole}/demo-images",
            &outbox.parent().unwrap().display().to_string(),
        )
        .replace(
            "${LUCIOLE_CACHE:-${HOME}/.cache/luciole}",
            &models_cache().display().to_string(),
        )
}

/// A stand-in PWM sysfs tree under `root`: `class/pwm/pwmchip3` for the
/// controller `luciole-pwm-sim`, with channel 0 already exported (plain
/// files cannot create it on export). Returns the channel's folder.
pub fn fake_pwm(root: &Path) -> PathBuf {
    let device = root.join("devices/platform/luciole-pwm-sim");
    std::fs::create_dir_all(&device).unwrap();
    let chip = root.join("class/pwm/pwmchip3");
    std::fs::create_dir_all(chip.join("pwm0")).unwrap();
    std::os::unix::fs::symlink(&device, chip.join("device")).unwrap();
    std::fs::write(chip.join("npwm"), "1\n").unwrap();
    for (name, value) in [
        ("period", "0"),
        ("duty_cycle", "0"),
        ("enable", "0"),
        ("polarity", "normal"),
    ] {
        std::fs::write(chip.join("pwm0").join(name), format!("{value}\n")).unwrap();
    }
    chip.join("pwm0")
}

/// A recording where nothing moves for a while: the first `frames` frames
/// of vtest.avi as JPEG files in `dir/clip`, with frame `hold` repeated
/// `held` more times right after it.
pub fn still_clip(dir: &Path, frames: usize, hold: usize, held: usize) -> PathBuf {
    let src = dir.join("frames");
    std::fs::create_dir_all(&src).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-i"])
        .arg(footage().join("vtest.avi"))
        .args(["-frames:v", &frames.to_string(), "-q:v", "2"])
        .arg(src.join("src-%05d.jpg"))
        .status()
        .expect("ffmpeg runs (Debian package ffmpeg)");
    assert!(status.success());
    let clip = dir.join("clip");
    std::fs::create_dir_all(&clip).unwrap();
    let order = (1..=hold)
        .chain(std::iter::repeat_n(hold, held))
        .chain(hold + 1..=frames);
    for (n, i) in order.enumerate() {
        std::fs::copy(
            src.join(format!("src-{i:05}.jpg")),
            clip.join(format!("{n:05}.jpg")),
        )
        .unwrap();
    }
    clip
}
