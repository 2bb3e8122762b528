//! Remote operations: the signed commands a pole accepts from its broker,
//! and what it answers.
//!
//! An integrator's tool (`luciole fleet`) publishes a command on
//! `<prefix>/<site>/<device>/cmd/<command>` (or `<prefix>/<site>/cmd/<command>`
//! for every pole of a site). The message is an [`Envelope`]: the
//! [`Order`]'s JSON bytes (base64), an Ed25519 signature over exactly those
//! bytes, and where to answer. This module decides, purely and with the time
//! passed in, whether an order is admitted ([`Gate::admit`]): the payload is
//! small enough and well formed, the key is one of the pole's
//! (`[[remote.keys]]`), the signature is good, the order is addressed to
//! this pole, it is within its validity window, its nonce was not seen
//! before, and the signer's [`Role`] allows the command. Anything else is a
//! [`Refusal`] that changes nothing.
//!
//! What a command does is up to the daemon (the binary's `remote`
//! command layer); none of them can switch on identification or image
//! egress, because the pole has no such setting to switch.
//!
//! Nonces are remembered until their order expires ([`nonces::Nonces`]); the
//! daemon keeps them in its state folder so that a restart does not reopen
//! the replay window.

pub mod nonces;

use std::path::PathBuf;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::events::Origin;
// The pole's clock is taken as not set before this instant, as the lamp
// takes it.
use crate::light::policy::CLOCK_FLOOR_MS;
use nonces::Nonces;

/// The largest command payload accepted, in bytes (a whole configuration
/// file fits many times over).
pub const MAX_PAYLOAD: usize = 65_536;

/// The version of [`Order`] this pole understands.
pub const ORDER_VERSION: u32 = 1;

/// The `device` of an order addressed to every pole of its site.
pub const EVERY_DEVICE: &str = "*";

/// What a key may do. An integrator may do everything an operator may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Looks and lights: `status`, `config.get`, `light.override`.
    Operator,
    /// Also changes the pole: `config.apply`, `restart`.
    Integrator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Integrator => "integrator",
        }
    }
}

/// One key allowed to sign commands (`[[remote.keys]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// The name orders give in their `key` field (and audit events show).
    pub name: String,
    pub role: Role,
    pub public: VerifyingKey,
}

/// The `[remote]` section, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteSettings {
    pub keys: Vec<Key>,
    /// Where the daemon keeps the nonces seen and the configuration to roll
    /// back to.
    pub state_dir: PathBuf,
    /// Also listen on the site-wide topic `<prefix>/<site>/cmd/#`.
    pub site_wide: bool,
    /// How long a new configuration has to show analysed frames before it
    /// is rolled back.
    pub apply_timeout: Duration,
    /// `[remote.update]`: where `update.install` may download from, and
    /// when the pole may reboot; `None` refuses the command.
    pub update: Option<crate::update::UpdateSettings>,
    /// The longest validity window (expiry minus issue time) accepted.
    pub max_ttl: Duration,
    /// How far in the future an order's issue time may be (the signer's
    /// clock ahead of the pole's).
    pub clock_skew: Duration,
}

impl RemoteSettings {
    /// No keys yet, every other field at its default.
    pub fn new(keys: Vec<Key>) -> Self {
        Self {
            keys,
            state_dir: PathBuf::from("/var/lib/luciole/remote"),
            site_wide: true,
            apply_timeout: Duration::from_secs(60),
            update: None,
            max_ttl: Duration::from_secs(15 * 60),
            clock_skew: Duration::from_secs(5 * 60),
        }
    }

    /// The topic filters a pole subscribes to.
    pub fn filters(&self, prefix: &str, origin: &Origin) -> Vec<String> {
        let mut filters = vec![format!("{prefix}/{}/{}/cmd/#", origin.site, origin.device)];
        if self.site_wide {
            filters.push(format!("{prefix}/{}/cmd/#", origin.site));
        }
        filters
    }
}

/// The signed part of a command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// [`ORDER_VERSION`].
    pub v: u32,
    /// The command's name, e.g. `status`; also the last topic level.
    pub command: String,
    /// The command's arguments (an object; `{}` when it has none).
    #[serde(default = "empty_object")]
    pub args: serde_json::Value,
    pub site: String,
    /// A pole's id, or [`EVERY_DEVICE`].
    pub device: String,
    /// Unique per order: 16 to 64 characters `[A-Za-z0-9_-]`.
    pub nonce: String,
    /// When it was signed, UTC ms since the epoch.
    pub issued_ms: i64,
    /// When it stops being valid, UTC ms since the epoch.
    pub expires_ms: i64,
    /// The name of the key that signed it.
    pub key: String,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// A command message as published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Base64 of the [`Order`]'s JSON bytes.
    pub signed: String,
    /// Base64 of the Ed25519 signature over those bytes.
    pub signature: String,
    /// Where to answer, for MQTT 3.1.1 (MQTT 5 uses the response topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Given back in the response, for MQTT 3.1.1 (MQTT 5 uses the
    /// correlation data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
}

