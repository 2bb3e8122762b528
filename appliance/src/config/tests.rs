use super::*;
use crate::capture::{Pace, PixelFormat, ReplayKind, ReplaySettings, SourceSettings};
use crate::detect::{Accelerator, Backend};

fn parse_text(text: &str) -> Result<Settings, ConfigError> {
    parse(Path::new("pole.toml"), text)
}

fn messages(err: ConfigError) -> Vec<String> {
    err.to_string().lines().map(String::from).collect()
}

const MINIMAL: &str = r#"
[device]
site = "lyon"
id = "pole-7"

[camera]
device = "/dev/video2"
"#;

#[test]
fn a_minimal_file_gets_documented_defaults() {
    let settings = parse_text(MINIMAL).unwrap();
    assert_eq!(settings.device.site, "lyon");
    assert_eq!(settings.device.device, "pole-7");
    let camera = settings.camera;
    assert_eq!(
        camera.source,
        SourceSettings::V4l2 {
            device: "/dev/video2".into()
        }
    );
    assert_eq!(camera.size, Some((640, 480)));
    assert_eq!(camera.fps, 25);
    assert_eq!(camera.pixel_formats, PixelFormat::ALL.to_vec());
    assert_eq!(camera.buffers, 4);
    assert_eq!(camera.reconnect.min, Duration::from_millis(250));
}

#[test]
fn every_validation_problem_is_listed_with_its_line_key_and_reason() {
    let text = "[device]\nsite = \"lyon\"\nid = \"pole 7\"\n\n[camera]\nfps = 0\nwidth = 641\nheight = 480\nbuffers = 1\npixel_formats = [\"YUYV\", \"H264\", \"YUYV\"]\n";
    let lines = messages(parse_text(text).unwrap_err());
    assert!(lines.contains(&"pole.toml:3 device.id = \"pole 7\": must be 1 to 64 characters among letters, digits, '-', '_' and '.' (it is used in MQTT topics)".to_string()), "{lines:#?}");
    assert!(
        lines.contains(&"pole.toml:6 camera.fps = 0: must be between 1 and 120".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(
            &"pole.toml:7 camera.width = 641: must be even (4:2:0 and 4:2:2 formats need it)"
                .to_string()
        ),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"pole.toml:9 camera.buffers = 1: must be between 2 and 32".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l
                .starts_with("pole.toml:10 camera.pixel_formats = \"H264\": unknown pixel format")),
        "{lines:#?}"
    );
    assert!(
        lines
            .contains(&"pole.toml:10 camera.pixel_formats = \"YUYV\": is listed twice".to_string()),
        "{lines:#?}"
    );
    assert_eq!(lines.len(), 6, "{lines:#?}");
}

#[test]
fn unknown_keys_and_sections_are_refused_in_every_section() {
    let text = "[device]\nsite = \"a\"\nid = \"b\"\ncolour = 1\n\n[camera]\nfsp = 25\n\n[lightning]\nlevel = 3\n";
    let err = parse_text(text).unwrap_err();
    let problems = err.problems();
    assert_eq!(problems.len(), 3, "{err}");
    assert_eq!(problems[0].line, Some(4));
    assert!(
        problems[0].reason.contains("unknown field `colour`"),
        "{err}"
    );
    assert_eq!(problems[1].line, Some(7));
    assert!(problems[1].reason.contains("unknown field `fsp`"), "{err}");
    assert_eq!(problems[2].key.as_deref(), Some("lightning"));
    assert!(problems[2].reason.starts_with("unknown section"), "{err}");
}

#[test]
fn a_type_mismatch_names_the_line() {
    let err =
        parse_text("[device]\nsite = \"a\"\nid = \"b\"\n[camera]\nfps = \"fast\"\n").unwrap_err();
    let problems = err.problems();
    assert_eq!(problems.len(), 1, "{err}");
    assert_eq!(problems[0].line, Some(5), "{err}");
    assert!(problems[0].reason.contains("invalid type"), "{err}");
}

#[test]
fn broken_toml_is_reported_with_its_line() {
    let err = parse_text("[device]\nsite = \"a\nid = 3\n").unwrap_err();
    assert_eq!(err.problems().len(), 1);
    assert_eq!(err.problems()[0].line, Some(2), "{err}");
    assert!(
        err.to_string().starts_with("pole.toml:2: not valid TOML"),
        "{err}"
    );
}

