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
            // fuzz/seeds holds fuzzer inputs (some copies of these files,
            // some made to fail), not configurations a pole is given.
            if !name.starts_with('.') && name != "target" && name != "fuzz" {
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

/// The folder of the fetched LiteRT runtime for this machine.
fn runtime_dir() -> std::path::PathBuf {
    models_cache().join("runtime").join(std::env::consts::ARCH)
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
    // check-config loads the model and the runtime as the daemon does: put
    // them where a pole has them (the model files beside the manifest's
    // folder named by detect.model_dir, the runtime on the loader's path).
    let dir = scratch("shipped-configs");
    let cache = models_cache();
    for config in configs {
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("\"../../", &format!("\"{}/", repo().display()))
            .replace(
                "# model_dir = \"/usr/share/luciole/models\"",
                &format!("model_dir = \"{}/models\"", cache.display()),
            )
            // The image's configurations (image-build/rootfs, tests/image/pole)
            // name the production paths: the manifest under
            // /usr/share/luciole/models, the runtime at /usr/lib.
            .replace(
                "\nmodel = \"/usr/share/luciole/models/",
                &format!("\nmodel = \"{}/models/", repo().display()),
            )
            .replace(
                "\nruntime = \"/usr/lib/libLiteRt.so\"",
                &format!(
                    "\nruntime = \"{}/libLiteRt.so\"\nmodel_dir = \"{}/models\"",
                    runtime_dir().display(),
                    cache.display()
                ),
            );
        let copy = dir.join(config.file_name().unwrap());
        std::fs::write(&copy, text).unwrap();
        let output = luciole()
            .args(["check-config", copy.to_str().unwrap()])
            .env("LD_LIBRARY_PATH", runtime_dir())
            .output()
            .unwrap();
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

/// A replay pole whose file goes on with `rest`.
fn replay_pole(dir: &Path, rest: &str) -> std::path::PathBuf {
    let camera = format!(
        "source = \"replay\"\n[camera.replay]\npath = \"{}\"\n\n{rest}",
        footage().join("vtest.avi").display()
    );
    write_config(dir, "pole.toml", &camera)
}

/// Runs `openssl` with `args` in `dir`, failing loudly when it is missing.
fn openssl(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (package openssl) is needed to make test certificates");
    assert!(status.success(), "openssl {args:?}");
}

#[test]
fn check_config_and_the_daemon_refuse_what_the_daemon_cannot_start_with() {
    let cache = models_cache();
    let manifest = repo().join("models/mobilenet_ssd_v2_coco_quant_postprocess.toml");
    let runtime = runtime_dir().join("libLiteRt.so");
    let detect = |model_dir: &Path, runtime: &str| {
        format!(
            "[detect]\nmodel = \"{}\"\nmodel_dir = \"{}\"\nruntime = \"{runtime}\"\n",
            manifest.display(),
            model_dir.display()
        )
    };
    let dir = scratch("startup-checks");
    // A CA certificate written as DER (binary), as some CAs hand them out.
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=test CA",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        &dir,
        &["x509", "-in", "ca.pem", "-outform", "der", "-out", "ca.der"],
    );
    std::fs::write(dir.join("password"), "").unwrap();
    // A model folder holding the model but not its labels.
    let half = dir.join("half-models");
    std::fs::create_dir_all(&half).unwrap();
    std::fs::copy(
        cache.join("models/mobilenet_ssd_v2_coco_quant_postprocess.tflite"),
        half.join("mobilenet_ssd_v2_coco_quant_postprocess.tflite"),
    )
    .unwrap();
    let outbox = format!("[outbox]\npath = \"{}\"\n", dir.join("outbox").display());
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "DER CA",
            format!("{outbox}[mqtt]\nhost = \"127.0.0.1\"\nca_file = \"ca.der\"\n"),
            vec![
                "mqtt.ca_file = ".into(),
                "binary DER, not PEM: convert it with `openssl x509 -inform der -in ".into(),
                "ca.der -out ".into(),
            ],
        ),
        (
            "empty password",
            format!("{outbox}[mqtt]\nhost = \"127.0.0.1\"\ntls = false\nusername = \"pole\"\npassword_file = \"password\"\n"),
            vec!["mqtt.password_file = ".into(), "password\": the file is empty".into()],
        ),
        (
            "no label file",
            detect(&half, &runtime.display().to_string()),
            vec![
                "detect.model_dir = ".into(),
                format!("label file {}: no such file", half.join("coco_labels.txt").display()),
            ],
        ),
        (
            "missing runtime",
            detect(&cache.join("models"), "/nonexistent/libLiteRt.so"),
            vec!["detect.runtime = \"/nonexistent/libLiteRt.so\": cannot load: ".into()],
        ),
        (
            "runtime not on the library path",
            detect(&cache.join("models"), "libLiteRt-not-installed.so"),
            vec![
                "detect.runtime = \"libLiteRt-not-installed.so\": cannot load".into(),
                "looked up in the system's library path".into(),
            ],
        ),
    ];
    for (name, rest, wanted) in cases {
        let config = replay_pole(&dir, &rest);
        let path = config.display().to_string();
        let checked = run(&["check-config", &path]);
        let err = stderr(&checked);
        assert_eq!(checked.status.code(), Some(1), "{name}: {err}");
        assert!(stdout(&checked).is_empty(), "{name}");
        for text in &wanted {
            assert!(err.contains(text.as_str()), "{name}: {text:?} not in {err}");
        }
        let line = err.lines().next().unwrap();
        assert!(line.starts_with(&format!("{path}:")), "{name}: {err}");
        assert!(
            !err.contains("os error 2): No such"),
            "{name}: the reason once: {err}"
        );
        // The daemon refuses the same file with the same words, before it
        // opens the camera, the outbox or the network.
        let ran = run(&["run", "--config", &path]);
        let daemon = stderr(&ran);
        assert_eq!(ran.status.code(), Some(1), "{name}: {daemon}");
        assert!(daemon.contains(line), "{name}: {line:?} not in {daemon}");
        assert!(
            !dir.join("outbox").exists(),
            "{name}: the outbox was opened"
        );
    }
    // The same checks pass once the files are right.
    std::fs::write(dir.join("password"), "secret\n").unwrap();
    let good = format!(
        "{outbox}[mqtt]\nhost = \"127.0.0.1\"\nca_file = \"ca.pem\"\nusername = \"pole\"\npassword_file = \"password\"\n{}",
        detect(&cache.join("models"), &runtime.display().to_string())
    );
    let config = replay_pole(&dir, &good);
    let output = run(&["check-config", config.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
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

/// The daemon's standard error, read line by line as it comes.
struct Log {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Log {
    fn follow(stderr: std::process::ChildStderr) -> Log {
        use std::io::BufRead;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Log { lines }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until `count` lines contain `what`, or fails with the log.
    fn wait_for(&self, what: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let seen = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(what))
                .count();
            if seen >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count} line(s) with {what:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn kill(signal: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sighup_applies_a_valid_file_keeps_an_invalid_one_out_and_rolls_back_a_failing_one() {
    let footage = footage();
    let cache = models_cache();
    let dir = scratch("sighup");
    let config = dir.join("pole.toml");
    let pole = |id: &str, rest: &str| {
        format!(
            "[device]\nsite = \"test-site\"\nid = \"{id}\"\n\n[camera]\nsource = \"replay\"\n\n[camera.replay]\npath = \"{}\"\npace = \"realtime\"\nloop = true\n\n[events]\nhealth_interval_ms = 1000\n\n[outbox]\npath = \"{}\"\n{rest}",
            footage.join("vtest.avi").display(),
            dir.join("outbox").display()
        )
    };
    std::fs::write(&config, pole("pole-1", "")).unwrap();
    let mut child = luciole()
        .args(["run", "--config", config.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::follow(child.stderr.take().unwrap());
    log.wait_for("capturing", 1);

    // An invalid file: the daemon runs on, says why in the log and in an
    // error event.
    std::fs::write(&config, pole("pole-1", "[nonsense]\n")).unwrap();
    kill("HUP", child.id());
    log.wait_for("configuration not applied", 1);
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP ended the daemon:\n{}",
        log.text()
    );

    // A valid, changed file: applied (the events now come from pole-2).
    std::fs::write(&config, pole("pole-2", "")).unwrap();
    kill("HUP", child.id());
    log.wait_for("capturing", 2);

    // A valid file whose detector cannot open (the LiteRT library named as
    // the classic TFLite runtime): back to pole-2's configuration.
    let detect =
        format!(
        "[detect]\nmodel = \"{}\"\nmodel_dir = \"{}\"\nbackend = \"tflite\"\nruntime = \"{}\"\n",
        repo().join("models/mobilenet_ssd_v2_coco_quant_postprocess.toml").display(),
        cache.join("models").display(),
        runtime_dir().join("libLiteRt.so").display()
    );
    std::fs::write(&config, pole("pole-3", &detect)).unwrap();
    kill("HUP", child.id());
    log.wait_for("back to the previous one", 1);
    log.wait_for("capturing", 3);
    assert!(child.try_wait().unwrap().is_none(), "{}", log.text());

    // And it still stops cleanly.
    kill("TERM", child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no stop:\n{}", log.text());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status:?}:\n{}", log.text());
    log.wait_for("stopping on signal", 1);

    let output = run(&["events", "--config", config.to_str().unwrap(), "--all"]);
    assert!(output.status.success(), "{}", stderr(&output));
    // After the summary lines, one event per line.
    let events: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |device: &str, kind: &str, field: &str, value: &str| {
        events
            .iter()
            .position(|e| e["device"] == device && e["kind"] == kind && e["data"][field] == value)
    };
    let seen = |what| -> usize {
        let at: Option<usize> = what;
        at.unwrap_or_else(|| panic!("missing an event; events:\n{}", stdout(&output)))
    };
    let rejected = seen(find("pole-1", "error", "code", "config_rejected"));
    let message = events[rejected]["data"]["message"].as_str().unwrap();
    assert!(message.contains("nonsense: unknown section"), "{message}");
    let reloading = seen(find("pole-1", "status", "state", "reloading"));
    let started = seen(find("pole-2", "status", "state", "started"));
    let failed = seen(find("pole-3", "error", "code", "detector_unavailable"));
    let rolled_back = seen(find("pole-2", "error", "code", "config_rolled_back"));
    let last = events.last().unwrap();
    assert_eq!(last["device"], "pole-2");
    assert_eq!(last["data"]["state"], "stopping", "{last}");
    assert!(
        rejected < reloading && reloading < started && started < failed && failed < rolled_back
    );
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
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