/// Signs `order` with `key`.
pub fn sign(order: &Order, key: &SigningKey) -> Envelope {
    let bytes = serde_json::to_vec(order).expect("an order always serialises");
    let signature = key.sign(&bytes);
    Envelope {
        signed: BASE64.encode(&bytes),
        signature: BASE64.encode(signature.to_bytes()),
        reply_to: None,
        correlation: None,
    }
}

/// A public key from its base64 text (32 bytes).
pub fn public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes, an Ed25519 public key has 32", b.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid Ed25519 public key".to_string())
}

/// The base64 text of a public key, as `[[remote.keys]] public_key` takes it.
pub fn public_key_text(key: &VerifyingKey) -> String {
    BASE64.encode(key.as_bytes())
}

/// A private key from its base64 text (the 32-byte seed).
pub fn private_key(text: &str) -> Result<SigningKey, String> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes, an Ed25519 private key has 32", b.len()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The base64 text of a private key (its seed).
pub fn private_key_text(key: &SigningKey) -> String {
    BASE64.encode(key.to_bytes())
}

/// A new key from the operating system's random source.
pub fn generate_key() -> Result<SigningKey, RemoteError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| RemoteError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A new nonce: 24 random bytes as 32 base64url characters.
pub fn new_nonce() -> Result<String, RemoteError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| RemoteError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What can go wrong outside the pure checks.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error("{path}: {reason}")]
    State { path: PathBuf, reason: String },
}

/// A command the pole knows, with its arguments checked.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Version, slot, uptime, health, configuration hash.
    Status,
    /// The configuration file's text and hash.
    ConfigGet,
    /// A new configuration: the whole file, or (`partial`) tables and keys
    /// to change in the current one. `dry_run` only validates.
    ConfigApply {
        config: String,
        partial: bool,
        dry_run: bool,
    },
    /// The lamp at `level` (0 to 1) for `duration`; `None` cancels an
    /// override in force.
    LightOverride {
        level: Option<f64>,
        duration: Duration,
    },
    /// Stop cleanly and start again.
    Restart,
    /// Download the RAUC bundle at `url` (HTTPS), check its `sha256`,
    /// install it, and reboot into it in the maintenance window (`window`,
    /// else the configuration's).
    UpdateInstall {
        url: String,
        sha256: String,
        size: Option<u64>,
        window: Option<String>,
    },
    /// One pixelated, annotated picture of the running pipeline's frames,
    /// published once on `<prefix>/<site>/<device>/snapshot`, never
    /// retained; only with `privacy.remote_snapshots = true`.
    Snapshot,
}

/// The longest light override accepted.
pub const MAX_OVERRIDE: Duration = Duration::from_secs(24 * 3600);

impl Command {
    /// Every command name, in the order the documentation lists them.
    pub const NAMES: [&'static str; 7] = [
        "status",
        "config.get",
        "config.apply",
        "light.override",
        "update.install",
        "restart",
        "snapshot",
    ];

    /// The least role that may run the command called `name`.
    pub fn role_needed(name: &str) -> Option<Role> {
        match name {
            "status" | "config.get" | "light.override" => Some(Role::Operator),
            "config.apply" | "restart" | "update.install" | "snapshot" => Some(Role::Integrator),
            _ => None,
        }
    }

