//! The data manifest: what a pole publishes, keeps and never produces,
//! written from its running configuration for the city to read.
//!
//! [`build`] turns [`Facts`] (taken from the settings by the command layer)
//! into one JSON document, checked by `appliance/schemas/manifest.json`:
//! every topic with the event kinds, fields and rhythm it carries, what the
//! data profile withholds, what is stored on the pole and for how long,
//! what is never produced, the purpose, and the model and firmware
//! versions. The fields of each kind come from that kind's JSON Schema in
//! `appliance/schemas/`, minus what the profile withholds, so the manifest
//! cannot list less than the schemas allow.
//!
//! The daemon publishes it retained on `<prefix>/<site>/<device>/manifest`
//! on every connection (a changed configuration restarts the publisher);
//! `luciole manifest --config FILE` prints it.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::PrivacySettings;
use crate::events::Origin;

/// Version of the manifest's own layout.
pub const MANIFEST_VERSION: u32 = 1;

/// Fields of the retained presence message on `<prefix>/<site>/<device>/status`.
const PRESENCE_FIELDS: [&str; 4] = ["schema", "site", "device", "state"];

/// What is never produced, whatever the configuration (images are stated
/// by [`images_never`], which depends on it).
pub const NEVER: [&str; 5] = [
    "identities: no face, licence plate, name or other identifier is detected, read or stored",
    "appearance features: no colour, clothing, gait or re-identification embedding is computed",
    "links across runs: track ids are random per run and never stored",
    "audio",
    "network addresses or identifiers of phones and other devices nearby",
];

/// What is said of images among what is never produced.
fn images_never(facts: &Facts) -> String {
    let local = "installer snapshots (pixelated) and captures are written only on the pole's console, into the images folder (see stored)";
    if facts.remote && facts.privacy.remote_snapshots {
        format!("video, and images other than the pixelated snapshots an integrator orders (see published): frames stay in memory and are overwritten; {local}")
    } else {
        format!("images or video: frames stay in memory and are overwritten; the daemon publishes none; {local}")
    }
}

/// The configuration's facts the manifest states.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    pub origin: Origin,
    pub privacy: PrivacySettings,
    /// The topic prefix, when the pole publishes to a broker.
    pub topic_prefix: Option<String>,
    pub health_interval: Duration,
    /// Flows are made (at least one line or zone is configured).
    pub flows: bool,
    /// At least one counting line is configured (crossings exist).
    pub lines: bool,
    /// `analytics.track_events`: ended tracks are summarised.
    pub track_events: bool,
    pub flow_interval: Duration,
    pub fiware: bool,
    pub lighting: bool,
    /// Signed remote commands are accepted (`[remote]`).
    pub remote: bool,
    /// Where events wait for the broker, and their limits.
    pub outbox: Option<Outbox>,
    /// `[remote] state_dir`, with `[remote]`.
    pub remote_state_dir: Option<PathBuf>,
    /// The detection model, when detection is configured.
    pub model: Option<Model>,
    /// The daemon's version.
    pub firmware: String,
}

/// The outbox's place and limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbox {
    pub path: PathBuf,
    pub retention: Duration,
    pub max_bytes: u64,
}

/// The model as its manifest in `models/` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    pub name: String,
    pub sha256: String,
    pub licence: String,
    pub provenance: String,
    /// The classes it may report.
    pub classes: Vec<String>,
}

/// The JSON Schema of an event kind, as shipped in `appliance/schemas/`.
fn schema(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "status" => include_str!("../../schemas/status.json"),
        "health" => include_str!("../../schemas/health.json"),
        "error" => include_str!("../../schemas/error.json"),
        "dropped" => include_str!("../../schemas/dropped.json"),
        "alert" => include_str!("../../schemas/alert.json"),
        "crossing" => include_str!("../../schemas/crossing.json"),
        "track" => include_str!("../../schemas/track.json"),
        "flow" => include_str!("../../schemas/flow.json"),
        "fiware" => include_str!("../../schemas/fiware.json"),
        "light" => include_str!("../../schemas/light.json"),
        "audit" => include_str!("../../schemas/audit.json"),
        "update" => include_str!("../../schemas/update.json"),
        "energy" => include_str!("../../schemas/energy.json"),
        _ => return None,
    })
}

/// Every field an event of `kind` may carry, as dotted paths (`data.lines[].count`),
/// minus the `data` fields in `withheld`. An object whose schema allows
/// other keys is listed as `path.*`.
pub fn fields(kind: &str, withheld: &[&str]) -> Vec<String> {
    let Some(text) = schema(kind) else {
        return Vec::new();
    };
    let schema: Value = serde_json::from_str(text).expect("the shipped schemas are JSON");
    let mut out = Vec::new();
    walk(&schema, "", &mut out);
    out.retain(|path| {
        !withheld.iter().any(|w| {
            let full = format!("data.{w}");
            path == &full
                || path.starts_with(&format!("{full}."))
                || path.starts_with(&format!("{full}[]"))
        })
    });
    out
}

