//! `[lighting]` in the configuration: defaults, problems with their place,
//! GPIO and PWM outputs, board profiles, the simulated outputs, and the
//! safe-state command's reading of this section alone.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::light::settings;
use crate::light::{DimmerBackend, LineRef, Mode, RelayBackend};

fn config(lighting: &str) -> Result<Settings, ConfigError> {
    let text = format!("[device]\nsite = \"lyon\"\nid = \"pole-7\"\n[camera]\n{lighting}");
    parse(Path::new("pole.toml"), &text)
}

fn problems(lighting: &str) -> String {
    config(lighting).expect_err("should be invalid").to_string()
}

const SIM: &str = r#"
[lighting]
mode = "schedule"
schedule = { on = "19:00", off = "07:00", timezone = "Europe/Paris" }
night_pct = 30
[lighting.presence]
classes = ["person", "bicycle"]
zones = ["crossing"]
lines = ["footpath"]
[lighting.relay]
chip = "luciole-sim"
line = "lamp-relay"
[lighting.dimmer]
chip = "luciole-pwm-sim"
channel = 0
period_ns = 1000000
polarity = "normal"
[[analytics.zones]]
name = "crossing"
polygon = [[0, 0], [100, 0], [100, 100]]
[[analytics.lines]]
name = "footpath"
from = [0, 50]
to = [100, 50]
"#;

#[test]
fn the_harness_lighting_section_validates_with_its_defaults() {
    let l = config(SIM).unwrap().lighting.unwrap();
    assert_eq!(l.night, 0.3);
    assert_eq!((l.boost, l.rated), (1.0, 1.0));
    assert_eq!(l.ramp_up, Duration::from_millis(500));
    assert_eq!(
        (l.hold, l.fade),
        (Duration::from_secs(30), Duration::from_secs(10))
    );
    assert_eq!(l.stale, Duration::from_secs(5));
    assert_eq!(l.steps, 1000);
    let relay = l.relay.unwrap();
    assert_eq!(relay.line, LineRef::Name("lamp-relay".into()));
    assert!(!relay.active_low);
    assert_eq!(l.dimmer.unwrap().chip, "luciole-pwm-sim");
    assert_eq!(l.presence.zones, ["crossing"]);
}

#[test]
fn lighting_problems_name_line_key_value_and_reason() {
    let text = SIM
        .replace("night_pct = 30", "night_pct = 130")
        .replace("line = \"lamp-relay\"", "line = \"\"")
        .replace("\"normal\"", "\"inverted\"");
    let err = problems(&text);
    assert!(
        err.contains("pole.toml:9 lighting.night_pct = 130: must be between 0 and 100"),
        "{err}"
    );
    assert!(
        err.contains("lighting.relay.line: must be a line name or an offset"),
        "{err}"
    );
    assert!(
        err.contains("lighting.dimmer.polarity = \"inverted\": must be \"normal\" or \"inversed\""),
        "{err}"
    );
    let err = problems(&SIM.replace("off = \"07:00\"", "off = \"19:00\""));
    assert!(
        err.contains("lighting.schedule.off = \"19:00\": must differ from `on`"),
        "{err}"
    );
    let err = problems(&SIM.replace("Europe/Paris", "Europe/Lyon"));
    assert!(
        err.contains("lighting.schedule.timezone = \"Europe/Lyon\""),
        "{err}"
    );
    let err = problems(&SIM.replace("\"bicycle\"", "\"unicorn\""));
    assert!(
        err.contains("lighting.presence.classes = \"unicorn\""),
        "{err}"
    );
}

#[test]
fn gpio_settings_are_validated() {
    let relay_only =
        "[lighting]\nschedule = { on = \"00:00\", off = \"24:00\", timezone = \"UTC\" }\n";
    let err = problems(relay_only);
    assert!(err.contains("needs an output"), "{err}");
    let err = problems(&format!("{relay_only}[lighting.relay]\nline = 3\n"));
    assert!(
        err.contains("lighting.relay.chip: must name the gpiochip label"),
        "{err}"
    );
    let ok = config(&format!(
        "{relay_only}[lighting.relay]\nchip = \"luciole-sim\"\nline = 3\nactive_low = true\n"
    ))
    .unwrap()
    .lighting
    .unwrap();
    let relay = ok.relay.unwrap();
    assert_eq!((relay.line, relay.active_low), (LineRef::Offset(3), true));
    assert_eq!(ok.steps, 1, "a relay alone is on or off");
    let err = problems(&format!(
        "{relay_only}[lighting.relay]\noutput = \"relay\"\n"
    ));
    assert!(
        err.contains("lighting.relay.output = \"relay\": needs lighting.board"),
        "{err}"
    );
    let err = problems(&format!(
        "{relay_only}[lighting.relay]\nchip = \"x\"\nline = -1\n"
    ));
    assert!(
        err.contains("line offset -1: expected an offset from 0"),
        "{err}"
    );
    let err = problems(&format!(
        "{relay_only}[lighting.relay]\nbackend = \"sysfs\"\nchip = \"x\"\nline = 1\n"
    ));
    assert!(
        err.contains(
            "lighting.relay.backend = \"sysfs\": must be \"cdev\", \"rppal\" or \"simulated\""
        ),
        "{err}"
    );
}

