//! `[remote]`: the signed commands a pole accepts from its broker, and who
//! may sign them (`[[remote.keys]]`).

use std::time::Duration;

use serde::Deserialize;

use super::check::Check;
use crate::remote::{self, Key, RemoteSettings, Role};

/// `[remote]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemote {
    /// The keys allowed to sign commands; at least one.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// Folder for the nonces seen and the configuration to roll back to
    /// (created if missing). Relative paths start from the configuration
    /// file's folder.
    pub state_dir: Option<String>,
    /// Also accept commands published for the whole site
    /// (`<prefix>/<site>/cmd/#`); default true.
    pub site_wide: Option<bool>,
    /// Seconds a configuration applied remotely has to show analysed frames
    /// before it is rolled back, 10 to 3600 (default 60).
    pub apply_timeout_s: Option<u64>,
    /// Longest validity window of a command (expiry minus issue time) in
    /// seconds, 10 to 86 400 (default 900).
    pub max_ttl_s: Option<u64>,
    /// How far a signer's clock may be ahead of the pole's, in seconds, 0
    /// to 3600 (default 300).
    pub clock_skew_s: Option<u64>,
    /// `[remote.update]`: `update.install` is refused without it.
    pub update: Option<RawUpdate>,
}

/// `[remote.update]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpdate {
    /// The city's CA certificates (PEM file): the only roots a bundle
    /// server's certificate is checked against. Required.
    pub ca: Option<String>,
    /// The largest bundle accepted, in MiB, 1 to 16384 (default 1024).
    pub max_mib: Option<u64>,
    /// When the pole may reboot into an installed update: `"HH:MM-HH:MM"`
    /// (may span midnight) or `"now"` (default `"02:00-05:00"`).
    pub window: Option<String>,
    /// The window's IANA time zone (default `"UTC"`).
    pub timezone: Option<String>,
    /// The image's boot check record (default `/run/luciole-boot-check`).
    pub boot_record: Option<String>,
}

/// `[[remote.keys]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// The name commands give (`luciole fleet keygen --name`).
    pub name: String,
    /// `operator` (status, config.get, light.override) or `integrator`
    /// (also config.apply and restart).
    pub role: String,
    /// The Ed25519 public key, base64 (the `.pub` file `luciole fleet
    /// keygen` writes).
    pub public_key: String,
}

pub(super) fn validate(raw: RawRemote, check: &mut Check<'_, '_>) -> Option<RemoteSettings> {
    let before = check.count();
    let mut settings = RemoteSettings::new(Vec::new());
    if raw.keys.is_empty() {
        check.fail(
            "remote.keys",
            None,
            "no [[remote.keys]]: a pole listening for commands needs at least one key to accept",
        );
    }
    for (index, key) in raw.keys.into_iter().enumerate() {
        let at = |field: &str| format!("remote.keys[{index}].{field}");
        check.name(&at("name"), &key.name);
        if settings.keys.iter().any(|k| k.name == key.name) {
            check.fail(
                &at("name"),
                Some(format!("{:?}", key.name)),
                "used by an earlier key",
            );
        }
        let role = match key.role.as_str() {
            "operator" => Some(Role::Operator),
            "integrator" => Some(Role::Integrator),
            _ => {
                check.fail(
                    &at("role"),
                    Some(format!("{:?}", key.role)),
                    "must be \"operator\" or \"integrator\"",
                );
                None
            }
        };
        let public = match remote::public_key(&key.public_key) {
            Ok(public) if public.is_weak() => {
                check.fail(
                    &at("public_key"),
                    Some(format!("{:?}", key.public_key)),
                    "a weak (small-order) Ed25519 key, which would accept forged signatures",
                );
                None
            }
            Ok(public) => Some(public),
            Err(reason) => {
                check.fail(
                    &at("public_key"),
                    Some(format!("{:?}", key.public_key)),
                    reason,
                );
                None
            }
        };
        if let (Some(role), Some(public)) = (role, public) {
            settings.keys.push(Key {
                name: key.name,
                role,
                public,
            });
        }
    }
    if let Some(dir) = &raw.state_dir {
        if let Some(path) = check.path("remote.state_dir", dir) {
            settings.state_dir = path;
        }
    }
    settings.site_wide = raw.site_wide.unwrap_or(settings.site_wide);
    let mut seconds = |key: &str, value: Option<u64>, default: Duration, min: u64, max: u64| {
        let value = value.unwrap_or(default.as_secs());
        check.range(key, value, min, max);
        Duration::from_secs(value)
    };
    settings.apply_timeout = seconds(
        "remote.apply_timeout_s",
        raw.apply_timeout_s,
        settings.apply_timeout,
        10,
        3600,
    );
    settings.max_ttl = seconds(
        "remote.max_ttl_s",
        raw.max_ttl_s,
        settings.max_ttl,
        10,
        86_400,
    );
    settings.clock_skew = seconds(
        "remote.clock_skew_s",
        raw.clock_skew_s,
        settings.clock_skew,
        0,
        3600,
    );
    if let Some(update) = raw.update {
        settings.update = validate_update(update, check);
    }
    (check.count() == before).then_some(settings)
}

fn validate_update(
    raw: RawUpdate,
    check: &mut Check<'_, '_>,
) -> Option<crate::update::UpdateSettings> {
    let Some(ca) = raw.ca else {
        check.fail(
            "remote.update.ca",
            None,
            "required: the PEM file of the CA that signs the update server's certificate",
        );
        return None;
    };
    let ca = check.file("remote.update.ca", &ca)?;
    let mut settings = crate::update::UpdateSettings::new(ca);
    let mib = raw.max_mib.unwrap_or(settings.max_bytes / (1024 * 1024));
    check.range("remote.update.max_mib", mib, 1, 16_384);
    settings.max_bytes = mib * 1024 * 1024;
    let timezone = raw.timezone.as_deref().unwrap_or("UTC");
    let text = raw.window.as_deref().unwrap_or("02:00-05:00");
    match crate::update::Window::parse(text, timezone) {
        Ok(window) => settings.window = window,
        Err(reason) => {
            let key = if reason.contains("time zone") {
                "remote.update.timezone"
            } else {
                "remote.update.window"
            };
            check.fail(key, None, reason);
        }
    }
    if let Some(record) = &raw.boot_record {
        settings.boot_record = check.path("remote.update.boot_record", record)?;
    }
    Some(settings)
}
