//! `luciole light`, run as a real process with the simulated outputs (no
//! hardware; their state file says what a lamp would do): the JSON lines
//! the emulated-hardware harness reads, the hold until SIGTERM/SIGINT, the
//! safe state, and the errors. The real PWM sysfs and GPIO interfaces are
//! driven under QEMU (tests/hil).

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

/// A lamp with a simulated dimmer (and relay) writing their state into
/// `dir`; `dimmer` is the rest of the `[lighting.dimmer]` table.
fn simulated_config(dir: &Path, dimmer: &str) -> std::path::PathBuf {
    let path = dir.join("light.toml");
    std::fs::write(
        &path,
        format!(
            "[lighting]\nmode = \"schedule\"\n\
             schedule = {{ on = \"00:00\", off = \"24:00\", timezone = \"UTC\" }}\n\
             night_pct = 30\nrated_pct = 80\n\
             [lighting.dimmer]\nperiod_ns = 1000000\npolarity = \"normal\"\n{dimmer}\n\
             [lighting.relay]\nbackend = \"simulated\"\nstate_file = \"relay.json\"\n"
        ),
    )
    .unwrap();
    path
}

const SIMULATED: &str = "backend = \"simulated\"\nstate_file = \"dimmer.json\"";

/// The state a simulated output wrote.
fn state(dir: &Path, name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(text.lines().count(), 1, "one whole line: {text:?}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn light_level_prints_one_line_holds_until_sigterm_then_applies_the_safe_state() {
    for signal in ["TERM", "INT"] {
        let dir = scratch(&format!("light-level-{signal}"));
        let config = simulated_config(&dir, SIMULATED);
        let mut child = luciole()
            .args([
                "light",
                "--config",
                config.to_str().unwrap(),
                "--level",
                "30",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        assert_eq!(
            first,
            r#"{"level_pct":30.0,"relay":"on","duty_ns":300000,"period_ns":1000000,"polarity":"normal"}"#
        );
        let dimmer = state(&dir, "dimmer.json");
        assert_eq!(dimmer["duty_ns"], 300000, "{dimmer}");
        assert_eq!(dimmer["level"], 0.3, "{dimmer}");
        assert_eq!(state(&dir, "relay.json")["on"], true);
        std::thread::sleep(Duration::from_millis(300));
        assert!(child.try_wait().unwrap().is_none(), "must hold the outputs");
        let sent = Instant::now();
        std::process::Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        let second = lines.next().unwrap().unwrap();
        assert_eq!(
            second,
            r#"{"level_pct":80.0,"relay":"on","duty_ns":800000,"period_ns":1000000,"polarity":"normal"}"#
        );
        assert!(lines.next().is_none(), "exactly two lines");
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
        assert!(sent.elapsed() < Duration::from_secs(5));
        assert_eq!(state(&dir, "dimmer.json")["duty_ns"], 800000);
    }
}

#[test]
fn light_safe_applies_the_rated_level_and_exits() {
    let dir = scratch("light-safe");
    let config = simulated_config(&dir, SIMULATED);
    let output = luciole()
        .args(["light", "--config", config.to_str().unwrap(), "--safe"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "{\"level_pct\":80.0,\"relay\":\"on\",\"duty_ns\":800000,\"period_ns\":1000000,\"polarity\":\"normal\"}\n"
    );
    assert_eq!(state(&dir, "dimmer.json")["level"], 0.8);
    assert_eq!(state(&dir, "relay.json")["on"], true);
}

#[test]
fn light_errors_name_the_chip_the_reason_and_what_was_found() {
    let dir = scratch("light-errors");
    // The real /sys: this machine has no PWM controller of that name.
    let config = simulated_config(&dir, "backend = \"sysfs\"\nchip = \"fe20c000.pwm\"");
    let output = luciole()
        .args(["light", "--config", config.to_str().unwrap(), "--safe"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("PWM chip \"fe20c000.pwm\" not found under /sys"),
        "{err}"
    );
    assert!(err.contains("chips found"), "{err}");

    // A state file with a real output is a configuration mistake.
    let config = simulated_config(
        &dir,
        "backend = \"sysfs\"\nchip = \"fe20c000.pwm\"\nstate_file = \"d.json\"",
    );
    let output = luciole()
        .args(["light", "--config", config.to_str().unwrap(), "--safe"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(
            "lighting.dimmer.state_file = \"d.json\": only used with backend = \"simulated\""
        ),
        "{}",
        stderr(&output)
    );

    let relay = dir.join("relay.toml");
    std::fs::write(
        &relay,
        "[lighting]\nschedule = { on = \"19:00\", off = \"07:00\", timezone = \"Europe/Paris\" }\n\
         [lighting.relay]\nchip = \"no-such-chip\"\nline = \"lamp-relay\"\n",
    )
    .unwrap();
    let output = luciole()
        .args([
            "light",
            "--config",
            relay.to_str().unwrap(),
            "--level",
            "50",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("GPIO chip \"no-such-chip\" not found"),
        "{err}"
    );
    assert!(err.contains("chips found"), "{err}");

    let output = luciole()
        .args([
            "light",
            "--config",
            relay.to_str().unwrap(),
            "--level",
            "150",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--level 150"),
        "{}",
        stderr(&output)
    );

    let output = luciole()
        .args(["light", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success(), "--level or --safe is required");
}