#[test]
fn a_board_profile_fills_in_chips_lines_and_channels() {
    let text = "[lighting]\nboard = \"rpi4\"\nmode = \"astronomical\"\nlatitude = 45.76\nlongitude = 4.84\n\
                [lighting.relay]\noutput = \"relay\"\n[lighting.dimmer]\noutput = \"dimmer\"\n";
    let l = config(text).unwrap().lighting.unwrap();
    let relay = l.relay.unwrap();
    assert_eq!(relay.chip, "pinctrl-bcm2711");
    assert_eq!(relay.line, LineRef::Name("GPIO17".into()));
    let dimmer = l.dimmer.unwrap();
    assert_eq!((dimmer.chip.as_str(), dimmer.channel), ("fe20c000.pwm", 0));
    assert!(matches!(l.mode, Mode::Astronomical { latitude, .. } if latitude == 45.76));
    let err = problems(&text.replace("output = \"dimmer\"", "output = \"fan\""));
    assert!(
        err.contains("the board profile has no such output: it has dimmer, dimmer2, relay"),
        "{err}"
    );
    let err = problems(&text.replace("\"rpi4\"", "\"rpi3\""));
    assert!(
        err.contains("unknown board: expected one of rpi4, rpi5, jetson-orin-nano"),
        "{err}"
    );
    let err = problems(&text.replace("output = \"dimmer\"", "output = \"relay\""));
    assert!(err.contains("is a GPIO line, not a PWM output"), "{err}");
}

#[test]
fn every_board_profile_in_hw_parses_and_is_built_in() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hw");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let profile: settings::BoardProfile =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!profile.board.overlays.is_empty(), "{}", path.display());
            let kinds: Vec<bool> = profile
                .outputs
                .values()
                .map(|o| matches!(o, settings::BoardOutput::Pwm { .. }))
                .collect();
            assert!(
                kinds.contains(&true) && kinds.contains(&false),
                "{}: a relay and a dimmer",
                path.display()
            );
            names.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    names.sort();
    let mut built_in: Vec<String> = settings::BOARDS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    built_in.sort();
    assert_eq!(names, built_in);
    for (name, _) in settings::BOARDS {
        settings::board(name).unwrap();
    }
}

#[test]
fn the_light_command_reads_the_lighting_section_alone() {
    let dir = std::env::temp_dir().join(format!("luciole-cfg-light-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pole.toml");
    std::fs::write(&path, format!("[mqtt]\nbroken = true\n{SIM}")).unwrap();
    let l = load_lighting(&path).unwrap();
    assert_eq!(l.night, 0.3);
    std::fs::write(&path, "[device]\nsite = \"x\"\nid = \"y\"\n").unwrap();
    let err = load_lighting(&path).unwrap_err().to_string();
    assert!(err.contains("missing section [lighting]"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_rppal_backend_takes_bcm_numbers_and_needs_the_rpi_feature() {
    let text = "[lighting]\nboard = \"rpi4\"\nschedule = { on = \"19:00\", off = \"07:00\", timezone = \"UTC\" }\n\
                [lighting.relay]\nbackend = \"rppal\"\noutput = \"relay\"\n";
    let result = config(text);
    if cfg!(feature = "rpi") {
        let relay = result.unwrap().lighting.unwrap().relay.unwrap();
        assert_eq!(relay.line, LineRef::Offset(17), "the profile's BCM number");
        assert_eq!(relay.backend, RelayBackend::Rppal);
    } else {
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("lighting.relay.backend = \"rppal\": this build has no rppal support"),
            "{err}"
        );
    }
    let err = problems(
        "[lighting]\nschedule = { on = \"19:00\", off = \"07:00\", timezone = \"UTC\" }\n\
         [lighting.relay]\nbackend = \"rppal\"\nline = \"GPIO17\"\n",
    );
    assert!(err.contains("BCM GPIO number, 0 to 27"), "{err}");
}

#[test]
fn simulated_outputs_need_no_chip_and_only_they_take_a_state_file() {
    let base = "[lighting]\nschedule = { on = \"00:00\", off = \"24:00\", timezone = \"UTC\" }\n";
    let l = config(&format!(
        "{base}[lighting.relay]\nbackend = \"simulated\"\n[lighting.dimmer]\nbackend = \"simulated\"\nstate_file = \"lamp.json\"\n"
    ))
    .unwrap()
    .lighting
    .unwrap();
    assert_eq!(l.relay.unwrap().backend, RelayBackend::Simulated);
    let dimmer = l.dimmer.unwrap();
    assert_eq!(dimmer.backend, DimmerBackend::Simulated);
    assert_eq!(dimmer.state_file.as_deref(), Some(Path::new("lamp.json")));
    assert_eq!(l.steps, 1000);
    let err = problems(&format!(
        "{base}[lighting.dimmer]\nchip = \"pwmchip0\"\nstate_file = \"lamp.json\"\n"
    ));
    assert!(
        err.contains(
            "pole.toml:9 lighting.dimmer.state_file = \"lamp.json\": only used with backend = \"simulated\""
        ),
        "{err}"
    );
    let err = problems(&format!("{base}[lighting.relay]\nbackend = \"fake\"\n"));
    assert!(
        err.contains(
            "lighting.relay.backend = \"fake\": must be \"cdev\", \"rppal\" or \"simulated\""
        ),
        "{err}"
    );
}