    /// The command called `name` with its arguments.
    pub fn parse(name: &str, args: &serde_json::Value) -> Result<Command, Refusal> {
        let object = args
            .as_object()
            .ok_or_else(|| Refusal::BadArguments("args must be an object".into()))?;
        let allow = |keys: &[&str]| -> Result<(), Refusal> {
            match object.keys().find(|k| !keys.contains(&k.as_str())) {
                Some(extra) => Err(Refusal::BadArguments(format!(
                    "unknown argument {extra:?}{}",
                    if keys.is_empty() {
                        String::from(": this command takes none")
                    } else {
                        format!(": expected {}", keys.join(", "))
                    }
                ))),
                None => Ok(()),
            }
        };
        let flag = |key: &str| -> Result<bool, Refusal> {
            match object.get(key) {
                None => Ok(false),
                Some(serde_json::Value::Bool(b)) => Ok(*b),
                Some(other) => Err(Refusal::BadArguments(format!(
                    "{key} = {other}: must be true or false"
                ))),
            }
        };
        match name {
            "status" => allow(&[]).map(|_| Command::Status),
            "config.get" => allow(&[]).map(|_| Command::ConfigGet),
            "restart" => allow(&[]).map(|_| Command::Restart),
            "snapshot" => allow(&[]).map(|_| Command::Snapshot),
            "config.apply" => {
                allow(&["config", "partial", "dry_run"])?;
                let config = match object.get("config") {
                    Some(serde_json::Value::String(text)) => text.clone(),
                    _ => {
                        return Err(Refusal::BadArguments(
                            "config: the configuration's TOML text is required".into(),
                        ))
                    }
                };
                Ok(Command::ConfigApply {
                    config,
                    partial: flag("partial")?,
                    dry_run: flag("dry_run")?,
                })
            }
            "light.override" => {
                allow(&["level", "minutes", "cancel"])?;
                if flag("cancel")? {
                    if object.contains_key("level") {
                        return Err(Refusal::BadArguments(
                            "cancel and level cannot go together".into(),
                        ));
                    }
                    return Ok(Command::LightOverride {
                        level: None,
                        duration: Duration::ZERO,
                    });
                }
                let level = object
                    .get("level")
                    .and_then(|v| v.as_f64())
                    .filter(|l| (0.0..=100.0).contains(l))
                    .ok_or_else(|| {
                        Refusal::BadArguments(
                            "level: a number of percent from 0 to 100 is required".into(),
                        )
                    })?;
                let minutes = object
                    .get("minutes")
                    .and_then(|v| v.as_u64())
                    .filter(|m| (1..=MAX_OVERRIDE.as_secs() / 60).contains(m))
                    .ok_or_else(|| {
                        Refusal::BadArguments(format!(
                            "minutes: a whole number from 1 to {} is required",
                            MAX_OVERRIDE.as_secs() / 60
                        ))
                    })?;
                Ok(Command::LightOverride {
                    level: Some(level / 100.0),
                    duration: Duration::from_secs(minutes * 60),
                })
            }
            "update.install" => {
                allow(&["url", "sha256", "size", "window"])?;
                let text = |key: &str| object.get(key).and_then(|v| v.as_str());
                let url = text("url").ok_or_else(|| {
                    Refusal::BadArguments("url: the bundle's https:// URL is required".into())
                })?;
                crate::update::check_url(url).map_err(|e| Refusal::BadArguments(e.to_string()))?;
                let sha256 = text("sha256")
                    .and_then(crate::update::check_sha256)
                    .ok_or_else(|| {
                        Refusal::BadArguments(
                            "sha256: the bundle's sha256, 64 hex digits, is required".into(),
                        )
                    })?;
                let size = match object.get("size") {
                    None => None,
                    Some(v) => Some(v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                        Refusal::BadArguments("size: a whole number of bytes is expected".into())
                    })?),
                };
                let window = match object.get("window") {
                    None => None,
                    Some(v) => {
                        let w = v.as_str().ok_or_else(|| {
                            Refusal::BadArguments(
                                "window: \"now\" or \"HH:MM-HH:MM\" is expected".into(),
                            )
                        })?;
                        crate::update::Window::parse(w, "UTC")
                            .map_err(|e| Refusal::BadArguments(format!("window: {e}")))?;
                        Some(w.to_string())
                    }
                };
                Ok(Command::UpdateInstall {
                    url: url.to_string(),
                    sha256,
                    size,
                    window,
                })
            }
            other => Err(Refusal::UnknownCommand(other.to_string())),
        }
    }
}

/// Why a command was refused. Its [`Refusal::code`] is what responses and
/// audit events carry.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("the payload has {0} bytes, more than the {MAX_PAYLOAD} accepted")]
    Oversized(usize),
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("no key named {0:?} in [[remote.keys]]")]
    UnknownKey(String),
    #[error("the signature does not match the order and the key")]
    BadSignature,
    #[error("addressed to {0}, not to this pole")]
    WrongTarget(String),
    #[error("the pole's clock is not set: validity windows cannot be checked")]
    ClockNotSet,
    #[error("issued {0} s in the future, beyond the clock skew allowed")]
    NotYetValid(i64),
    #[error("expired {0} s ago")]
    Expired(i64),
    #[error("valid for {0} s, longer than remote.max_ttl_s allows")]
    TooLong(i64),
    #[error("this nonce was already used")]
    Replayed,
    #[error("too many orders in force; try again when some expire")]
    Busy,
    #[error("{command} needs the {needed} role; key {key:?} is {has}")]
    Forbidden {
        command: String,
        key: String,
        needed: &'static str,
        has: &'static str,
    },
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("bad arguments: {0}")]
    BadArguments(String),
}

