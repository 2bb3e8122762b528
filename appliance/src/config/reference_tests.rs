//! The configuration's three descriptions agree: the parser (the raw
//! structs), `appliance/config/pole.example.toml` (every key with its
//! default) and `docs/configuration.md` (the reference). A key added to a
//! raw struct without its line in both fails here, and so does a default
//! written in the example or the page that is not the parser's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::*;

// ------------------------------------------------------- the parser's keys

/// The field names serde asks for when deserialising `T` (a struct).
fn fields_of<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
    struct Recorder(Vec<&'static str>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> Deserializer<'de> for &mut Recorder {
        type Error = Stop;
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Stop> {
            self.0.extend_from_slice(fields);
            Err(Stop)
        }
        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut recorder = Recorder(Vec::new());
    let _ = T::deserialize(&mut recorder);
    assert!(!recorder.0.is_empty(), "not a struct");
    recorder.0
}

/// Every key the parser accepts, as dotted paths (`camera.replay.pace`),
/// with the tables that are structs of their own.
fn parser_keys() -> (BTreeSet<String>, BTreeSet<String>) {
    let tables: Vec<(&str, Vec<&'static str>)> = vec![
        ("device", fields_of::<device::RawDevice>()),
        ("camera", fields_of::<camera::RawCamera>()),
        ("camera.replay", fields_of::<camera::RawReplay>()),
        ("detect", fields_of::<detect::RawDetect>()),
        ("tracking", fields_of::<tracking::RawTracking>()),
        ("motion", fields_of::<motion::RawMotion>()),
        ("analytics", fields_of::<analytics::RawAnalytics>()),
        ("analytics.zones", fields_of::<analytics::RawZone>()),
        ("analytics.lines", fields_of::<analytics::RawLine>()),
        (
            "analytics.calibration",
            fields_of::<analytics::RawCalibration>(),
        ),
        ("pipeline", fields_of::<pipeline::RawPipeline>()),
        ("events", fields_of::<events::RawEvents>()),
        ("outbox", fields_of::<outbox::RawOutbox>()),
        ("mqtt", fields_of::<mqtt::RawMqtt>()),
        ("lighting", fields_of::<lighting::RawLighting>()),
        ("lighting.schedule", fields_of::<lighting::RawSchedule>()),
        ("lighting.presence", fields_of::<lighting::RawPresence>()),
        ("lighting.relay", fields_of::<lighting::RawRelay>()),
        ("lighting.dimmer", fields_of::<lighting::RawDimmer>()),
        ("remote", fields_of::<remote::RawRemote>()),
        ("remote.keys", fields_of::<remote::RawKey>()),
        ("remote.update", fields_of::<remote::RawUpdate>()),
        ("metrics", fields_of::<metrics::RawMetrics>()),
        ("privacy", fields_of::<privacy::RawPrivacy>()),
        ("privacy.masks", fields_of::<privacy::RawMask>()),
    ];
    let top: BTreeSet<&str> = fields_of::<RawConfig>().into_iter().collect();
    let names: BTreeSet<&str> = tables.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        top,
        RawConfig::SECTIONS.into_iter().collect(),
        "RawConfig::SECTIONS lists every section"
    );
    let mut keys = BTreeSet::new();
    for (table, fields) in &tables {
        for field in fields {
            let path = format!("{table}.{field}");
            if !names.contains(path.as_str()) {
                keys.insert(path);
            }
        }
    }
    // Every table named above is a field of its parent: the list is whole.
    for (table, _) in &tables {
        if let Some((parent, field)) = table.rsplit_once('.') {
            let fields = &tables.iter().find(|(n, _)| *n == parent).unwrap().1;
            assert!(
                fields.contains(&field),
                "{table} is not a field of {parent}"
            );
        } else {
            assert!(top.contains(table), "{table} is not a section");
        }
    }
    (keys, names.into_iter().map(String::from).collect())
}

// ----------------------------------------------------------- the example

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn example_path() -> PathBuf {
    repo().join("appliance/config/pole.example.toml")
}

fn example() -> String {
    std::fs::read_to_string(example_path()).unwrap()
}