fn walk(node: &Value, path: &str, out: &mut Vec<String>) {
    let join = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            walk(child, &join(name), out);
        }
        if node.get("additionalProperties") != Some(&Value::Bool(false)) {
            out.push(join("*"));
        }
        return;
    }
    if let Some(items) = node.get("items").filter(|i| i.get("properties").is_some()) {
        walk(items, &format!("{path}[]"), out);
        return;
    }
    if !path.is_empty() {
        out.push(path.to_string());
    }
}

/// The event kinds this configuration can publish, with when they come.
fn kinds(facts: &Facts) -> Vec<(&'static str, String)> {
    let mut out = vec![
        (
            "status",
            "on start, stop, reload and camera changes".to_string(),
        ),
        (
            "health",
            format!("every {} s", facts.health_interval.as_secs_f64()),
        ),
        ("error", "when something fails".to_string()),
        ("dropped", "when events are deleted unpublished".to_string()),
        ("alert", "when a person's attention is needed".to_string()),
    ];
    let every_flow = format!("every {} s of footage", facts.flow_interval.as_secs_f64());
    for kind in facts.privacy.publish.analytics_kinds() {
        match *kind {
            "flow" if facts.flows => out.push(("flow", every_flow.clone())),
            "crossing" if facts.lines => {
                out.push(("crossing", "each crossing of a counting line".into()))
            }
            "track" if facts.track_events => out.push(("track", "each ended track".into())),
            _ => {}
        }
    }
    if facts.fiware && facts.flows && facts.lines {
        out.push(("fiware", every_flow));
    }
    if facts.lighting {
        out.push((
            "light",
            "when the lamp's level or its reason changes".into(),
        ));
        out.push(("energy", "when a night ends".into()));
    }
    out.push((
        "audit",
        if facts.remote {
            "for each remote command (refused, accepted, done or failed), and each snapshot or capture written on the pole"
        } else {
            "for each snapshot or capture written on the pole"
        }
        .into(),
    ));
    if facts.remote {
        out.push(("update", "each step of an ordered software update".into()));
    }
    out
}