impl Refusal {
    /// The code as responses and audit events carry it.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Oversized(_) => "oversized",
            Refusal::Malformed(_) => "malformed",
            Refusal::UnknownKey(_) => "unknown_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::WrongTarget(_) => "wrong_target",
            Refusal::ClockNotSet => "clock_not_set",
            Refusal::NotYetValid(_) => "not_yet_valid",
            Refusal::Expired(_) => "expired",
            Refusal::TooLong(_) => "too_long",
            Refusal::Replayed => "replayed",
            Refusal::Busy => "busy",
            Refusal::Forbidden { .. } => "forbidden",
            Refusal::UnknownCommand(_) => "unknown_command",
            Refusal::BadArguments(_) => "bad_arguments",
        }
    }
}

/// Where and how to answer a command.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    pub topic: Option<String>,
    pub correlation: Option<Vec<u8>>,
}

/// An admitted command, ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    pub command: Command,
    /// Its name as ordered.
    pub name: String,
    pub key: String,
    pub role: Role,
    pub nonce: String,
}

/// A refused command: what could be read of it, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    pub refusal: Refusal,
    /// The command's name, when it could be read.
    pub name: Option<String>,
    /// The key's name, when it could be read (not proof of who sent it
    /// unless the signature was good).
    pub key: Option<String>,
}

/// Admits or refuses commands for one pole.
#[derive(Clone, Debug)]
pub struct Gate {
    origin: Origin,
    /// `<prefix>/<site>/<device>/cmd/`: orders for this pole by name.
    device_topic: String,
    /// `<prefix>/<site>/cmd/`, with `site_wide`: orders for every pole.
    site_topic: Option<String>,
    keys: Vec<Key>,
    max_ttl_ms: i64,
    skew_ms: i64,
    nonces: Nonces,
}

impl Gate {
    /// A gate for the pole `origin` whose topics start with `prefix`.
    pub fn new(origin: Origin, prefix: &str, settings: &RemoteSettings, nonces: Nonces) -> Self {
        Self {
            device_topic: format!("{prefix}/{}/{}/cmd/", origin.site, origin.device),
            site_topic: settings
                .site_wide
                .then(|| format!("{prefix}/{}/cmd/", origin.site)),
            origin,
            keys: settings.keys.clone(),
            max_ttl_ms: settings.max_ttl.as_millis() as i64,
            skew_ms: settings.clock_skew.as_millis() as i64,
            nonces,
        }
    }

    /// The nonces remembered (to keep across restarts).
    pub fn nonces(&self) -> &Nonces {
        &self.nonces
    }