/// Whether a line is a commented-out key or table (`# key = value`,
/// `# [table]`), as opposed to prose.
fn commented_entry(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("# ")?;
    let is_table = rest.starts_with('[');
    let is_key = rest.split_once(" = ").is_some_and(|(key, _)| {
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    });
    (is_table || is_key).then_some(rest)
}

/// The example with its commented-out keys and tables written in.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| commented_entry(line).unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Dotted paths of every key of a TOML document, descending into `tables`.
fn document_keys(doc: &toml::Table, tables: &BTreeSet<String>) -> BTreeMap<String, toml::Value> {
    fn walk(
        prefix: &str,
        table: &toml::Table,
        tables: &BTreeSet<String>,
        out: &mut BTreeMap<String, toml::Value>,
    ) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(t) if prefix.is_empty() || tables.contains(&path) => {
                    walk(&path, t, tables, out)
                }
                toml::Value::Array(items) if tables.contains(&path) => {
                    for item in items {
                        walk(&path, item.as_table().unwrap(), tables, out);
                    }
                }
                other => {
                    out.entry(path).or_insert_with(|| other.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", doc, tables, &mut out);
    out
}

// ------------------------------------------------------------- the page

/// `docs/configuration.md`: key → default cell (`required`, `none`, or a
/// TOML literal).
fn documented() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let mut table = None;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("### `") {
            let name = heading.trim_end_matches('`');
            table = Some(name.trim_matches(['[', ']']).to_string());
            continue;
        }
        let (Some(table), Some(row)) = (&table, line.strip_prefix("| `")) else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").collect();
        let key = cells[0].trim_end_matches('`');
        let default = cells.get(1).map(|c| c.trim()).unwrap_or("");
        let default = default.trim_start_matches('`').trim_end_matches('`');
        let previous = out.insert(format!("{table}.{key}"), default.to_string());
        assert!(previous.is_none(), "{table}.{key} documented twice");
    }
    out
}

fn literal(text: &str) -> toml::Value {
    let doc: toml::Table = toml::from_str(&format!("v = {text}"))
        .unwrap_or_else(|e| panic!("{text:?} is not a TOML literal: {e}"));
    doc["v"].clone()
}

// ---------------------------------------------------------------- checks

#[test]
fn the_example_the_reference_page_and_the_parser_name_the_same_keys() {
    let (parser, tables) = parser_keys();
    let doc: toml::Table = toml::from_str(&uncommented(&example()))
        .unwrap_or_else(|e| panic!("the example with its comments written in: {e}"));
    let in_example: BTreeSet<String> = document_keys(&doc, &tables).into_keys().collect();
    let in_page: BTreeSet<String> = documented().into_keys().collect();
    let missing = |from: &BTreeSet<String>, what: &str| {
        let gone: Vec<&String> = parser.difference(from).collect();
        assert!(
            gone.is_empty(),
            "keys the parser takes but {what} lacks: {gone:?}"
        );
        let extra: Vec<&String> = from.difference(&parser).collect();
        assert!(
            extra.is_empty(),
            "keys in {what} the parser refuses: {extra:?}"
        );
    };
    missing(&in_example, "pole.example.toml");
    missing(&in_page, "docs/configuration.md");
}

#[test]
fn the_example_and_the_reference_page_give_the_same_defaults() {
    let (_, tables) = parser_keys();
    let doc: toml::Table = toml::from_str(&uncommented(&example())).unwrap();
    let values = document_keys(&doc, &tables);
    for (key, default) in documented() {
        if default == "required" || default == "none" {
            continue;
        }
        let written = values
            .get(&key)
            .unwrap_or_else(|| panic!("{key} is not in the example"));
        assert_eq!(
            written,
            &literal(&default),
            "{key}: the example says {written}, the page says {default}"
        );
    }
}

/// Parses `text` as if it were the example file.
fn parse_as_example(text: &str) -> Result<Settings, ConfigError> {
    parse(&example_path(), text)
}

