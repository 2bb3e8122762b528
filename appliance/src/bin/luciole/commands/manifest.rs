//! `luciole manifest --config FILE`: the data manifest of a configuration
//! (what the pole publishes, keeps and never produces), as the daemon
//! publishes it retained; and the configuration's facts it is built from.

use std::path::Path;
use std::process::ExitCode;

use luciole::config::{self, Settings};
use luciole::detect::manifest::Manifest as ModelManifest;
use luciole::privacy::manifest::{self, Facts, Model, Outbox};
use luciole::privacy::Profile;

/// The facts of `settings` the manifest states.
pub fn facts(settings: &Settings) -> Facts {
    let analytics = &settings.analytics;
    Facts {
        origin: settings.device.clone(),
        privacy: settings.privacy.clone(),
        topic_prefix: settings.mqtt.as_ref().map(|m| m.topic_prefix.clone()),
        health_interval: settings.events.health_interval,
        flows: !analytics.lines.is_empty() || !analytics.zones.is_empty(),
        lines: !analytics.lines.is_empty(),
        track_events: analytics.track_events,
        flow_interval: analytics.flow_interval,
        fiware: analytics.fiware,
        lighting: settings.lighting.is_some(),
        remote: settings.remote.is_some(),
        outbox: settings.outbox.as_ref().map(|o| Outbox {
            path: o.path.clone(),
            retention: std::time::Duration::from_millis(o.limits.retention_ms),
            max_bytes: o.limits.max_bytes,
        }),
        remote_state_dir: settings.remote.as_ref().map(|r| r.state_dir.clone()),
        model: settings.detect.as_ref().and_then(|d| model(&d.model)),
        firmware: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// The model's facts from its manifest in `models/`; `None` if it cannot be
/// read (the daemon refuses to start then anyway).
fn model(path: &Path) -> Option<Model> {
    let text = std::fs::read_to_string(path).ok()?;
    let m: ModelManifest = toml::from_str(&text).ok()?;
    Some(Model {
        name: m.name,
        sha256: m.sha256,
        licence: m.licence,
        provenance: m.provenance,
        classes: m.classes.into_keys().collect(),
    })
}

/// The manifest's JSON, as published.
pub fn bytes(settings: &Settings) -> Vec<u8> {
    serde_json::to_vec(&manifest::build(&facts(settings))).expect("a JSON value serialises")
}

/// What a person should hear about a valid configuration before it runs.
pub fn warnings(settings: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    if settings.privacy.publish == Profile::Tracks {
        out.push(format!(
            "{}: privacy.publish = \"tracks\" publishes a record per person and vehicle (track id, times, positions): use it only for a study with a legal basis",
            settings.file.display()
        ));
    }
    if settings.privacy.purpose.is_none() && settings.mqtt.is_some() {
        out.push(format!(
            "{}: privacy.purpose is not set: the published data manifest states no purpose",
            settings.file.display()
        ));
    }
    if settings.privacy.remote_snapshots {
        if settings.remote.is_none() || settings.detect.is_none() {
            out.push(format!(
                "{}: privacy.remote_snapshots = true has no effect without [remote] and [detect]",
                settings.file.display()
            ));
        } else {
            out.push(format!(
                "{}: privacy.remote_snapshots = true: an integrator's key may have a pixelated picture of the street published (once, not retained)",
                settings.file.display()
            ));
        }
    }
    out
}

pub fn run(file: &Path) -> ExitCode {
    match config::load(file) {
        Ok(settings) => {
            let document = manifest::build(&facts(&settings));
            println!(
                "{}",
                serde_json::to_string_pretty(&document).expect("a JSON value serialises")
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}