    /// Checks one command message received on `topic`; `now_ms` is the
    /// pole's UTC time. An admitted order's nonce is remembered.
    pub fn admit(
        &mut self,
        topic: &str,
        payload: &[u8],
        now_ms: i64,
    ) -> Result<Admitted, Box<Refused>> {
        let refuse = |refusal, name: Option<&str>, key: Option<&str>| {
            Box::new(Refused {
                refusal,
                name: name.map(shown),
                key: key.map(shown),
            })
        };
        if payload.len() > MAX_PAYLOAD {
            return Err(refuse(Refusal::Oversized(payload.len()), None, None));
        }
        let envelope = parse_envelope(payload).map_err(|r| refuse(r, None, None))?;
        let signed = BASE64.decode(envelope.signed.as_bytes()).map_err(|e| {
            refuse(
                Refusal::Malformed(format!("signed: not base64: {e}")),
                None,
                None,
            )
        })?;
        let order: Order = serde_json::from_slice(&signed).map_err(|e| {
            refuse(
                Refusal::Malformed(format!("signed: not an order: {e}")),
                None,
                None,
            )
        })?;
        let (name, key_name) = (Some(order.command.as_str()), Some(order.key.as_str()));
        let Some(key) = self.keys.iter().find(|k| k.name == order.key) else {
            return Err(refuse(
                Refusal::UnknownKey(order.key.clone()),
                name,
                key_name,
            ));
        };
        let signature = BASE64
            .decode(envelope.signature.as_bytes())
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or_else(|| refuse(Refusal::BadSignature, name, key_name))?;
        if key.public.verify_strict(&signed, &signature).is_err() {
            return Err(refuse(Refusal::BadSignature, name, key_name));
        }
        // From here on the order is the signer's own words.
        let fail = |refusal| refuse(refusal, name, key_name);
        if order.v != ORDER_VERSION {
            return Err(fail(Refusal::Malformed(format!(
                "order version {}, this pole reads {ORDER_VERSION}",
                order.v
            ))));
        }
        // A pole's own topic carries orders naming it; the site's topic
        // (with `site_wide`) orders for every pole: a site-wide order
        // republished on one pole's topic is refused, and so is one on the
        // site's topic when the pole does not listen there.
        let (command, every) = match (
            topic.strip_prefix(&self.device_topic),
            self.site_topic
                .as_deref()
                .and_then(|t| topic.strip_prefix(t)),
        ) {
            (Some(command), _) => (command, false),
            (None, Some(command)) => (command, true),
            (None, None) => {
                return Err(fail(Refusal::Malformed(format!(
                    "{:?} is not a command topic of this pole",
                    shown(topic)
                ))))
            }
        };
        if command != order.command {
            return Err(fail(Refusal::Malformed(format!(
                "published on {:?} but the order is for {:?}",
                shown(topic),
                order.command
            ))));
        }
        let for_us = order.site == self.origin.site
            && if every {
                order.device == EVERY_DEVICE
            } else {
                order.device == self.origin.device
            };
        if !for_us {
            return Err(fail(Refusal::WrongTarget(format!(
                "{}/{} on {}",
                shown(&order.site),
                shown(&order.device),
                if every {
                    "the site's topic"
                } else {
                    "this pole's topic"
                }
            ))));
        }
        if now_ms < CLOCK_FLOOR_MS {
            return Err(fail(Refusal::ClockNotSet));
        }
        if order.issued_ms > now_ms + self.skew_ms {
            return Err(fail(Refusal::NotYetValid(
                (order.issued_ms - now_ms) / 1000,
            )));
        }
        if order.expires_ms <= now_ms {
            return Err(fail(Refusal::Expired((now_ms - order.expires_ms) / 1000)));
        }
        if order.expires_ms - order.issued_ms > self.max_ttl_ms
            || order.expires_ms - now_ms > self.max_ttl_ms + self.skew_ms
        {
            return Err(fail(Refusal::TooLong(
                (order.expires_ms - order.issued_ms) / 1000,
            )));
        }
        if !nonces::well_formed(&order.nonce) {
            return Err(fail(Refusal::Malformed(
                "nonce: 16 to 64 characters [A-Za-z0-9_-] are required".into(),
            )));
        }
        let needed = Command::role_needed(&order.command)
            .ok_or_else(|| fail(Refusal::UnknownCommand(order.command.clone())))?;
        if key.role < needed {
            return Err(fail(Refusal::Forbidden {
                command: order.command.clone(),
                key: key.name.clone(),
                needed: needed.as_str(),
                has: key.role.as_str(),
            }));
        }
        let command = Command::parse(&order.command, &order.args).map_err(fail)?;
        // Last, so that a refused order does not use up its nonce.
        self.nonces
            .remember(&order.nonce, order.expires_ms, now_ms)
            .map_err(fail)?;
        Ok(Admitted {
            command,
            name: order.command.clone(),
            key: key.name.clone(),
            role: key.role,
            nonce: order.nonce,
        })
    }
}

/// At most 64 characters of text that came from outside (names in refusals
/// and audit events), with control characters replaced.
pub fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > 64 {
        out.push('…');
    }
    out
}

/// Whether `topic` is one a pole may answer on: `<prefix>/<site>/fleet/<id>/reply`,
/// where the integrators' tool listens. Anything else (a pole's own event
/// topics, another site) is refused, so a forged message cannot make a pole
/// publish where consumers read.
pub fn reply_allowed(prefix: &str, site: &str, topic: &str) -> bool {
    topic
        .strip_prefix(&format!("{prefix}/{site}/fleet/"))
        .and_then(|rest| rest.strip_suffix("/reply"))
        .is_some_and(|id| !id.is_empty() && !id.contains(['/', '+', '#']))
}

/// The envelope of a payload, or why it is not one.
pub fn parse_envelope(payload: &[u8]) -> Result<Envelope, Refusal> {
    serde_json::from_slice(payload).map_err(|e| Refusal::Malformed(format!("not a command: {e}")))
}

/// The answer to one command, published on its reply topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub site: String,
    pub device: String,
    /// The command's name, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The envelope's (MQTT 3.1.1) correlation, given back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ResponseError>,
}

/// Why a command was refused or failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseError {
    pub code: String,
    pub message: String,
    /// What is wrong with a configuration, one line per problem
    /// (`file:line key = value: reason`, as `check-config` prints them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[cfg(test)]
mod tests;