/// For each active `key = value` line of `text` whose key starts with one
/// of `only`, the page's default decides: a key with a default must be at
/// it (deleting the line changes nothing), a required key's absence is a
/// problem naming it. Returns how many lines were checked.
fn check_lines(text: &str, only: &[&str]) -> usize {
    let page = documented();
    let (_, tables) = parser_keys();
    let full = parse_as_example(text).unwrap_or_else(|e| panic!("{e}"));
    let mut table = String::new();
    let mut checked = 0;
    for (i, line) in text.lines().enumerate() {
        if let Some(name) = line.strip_prefix('[') {
            table = name.trim_matches(['[', ']']).to_string();
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if line.starts_with('#') || key.contains(' ') {
            continue;
        }
        let path = format!("{table}.{key}");
        if !only.iter().any(|prefix| path.starts_with(prefix)) {
            continue;
        }
        // A table written inline (`schedule = { ... }`) is required.
        let default = match page.get(&path) {
            Some(default) => default.clone(),
            None if tables.contains(&path) => "required".to_string(),
            None => panic!("{path} is not documented"),
        };
        let without: String = text
            .lines()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, l)| l)
            .collect::<Vec<_>>()
            .join("\n");
        match (default.as_str(), parse_as_example(&without)) {
            ("none", _) => continue,
            ("required", Ok(_)) => panic!("{path} is documented as required, but not needed"),
            ("required", Err(err)) => {
                let text = err.to_string();
                assert!(
                    text.contains(&format!("`{key}`")) || text.contains(&path),
                    "{path}: the problem does not name it: {text}"
                );
            }
            (_, Ok(settings)) => assert_eq!(
                settings, full,
                "{path}: the example's value is not the default"
            ),
            (_, Err(err)) => panic!("{path}: not needed, yet without it: {err}"),
        }
        checked += 1;
    }
    checked
}

#[test]
fn every_key_the_example_sets_is_at_the_parsers_default_or_required() {
    let checked = check_lines(&example(), &[""]);
    assert!(checked >= 70, "only {checked} lines checked");
}

#[test]
fn the_keys_of_the_tables_the_example_leaves_out_are_at_their_defaults_too() {
    let dir = std::env::temp_dir().join(format!("luciole-cfg-example-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    std::fs::write(dir.join("ca.pem"), "").unwrap();
    let text = example();
    // [mqtt] written in, with a CA file that exists, without the keys that
    // have no default.
    let unset = [
        "# port",
        "# client_",
        "# username",
        "# password_file",
        "# ca_file",
    ];
    let mut mqtt = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line == "# [mqtt]" {
            mqtt = true;
        } else if !line.starts_with('#') {
            mqtt = false;
        }
        match commented_entry(line) {
            Some(entry) if mqtt && !unset.iter().any(|u| line.starts_with(u)) => {
                lines.push(entry.to_string());
                if entry == "[mqtt]" {
                    lines.push(format!("ca_file = \"{}\"", dir.join("ca.pem").display()));
                }
            }
            _ => lines.push(line.to_string()),
        }
    }
    assert_eq!(check_lines(&lines.join("\n"), &["mqtt."]), 9);
    // A replay instead of the camera, and the sun instead of a schedule.
    let replay = text
        .replace("source = \"v4l2\"", "source = \"replay\"")
        .replace("device = \"/dev/video0\"\n", "")
        .replace(
            "# [camera.replay]\n# path = \"/var/lib/luciole/recordings/street.mp4\"   # required",
            &format!(
                "[camera.replay]\npath = \"{}\"",
                dir.join("frames").display()
            ),
        )
        .replace("# pace = ", "pace = ")
        .replace("# loop = ", "loop = ")
        .replace("mode = \"schedule\"", "mode = \"astronomical\"")
        .replace(
            "schedule = { on = \"19:00\", off = \"07:00\", timezone = \"Europe/Paris\" }\n",
            "",
        )
        .replace("# latitude = ", "latitude = ")
        .replace("# longitude = ", "longitude = ")
        .replace("# sunset_offset_min = ", "sunset_offset_min = ")
        .replace("# sunrise_offset_min = ", "sunrise_offset_min = ");
    assert!(replay.contains("loop = false\n") && replay.contains("\nsunrise_offset_min = 0"));
    let checked = check_lines(
        &replay,
        &["camera.replay.", "lighting.sunset", "lighting.sunrise"],
    );
    assert_eq!(checked, 5);
    std::fs::remove_dir_all(dir).unwrap();
}
