//! The `luciole` command line, run as a real process: configuration checks,
//! errors on bad input, clean stops on signals.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// Every TOML configuration the repository ships (not Cargo manifests).
fn shipped_configs(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                shipped_configs(&path, found);
            }
        } else if name.ends_with(".toml")
            && name != "Cargo.toml"
            && name != "rust-toolchain.toml"
            && name != "config.toml"
        {
            found.push(path);
        }
    }
}

#[test]
fn every_shipped_pole_config_passes_check_config() {
    // The demo and replay examples point at the fetched footage.
    footage();
    let mut configs = Vec::new();
    shipped_configs(&repo(), &mut configs);
    let configs: Vec<_> = configs
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).unwrap().contains("[camera]"))
        .collect();
    assert!(
        configs.len() >= 2,
        "expected shipped pole configs, found {configs:?}"
    );
    for config in configs {
        let output = run(&["check-config", config.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "{}: {}",
            config.display(),
            stderr(&output)
        );
        let line = stdout(&output);
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.contains(": OK: site "), "{line}");
    }
}

#[test]
fn check_config_lists_every_problem_with_file_line_key_and_reason() {
    let dir = scratch("bad-config");
    let config = write_config(&dir, "pole.toml", "fps = 0\nbuffers = 99\nsource = \"usb\"");
    let output = run(&["check-config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let name = config.display();
    assert!(
        err.contains(&format!(
            "{name}:6 camera.fps = 0: must be between 1 and 120"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{name}:7 camera.buffers = 99: must be between 2 and 32"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{name}:8 camera.source = \"usb\": must be \"v4l2\" or \"replay\""
        )),
        "{err}"
    );
    assert!(err.contains("3 problem(s) found"), "{err}");
    assert!(stdout(&output).is_empty());
}

#[test]
fn check_config_on_a_missing_file_names_the_file() {
    let output = run(&["check-config", "/nonexistent/pole.toml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("/nonexistent/pole.toml: cannot read: No such file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn version_and_help_describe_the_program() {
    let output = run(&["--version"]);
    assert!(output.status.success());
    assert_eq!(
        stdout(&output).trim(),
        format!("luciole {}", env!("CARGO_PKG_VERSION"))
    );
    let help = stdout(&run(&["--help"]));
    for word in ["run", "check-config", "capture", "--log-format"] {
        assert!(help.contains(word), "{help}");
    }
}

#[test]
fn capture_from_a_missing_device_is_a_clear_error() {
    let err = capture_failure("missing-device", "device = \"/dev/video-not-here\"");
    assert!(
        err.contains("camera /dev/video-not-here: cannot open: No such file or directory"),
        "{err}"
    );
}

#[test]
fn capture_from_a_device_that_is_not_a_camera_is_a_clear_error() {
    let err = capture_failure("not-a-camera", "device = \"/dev/null\"");
    assert!(
        err.contains("camera /dev/null: query capabilities:"),
        "{err}"
    );
}

#[test]
fn run_stops_cleanly_on_sigterm_and_sigint() {
    let footage = footage();
    for signal in [nix_signal::TERM, nix_signal::INT] {
        let dir = scratch(&format!("run-signal-{signal}"));
        let camera = format!(
            "source = \"replay\"\n[camera.replay]\npath = \"{}\"\npace = \"realtime\"\nloop = true",
            footage.join("vtest.avi").display()
        );
        let config = write_config(&dir, "pole.toml", &camera);
        let mut child = luciole()
            .args(["run", "--config", config.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(child.try_wait().unwrap().is_none(), "run exited early");
        let sent = Instant::now();
        std::process::Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "exit {:?}: {err}", output.status);
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "stop took {:?}",
            sent.elapsed()
        );
        assert!(err.contains("stopping on signal"), "{err}");
        assert!(err.contains("health"), "{err}");
    }
}

/// Signal names for `kill`.
mod nix_signal {
    pub const TERM: &str = "TERM";
    pub const INT: &str = "INT";
}

#[test]
fn json_logging_writes_one_object_per_line() {
    let dir = scratch("json-log");
    // `capture` gives up on a missing camera (the daemon waits for it).
    let config = write_config(&dir, "pole.toml", "device = \"/dev/video-not-here\"");
    let output = run(&[
        "--log-format",
        "json",
        "capture",
        "-c",
        config.to_str().unwrap(),
        "--frames",
        "1",
        "--out",
        dir.join("frames").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let json_lines: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(json_lines.iter().any(|v| v["level"] == "ERROR"), "{err}");
    assert!(
        json_lines.iter().all(|v| v.get("timestamp").is_some()),
        "{err}"
    );
}

#[test]
fn the_demo_without_its_footage_says_how_to_fetch_it() {
    let dir = scratch("demo-no-footage");
    let text = std::fs::read_to_string(repo().join("appliance/config/demo.toml"))
        .unwrap()
        .replace(
            "\"../../models/",
            &format!("\"{}/models/", repo().display()),
        );
    let config = dir.join("demo.toml");
    std::fs::write(&config, text).unwrap();
    let output = luciole()
        .args(["demo", "--config", config.to_str().unwrap()])
        .env("LUCIOLE_CACHE", dir.join("empty-cache"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("bash tests/setup"), "{err}");
    assert!(err.contains("camera.replay.path"), "{err}");
    assert!(
        err.contains(
            &dir.join("empty-cache/footage/vtest.avi")
                .display()
                .to_string()
        ),
        "the cache named by LUCIOLE_CACHE: {err}"
    );
}