/// The manifest of `facts`.
pub fn build(facts: &Facts) -> Value {
    let profile = facts.privacy.publish;
    let base = facts
        .topic_prefix
        .as_ref()
        .map(|prefix| format!("{prefix}/{}/{}", facts.origin.site, facts.origin.device));
    let mut published = Vec::new();
    if let Some(base) = &base {
        for (kind, when) in kinds(facts) {
            published.push(json!({
                "topic": format!("{base}/events/{kind}"),
                "kind": kind,
                "retained": false,
                "when": when,
                "fields": fields(kind, profile.withheld(kind)),
            }));
        }
        published.push(json!({
            "topic": format!("{base}/status"),
            "kind": "presence",
            "retained": true,
            "when": "on connecting (online) and as the broker's last will or on stopping (offline)",
            "fields": PRESENCE_FIELDS,
        }));
        published.push(json!({
            "topic": format!("{base}/manifest"),
            "kind": "manifest",
            "retained": true,
            "when": "on connecting, and again after a configuration change",
            "fields": ["this document"],
        }));
        if facts.remote {
            published.push(json!({
                "topic": format!("{}/{}/fleet/<id>/reply", facts.topic_prefix.as_deref().unwrap_or(""), facts.origin.site),
                "kind": "reply",
                "retained": false,
                "when": "the answer to a signed command, on the topic the command names",
                "fields": ["site", "device", "command", "correlation", "ok", "result.*", "error.code", "error.message", "error.problems"],
            }));
            if facts.privacy.remote_snapshots {
                published.push(json!({
                    "topic": format!("{base}/snapshot"),
                    "kind": "snapshot",
                    "retained": false,
                    "when": "once for each snapshot an integrator's signed command orders (privacy.remote_snapshots), at QoS 0; never stored on the pole",
                    "fields": ["a JPEG picture: masks filled, every person, vehicle and moving region pixelated in 16-pixel blocks, lines, zones and calibration points drawn"],
                }));
            }
        }
    }
    let mut withheld = Vec::new();
    for kind in ["crossing", "track"] {
        let dropped = profile.analytics_kinds().iter().all(|k| *k != kind);
        if dropped {
            withheld.push(json!({"kind": kind, "fields": "all"}));
        } else if !profile.withheld(kind).is_empty() {
            withheld.push(json!({"kind": kind, "fields": profile.withheld(kind)}));
        }
    }
    let mut stored = Vec::new();
    if let Some(outbox) = &facts.outbox {
        stored.push(json!({
            "what": "events made under this profile (the kinds and fields of `published`), until a broker acknowledges them; an outbox found corrupted is moved aside beside it",
            "where": outbox.path.display().to_string(),
            "retention": format!(
                "deleted once the broker has them; at most {} s old and {} bytes in all (older ones first are deleted and reported as `dropped`); of the outboxes moved aside, the newest {} are kept, none longer than {} s",
                outbox.retention.as_secs(),
                outbox.max_bytes,
                crate::outbox::KEEP_CORRUPT,
                outbox.retention.as_secs(),
            ),
            "max_age_s": outbox.retention.as_secs(),
            "max_bytes": outbox.max_bytes,
        }));
    }
    if let Some(dir) = &facts.remote_state_dir {
        stored.push(json!({
            "what": "remote-command nonces (until their command's validity ends), the applied configuration's backup, and an ordered update's job and bundle",
            "where": dir.display().to_string(),
            "retention": "nonces until their expiry; the bundle and job until the update is done or failed",
        }));
    }
    let images = &facts.privacy.images;
    stored.push(json!({
        "what": "installer snapshots (pixelated) and camera captures (masks filled) written by `luciole snapshot` and `luciole capture` on the pole's console, and the audit record of each until the daemon has published it",
        "where": images.dir.display().to_string(),
        "retention": format!(
            "each picture deleted {} s after it was written (each command sweeps before writing, the daemon at start and every minute); each audit record once published",
            images.retention.as_secs()
        ),
        "max_age_s": images.retention.as_secs(),
    }));
    stored.push(json!({
        "what": "the daemon's log (the system journal): start, stop, errors; no event data",
        "where": "systemd journal",
        "retention": "on the Luciole image in memory only (Storage=volatile): lost at every restart, at most 16 MiB and 7 days; elsewhere the system's journal limits",
    }));
    json!({
        "manifest": MANIFEST_VERSION,
        "site": facts.origin.site,
        "device": facts.origin.device,
        "purpose": facts.privacy.purpose,
        "profile": profile.name(),
        "firmware": {"luciole": facts.firmware},
        "model": facts.model.as_ref().map(|m| json!({
            "name": m.name,
            "sha256": m.sha256,
            "licence": m.licence,
            "provenance": m.provenance,
            "classes": m.classes,
        })),
        "published": published,
        "withheld": withheld,
        "stored": stored,
        "masks": facts.privacy.masks.iter().map(|m| json!({
            "name": m.name,
            "polygon": m.polygon,
        })).collect::<Vec<_>>(),
        "never": std::iter::once(images_never(facts))
            .chain(NEVER.iter().map(|s| s.to_string()))
            .collect::<Vec<_>>(),
    })
}

/// Whether a published event (its JSON) carries only fields `manifest`
/// lists for its topic: the names of the fields outside it.
pub fn outside(manifest: &Value, topic: &str, event: &Value) -> Vec<String> {
    let listed: Vec<&str> = manifest["published"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["topic"] == topic)
        .flat_map(|p| p["fields"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    if listed.is_empty() {
        return vec![format!("topic {topic}")];
    }
    let mut paths = Vec::new();
    flatten(event, "", &mut paths);
    paths
        .into_iter()
        .filter(|path| {
            !listed.iter().any(|l| {
                l == path
                    || l.strip_suffix(".*")
                        .is_some_and(|open| path.starts_with(&format!("{open}.")))
                    // An empty list carries nothing: fine wherever the
                    // manifest lists the list or its records' fields.
                    || path.strip_suffix("[]").is_some_and(|list| {
                        l == &list || l.starts_with(&format!("{list}[]."))
                    })
            })
        })
        .collect()
}

/// The dotted paths of `value`'s leaves (`a.b`, `a.list[].c`); an array of
/// plain values is one leaf, an empty array the leaf `a.list[]`.
fn flatten(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (name, child) in map {
                let next = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                flatten(child, &next, out);
            }
        }
        Value::Array(items) if items.is_empty() => leaf(format!("{path}[]"), out),
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for item in items {
                flatten(item, &format!("{path}[]"), out);
            }
        }
        _ => leaf(path.to_string(), out),
    }
}