#[test]
fn missing_sections_are_reported() {
    let err = parse_text("").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("missing section [device]"), "{text}");
    assert!(text.contains("missing section [camera]"), "{text}");
}

#[test]
fn a_replay_resolves_its_path_against_the_config_folder() {
    let dir = std::env::temp_dir().join(format!("luciole-config-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    let text = "[device]\nsite = \"a\"\nid = \"b\"\n[camera]\nsource = \"replay\"\n[camera.replay]\npath = \"frames\"\npace = \"fast\"\nloop = true\n";
    let settings = parse(&dir.join("pole.toml"), text).unwrap();
    assert_eq!(
        settings.camera.source,
        SourceSettings::Replay(ReplaySettings {
            path: dir.join("frames"),
            kind: ReplayKind::Images,
            pace: Pace::Fast,
            looping: true,
        })
    );
    assert_eq!(settings.camera.size, None);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_replay_of_a_missing_file_says_which_file() {
    let text = "[device]\nsite = \"a\"\nid = \"b\"\n[camera]\nsource = \"replay\"\n[camera.replay]\npath = \"/nonexistent/x.avi\"\npace = \"slow\"\n";
    let lines = messages(parse_text(text).unwrap_err());
    assert!(lines[0].starts_with("pole.toml:7 camera.replay.path = \"/nonexistent/x.avi\": cannot read /nonexistent/x.avi"), "{lines:#?}");
    assert_eq!(
        lines[1],
        "pole.toml:8 camera.replay.pace = \"slow\": must be \"realtime\" or \"fast\""
    );
}

#[test]
fn reconnect_bounds_must_be_ordered() {
    let text = "[device]\nsite = \"a\"\nid = \"b\"\n[camera]\nreconnect_min_ms = 5000\nreconnect_max_ms = 1000\n";
    let lines = messages(parse_text(text).unwrap_err());
    assert_eq!(lines, ["pole.toml:6 camera.reconnect_max_ms = 1000: must not be below camera.reconnect_min_ms (5000)"]);
}

#[test]
fn environment_references_expand_and_unknown_ones_are_named() {
    let lookup = |name: &str| (name == "HOME").then(|| "/home/pole".to_string());
    assert_eq!(
        expand_vars("${HOME}/clips/a.avi", lookup).unwrap(),
        "/home/pole/clips/a.avi"
    );
    assert_eq!(expand_vars("plain/path", lookup).unwrap(), "plain/path");
    assert_eq!(
        expand_vars("${NOPE}/x", lookup).unwrap_err(),
        "environment variable NOPE is not set"
    );
    assert_eq!(
        expand_vars("${HOME", lookup).unwrap_err(),
        "has an unclosed ${...}"
    );
    assert_eq!(
        expand_vars("${A-B}", lookup).unwrap_err(),
        "${A-B} is not a valid variable reference"
    );
}

#[test]
fn a_detect_section_is_validated_with_every_problem_named() {
    let dir = std::env::temp_dir().join(format!("luciole-config-detect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.toml"), "").unwrap();
    let base = "[device]\nsite = \"a\"\nid = \"b\"\n[camera]\n[detect]\nmodel = \"model.toml\"\n";
    let settings = parse(&dir.join("pole.toml"), base).unwrap();
    let detect = settings.detect.unwrap();
    assert_eq!(detect.model, dir.join("model.toml"));
    assert_eq!(detect.model_dir, dir);
    assert_eq!(detect.backend, Backend::Litert);
    assert_eq!(detect.runtime, PathBuf::from("libLiteRt.so"));
    assert_eq!(detect.accelerator, Accelerator::Cpu);
    assert_eq!(detect.threads, 2);
    assert_eq!(detect.min_scores.len(), 6);
    assert!(detect.min_scores.values().all(|&s| s == 0.5));

    let text = format!(
        "{base}backend = \"onnx\"\naccelerator = \"tpu\"\nthreads = 0\nclasses = [\"person\", \"face\", \"person\"]\nmin_score = 1.5\nmin_scores = {{ car = 0.4 }}\ndelegate_options = {{ x = \"1\" }}\nnpu_dispatch_dir = \"/opt/npu\"\n"
    );
    let lines = relative(&dir, parse(&dir.join("pole.toml"), &text).unwrap_err());
    let expected = [
        "pole.toml:7 detect.backend = \"onnx\": must be \"litert\" or \"tflite\"",
        "pole.toml:8 detect.accelerator = \"tpu\": must be \"cpu\", \"gpu\" or \"npu\"",
        "pole.toml:9 detect.threads = 0: must be between 1 and 16",
        "pole.toml:10 detect.classes = \"person\": is listed twice",
        "pole.toml:11 detect.min_score = 1.5: must be between 0 and 1",
        "pole.toml:12 detect.min_scores.car = 0.4: this class is not in detect.classes",
        "pole.toml:13 detect.delegate_options: only used with detect.delegate",
        "pole.toml:14 detect.npu_dispatch_dir: only used with detect.accelerator = \"npu\"",
    ];
    for line in expected {
        assert!(
            lines.contains(&line.to_string()),
            "missing {line}\n{lines:#?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("pole.toml:10 detect.classes = \"face\": unknown class")),
        "{lines:#?}"
    );
    assert_eq!(lines.len(), expected.len() + 1, "{lines:#?}");

    let text = "[device]\nsite = \"a\"\nid = \"b\"\n[camera]\n[detect]\nmodel = \"missing.toml\"\nbackend = \"litert\"\ndelegate = \"/usr/lib/libedgetpu.so.1\"\n";
    let lines = relative(&dir, parse(&dir.join("pole.toml"), text).unwrap_err());
    assert!(
        lines[0].starts_with("pole.toml:6 detect.model = \"missing.toml\": "),
        "{lines:#?}"
    );
    assert!(
        lines[0].ends_with("missing.toml: no such manifest file"),
        "{lines:#?}"
    );
    assert_eq!(
        lines[1],
        "pole.toml:8 detect.delegate: external delegates need backend = \"tflite\""
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Problem lines with the config folder taken off the file name.
fn relative(dir: &Path, err: ConfigError) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    messages(err)
        .into_iter()
        .map(|l| l.replace(&prefix, ""))
        .collect()
}

#[test]
fn outbox_and_mqtt_sections_get_documented_defaults() {
    let dir = std::env::temp_dir().join(format!("luciole-config-mqtt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), "").unwrap();
    let text = format!("{MINIMAL}\n[outbox]\npath = \"spool\"\n\n[mqtt]\nhost = \"broker.city.example\"\nca_file = \"ca.pem\"\n");
    let settings = parse(&dir.join("pole.toml"), &text).unwrap();
    assert_eq!(settings.events.health_interval, Duration::from_secs(60));
    let outbox = settings.outbox.unwrap();
    assert_eq!(outbox.path, dir.join("spool"));
    assert_eq!(outbox.limits.max_bytes, 256 << 20);
    assert_eq!(outbox.limits.retention_ms, 24 * 3600 * 1000);
    assert_eq!(outbox.flush_every, Duration::from_millis(1000));
    let mqtt = settings.mqtt.unwrap();
    assert_eq!(mqtt.port, 8883, "TLS by default, on the TLS port");
    assert_eq!(mqtt.tls.unwrap().ca_file, dir.join("ca.pem"));
    assert_eq!(mqtt.client_id, "luciole-lyon-pole-7");
    assert_eq!(mqtt.topic_prefix, "luciole");
    assert_eq!(mqtt.keep_alive, Duration::from_secs(30));
    assert_eq!(mqtt.inflight, 32);
    assert_eq!(mqtt.protocol, crate::publish::session::Protocol::V311);
    assert!(parse_text(MINIMAL).unwrap().outbox.is_none());

    let plain = format!(
        "{MINIMAL}\n[outbox]\n[mqtt]\nhost = \"127.0.0.1\"\ntls = false\nprotocol = \"5\"\n"
    );
    let mqtt = parse_text(&plain).unwrap().mqtt.unwrap();
    assert_eq!((mqtt.port, mqtt.tls), (1883, None));
    assert_eq!(mqtt.protocol, crate::publish::session::Protocol::V5);
    let lines = messages(
        parse_text(&format!(
            "{MINIMAL}\n[outbox]\n[mqtt]\nhost = \"h\"\ntls = false\nprotocol = \"3\"\n"
        ))
        .unwrap_err(),
    );
    assert_eq!(
        lines,
        vec!["pole.toml:13 mqtt.protocol = \"3\": must be \"3.1.1\" or \"5\"".to_string()]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn events_outbox_and_mqtt_problems_are_each_named_with_line_and_key() {
    let text = format!(
        "{MINIMAL}\n[events]\nhealth_interval_ms = 5\n\n[outbox]\nmax_bytes = 10\nflush_ms = 0\n\n[mqtt]\nhost = \"mqtt://broker\"\nusername = \"pole\"\npassword = \"secret\"\n"
    );
    let lines = messages(parse_text(&text).unwrap_err());
    // An inline password is refused as an unknown key: passwords live in a
    // file named by mqtt.password_file.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("pole.toml:19 mqtt: unknown field `password`")),
        "{lines:#?}"
    );
    let text = format!(
        "{MINIMAL}\n[events]\nhealth_interval_ms = 5\n\n[outbox]\nmax_bytes = 10\nflush_ms = 0\n\n[mqtt]\nhost = \"mqtt://broker\"\npassword_file = \"missing\"\nreconnect_min_ms = 5000\nreconnect_max_ms = 1000\n"
    );
    let lines = messages(parse_text(&text).unwrap_err());
    let expected = [
        "pole.toml:10 events.health_interval_ms = 5: must be between 100 and 86400000",
        "pole.toml:13 outbox.max_bytes = 10: must be between 65536 and 17179869184",
        "pole.toml:14 outbox.flush_ms = 0: must be between 1 and 10000",
        "pole.toml:17 mqtt.host = \"mqtt://broker\": must be a host name or IP address (no scheme, port or path)",
        "pole.toml:18 mqtt.password_file: only used with mqtt.username",
        "pole.toml:20 mqtt.reconnect_max_ms = 1000: must not be below mqtt.reconnect_min_ms (5000)",
    ];
    for line in expected {
        assert!(
            lines.contains(&line.to_string()),
            "missing {line}\n{lines:#?}"
        );
    }
    assert!(
        lines.iter().any(
            |l| l.starts_with("pole.toml:18 mqtt.password_file = \"missing\": ")
                && l.ends_with("missing: no such file")
        ),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(
            |l| l.starts_with("pole.toml mqtt.ca_file: TLS needs the CA")
                || l.contains("mqtt.ca_file: TLS needs the CA")
        ),
        "{lines:#?}"
    );
    assert_eq!(lines.len(), expected.len() + 2, "{lines:#?}");
}

#[test]
fn publishing_without_an_outbox_is_refused() {
    let text = format!("{MINIMAL}\n[mqtt]\nhost = \"127.0.0.1\"\ntls = false\n");
    let lines = messages(parse_text(&text).unwrap_err());
    assert_eq!(
        lines,
        vec!["pole.toml:9 mqtt: publishing needs an [outbox] section: events wait there until the broker has them".to_string()]
    );
}

#[test]
fn the_outbox_has_no_store_choice_any_more() {
    // redb and sled were measured and removed (docs/performance.md).
    let lines =
        messages(parse_text(&format!("{MINIMAL}\n[outbox]\nstore = \"redb\"\n")).unwrap_err());
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("pole.toml:10 outbox: unknown field `store`"),
        "{lines:#?}"
    );
}

#[test]
fn environment_references_take_a_fallback_when_unset_or_empty() {
    let lookup = |name: &str| match name {
        "HOME" => Some("/home/pole".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    assert_eq!(
        expand_vars("${LUCIOLE_CACHE:-${HOME}/.cache/luciole}/footage", lookup).unwrap(),
        "/home/pole/.cache/luciole/footage"
    );
    assert_eq!(
        expand_vars("${HOME:-/nowhere}/x", lookup).unwrap(),
        "/home/pole/x"
    );
    assert_eq!(expand_vars("${EMPTY:-/d}", lookup).unwrap(), "/d");
    assert_eq!(expand_vars("${EMPTY}", lookup).unwrap(), "");
    assert_eq!(
        expand_vars("${NOPE:-${ALSO_NOPE}}", lookup).unwrap_err(),
        "environment variable ALSO_NOPE is not set"
    );
    assert_eq!(
        expand_vars("${NOPE:-${HOME}", lookup).unwrap_err(),
        "has an unclosed ${...}"
    );
}

#[test]
fn the_outbox_page_cache_is_small_by_default_and_bounded() {
    let text = format!("{MINIMAL}\n[outbox]\npath = \"spool\"\n");
    let outbox = parse_text(&text).unwrap().outbox.unwrap();
    assert_eq!(outbox.cache_bytes, 16 << 20);
    let text = format!("{MINIMAL}\n[outbox]\ncache_bytes = 1073741824\n");
    let lines = messages(parse_text(&text).unwrap_err());
    let expected =
        "pole.toml:10 outbox.cache_bytes = 1073741824: must be between 1048576 and 268435456";
    assert!(lines.contains(&expected.to_string()), "{lines:#?}");
}

#[test]
fn privacy_masks_are_read_and_each_bad_one_is_named() {
    let base = "[device]\nsite = \"a\"\nid = \"b\"\n[camera]\n";
    let good = format!(
        "{base}[[privacy.masks]]\nname = \"window\"\npolygon = [[10, 10], [50, 10], [50, 40]]\n"
    );
    let settings = parse_text(&good).unwrap();
    assert_eq!(settings.privacy.masks.len(), 1);
    assert_eq!(settings.privacy.masks[0].name, "window");
    assert_eq!(settings.privacy.masks[0].polygon[2], [50.0, 40.0]);
    assert_eq!(settings.pipeline_options().masks, settings.privacy.masks);

    let bad = format!(
        "{base}[[privacy.masks]]\nname = \"door way\"\npolygon = [[0, 0], [1, 1]]\n[[privacy.masks]]\nname = \"flat\"\npolygon = [[0, 0], [5, 5], [10, 10]]\n[[privacy.masks]]\nname = \"flat\"\npolygon = [[0, 0], [-5, 5], [10, 10]]\n"
    );
    let err = parse_text(&bad).unwrap_err().to_string();
    for expected in [
        "privacy.masks[0].name = \"door way\": must be 1 to 64 characters",
        "privacy.masks[0].polygon = 2 point(s): a mask needs at least three corners",
        "privacy.masks[1].polygon: the corners enclose no area",
        "privacy.masks[2].name = \"flat\": is already the name of another mask",
        "privacy.masks[2].polygon = [-5.0, 5.0]: must be [x, y] in frame pixels, not negative",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in\n{err}");
    }
}

#[test]
fn the_adaptive_rate_is_on_by_default_and_its_bounds_are_checked() {
    let dir = std::env::temp_dir().join(format!("luciole-config-pace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.toml"), "").unwrap();
    let base = "[device]\nsite = \"a\"\nid = \"b\"\n[camera]\n[detect]\nmodel = \"model.toml\"\n";
    let settings = parse(&dir.join("pole.toml"), base).unwrap();
    assert_eq!(
        settings.pace,
        crate::pipeline::pace::PaceSettings::default()
    );
    assert!(settings.pace.adaptive);
    assert!(settings.pipeline_options().pace.adaptive);
    assert_eq!((settings.pace.min_fps, settings.pace.max_fps), (3.0, 10.0));
    let off = format!("{base}adaptive = false\n");
    let pace = parse(&dir.join("pole.toml"), &off).unwrap().pace;
    assert!(!pace.adaptive);
    let on = format!("{base}adaptive = true\nmin_fps = 1.5\nmax_fps = 6\n");
    let pace = parse(&dir.join("pole.toml"), &on).unwrap().pace;
    assert!(pace.adaptive);
    assert_eq!((pace.min_fps, pace.max_fps), (1.5, 6.0));

    let text = format!("{base}adaptive = true\nmin_fps = 8\nmax_fps = 100\n");
    let lines = relative(&dir, parse(&dir.join("pole.toml"), &text).unwrap_err());
    assert_eq!(
        lines,
        ["pole.toml:9 detect.max_fps = 100: must be between 0.2 and 60"],
        "{lines:#?}"
    );
    let text = format!("{base}adaptive = true\nmin_fps = 8\nmax_fps = 5\n");
    let lines = relative(&dir, parse(&dir.join("pole.toml"), &text).unwrap_err());
    assert_eq!(
        lines,
        ["pole.toml:8 detect.min_fps = 8: must not exceed detect.max_fps (5)"],
        "{lines:#?}"
    );
    // A wait between two inferences longer than a track survives unseen.
    let text = format!("{base}adaptive = true\nmin_fps = 0.5\n[tracking]\nmax_coast_ms = 1500\n");
    let lines = relative(&dir, parse(&dir.join("pole.toml"), &text).unwrap_err());
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("pole.toml:8 detect.min_fps = 0.5: the longest wait between two inferences (1/min_fps = 2.00 s) must be shorter than tracking.max_coast_ms (1500 ms)"),
        "{lines:#?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
