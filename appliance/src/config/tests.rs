use super::*;

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
    assert_eq!(settings.device.id, "pole-7");
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
