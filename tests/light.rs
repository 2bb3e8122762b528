//! `luciole light`, run as a real process against a fake PWM sysfs tree
//! (`LUCIOLE_SYSFS`): the JSON lines the emulated-hardware harness reads,
//! the hold until SIGTERM/SIGINT, the safe state, and the errors.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

fn dimmer_config(dir: &Path, chip: &str) -> std::path::PathBuf {
    let path = dir.join("light.toml");
    std::fs::write(
        &path,
        format!(
            "[lighting]\nmode = \"schedule\"\n\
             schedule = {{ on = \"00:00\", off = \"24:00\", timezone = \"UTC\" }}\n\
             night_pct = 30\nrated_pct = 80\n\
             [lighting.dimmer]\nchip = \"{chip}\"\nchannel = 0\nperiod_ns = 1000000\npolarity = \"normal\"\n"
        ),
    )
    .unwrap();
    path
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn light_level_prints_one_line_holds_until_sigterm_then_applies_the_safe_state() {
    for signal in ["TERM", "INT"] {
        let dir = scratch(&format!("light-level-{signal}"));
        let pwm = fake_pwm(&dir.join("sys"));
        let config = dimmer_config(&dir, "luciole-pwm-sim");
        let mut child = luciole()
            .args([
                "light",
                "--config",
                config.to_str().unwrap(),
                "--level",
                "30",
            ])
            .env("LUCIOLE_SYSFS", dir.join("sys"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        assert_eq!(
            first,
            r#"{"level_pct":30.0,"relay":"none","duty_ns":300000,"period_ns":1000000,"polarity":"normal"}"#
        );
        assert_eq!(read(&pwm, "duty_cycle"), "300000");
        assert_eq!(read(&pwm, "period"), "1000000");
        assert_eq!(read(&pwm, "enable"), "1");
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
            r#"{"level_pct":80.0,"relay":"none","duty_ns":800000,"period_ns":1000000,"polarity":"normal"}"#
        );
        assert!(lines.next().is_none(), "exactly two lines");
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
        assert!(sent.elapsed() < Duration::from_secs(5));
        assert_eq!(read(&pwm, "duty_cycle"), "800000");
    }
}

#[test]
fn light_safe_applies_the_rated_level_and_exits() {
    let dir = scratch("light-safe");
    let pwm = fake_pwm(&dir.join("sys"));
    let config = dimmer_config(&dir, "pwmchip3");
    let output = luciole()
        .args(["light", "--config", config.to_str().unwrap(), "--safe"])
        .env("LUCIOLE_SYSFS", dir.join("sys"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "{\"level_pct\":80.0,\"relay\":\"none\",\"duty_ns\":800000,\"period_ns\":1000000,\"polarity\":\"normal\"}\n"
    );
    assert_eq!(read(&pwm, "enable"), "1");
}

#[test]
fn light_errors_name_the_chip_the_reason_and_what_was_found() {
    let dir = scratch("light-errors");
    fake_pwm(&dir.join("sys"));
    let config = dimmer_config(&dir, "fe20c000.pwm");
    let output = luciole()
        .args(["light", "--config", config.to_str().unwrap(), "--safe"])
        .env("LUCIOLE_SYSFS", dir.join("sys"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("PWM chip \"fe20c000.pwm\" not found"), "{err}");
    assert!(err.contains("pwmchip3 (luciole-pwm-sim)"), "{err}");

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