/// Adds one leaf path, once.
fn leaf(path: String, out: &mut Vec<String>) {
    if !out.contains(&path) {
        out.push(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::Profile;

    fn facts(profile: Profile) -> Facts {
        Facts {
            origin: Origin {
                site: "lyon".into(),
                device: "pole-7".into(),
            },
            privacy: PrivacySettings {
                publish: profile,
                purpose: Some("pedestrian counts for the crossing's redesign".into()),
                ..Default::default()
            },
            topic_prefix: Some("city".into()),
            health_interval: Duration::from_secs(60),
            flows: true,
            lines: true,
            track_events: true,
            flow_interval: Duration::from_secs(300),
            fiware: false,
            lighting: true,
            remote: false,
            outbox: Some(Outbox {
                path: "/var/lib/luciole/outbox".into(),
                retention: Duration::from_secs(7 * 86400),
                max_bytes: 64 << 20,
            }),
            remote_state_dir: None,
            model: None,
            firmware: "1.2.3".into(),
        }
    }

    fn topics(m: &Value) -> Vec<String> {
        m["published"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["topic"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_default_profile_lists_no_crossing_or_track_topic() {
        let m = build(&facts(Profile::Aggregates));
        let t = topics(&m);
        assert!(
            t.contains(&"city/lyon/pole-7/events/flow".to_string()),
            "{t:?}"
        );
        assert!(
            t.iter()
                .all(|t| !t.ends_with("/crossing") && !t.ends_with("/track")),
            "{t:?}"
        );
        assert_eq!(m["profile"], "aggregates");
        assert_eq!(
            m["withheld"][0],
            json!({"kind": "crossing", "fields": "all"})
        );
        assert_eq!(m["stored"][0]["max_age_s"], 7 * 86400);
    }

    #[test]
    fn the_crossings_profile_lists_crossings_without_track_or_position() {
        let m = build(&facts(Profile::Crossings));
        let crossing = m["published"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["kind"] == "crossing")
            .unwrap();
        let fields: Vec<&str> = crossing["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&"data.at") && fields.contains(&"data.line"),
            "{fields:?}"
        );
        assert!(
            !fields.contains(&"data.track") && !fields.contains(&"data.position"),
            "{fields:?}"
        );
        assert!(topics(&m).iter().all(|t| !t.ends_with("/track")));
    }

    #[test]
    fn without_a_broker_nothing_is_published() {
        let mut f = facts(Profile::Tracks);
        f.topic_prefix = None;
        assert_eq!(build(&f)["published"], json!([]));
    }

    #[test]
    fn a_field_the_manifest_does_not_list_is_named() {
        let m = build(&facts(Profile::Crossings));
        let event = json!({
            "schema": 2, "id": 4, "time": "t", "site": "lyon", "device": "pole-7", "kind": "crossing",
            "data": {"line": "l", "direction": "a_to_b", "class": "car", "at": "t", "speed_px_s": 1.0, "track": 9},
        });
        assert_eq!(
            outside(&m, "city/lyon/pole-7/events/crossing", &event),
            ["data.track"]
        );
        assert_eq!(
            outside(&m, "city/lyon/pole-7/events/track", &event),
            ["topic city/lyon/pole-7/events/track"]
        );
    }

    #[test]
    fn an_empty_list_is_fine_where_its_records_are_listed_and_named_elsewhere() {
        let m = build(&facts(Profile::Aggregates));
        let topic = "city/lyon/pole-7/events/flow";
        let mut event = json!({
            "schema": 2, "id": 4, "time": "t", "site": "lyon", "device": "pole-7", "kind": "flow",
            "data": {"from": "t", "to": "t", "interval_s": 60.0, "lines": [], "zones": [], "speeds": []},
        });
        assert_eq!(outside(&m, topic, &event), Vec::<String>::new());
        event["data"]["faces"] = json!([]);
        assert_eq!(outside(&m, topic, &event), ["data.faces[]"]);
    }

    #[test]
    fn every_profile_s_manifest_matches_its_schema() {
        let schema: Value =
            serde_json::from_str(include_str!("../../schemas/manifest.json")).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        for profile in Profile::ALL {
            let mut f = facts(profile);
            f.remote = true;
            f.fiware = true;
            f.remote_state_dir = Some("/var/lib/luciole/remote".into());
            f.model = Some(Model {
                name: "ssd".into(),
                sha256: "0".repeat(64),
                licence: "Apache-2.0".into(),
                provenance: "p".into(),
                classes: vec!["person".into()],
            });
            let m = build(&f);
            let errors: Vec<String> = validator.iter_errors(&m).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{profile}: {errors:?}");
        }
    }

    #[test]
    fn nested_lists_of_objects_are_walked() {
        let f = fields("flow", &[]);
        assert!(f.contains(&"data.lines[].count".to_string()), "{f:?}");
        assert!(f.contains(&"time".to_string()) && f.contains(&"clock".to_string()));
        assert!(
            f.iter().all(|p| !p.ends_with(".*")),
            "flow is closed: {f:?}"
        );
    }
}
