//! `[mqtt]`: the city's broker, and how the pole talks to it.

use std::time::Duration;

use serde::Deserialize;

use super::check::Check;
use crate::events::Origin;
use crate::publish::session::Protocol;
use crate::publish::{MqttSettings, TlsSettings};

/// `[mqtt]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// Broker host name or IP address.
    pub host: String,
    /// MQTT protocol version: `"3.1.1"` (default) or `"5"`.
    pub protocol: Option<String>,
    /// Broker port (default 8883 with TLS, 1883 without).
    pub port: Option<u16>,
    /// TLS with the broker's certificate checked against `ca_file`. Turning
    /// it off sends everything, credentials included, in clear: only for a
    /// broker on the same host or a trusted link.
    pub tls: Option<bool>,
    /// PEM file of the CA(s) that signed the broker's certificate (required
    /// with TLS). Same path rules as `outbox.path`.
    pub ca_file: Option<String>,
    /// PEM client certificate chain, for brokers that authenticate clients
    /// by certificate (with `client_key_file`).
    pub client_cert_file: Option<String>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<String>,
    /// User name, when the broker asks for one.
    pub username: Option<String>,
    /// File whose first line is the password (never written in this file).
    pub password_file: Option<String>,
    /// MQTT client id (default `luciole-<site>-<device>`).
    pub client_id: Option<String>,
    /// First topic level: topics are `<prefix>/<site>/<device>/...`.
    pub topic_prefix: Option<String>,
    /// Seconds between keep-alive pings when idle, 5 to 3600.
    pub keep_alive_s: Option<u64>,
    /// First delay before reconnecting, in milliseconds; doubles on each
    /// failure, with random jitter.
    pub reconnect_min_ms: Option<u64>,
    /// Longest delay between reconnection attempts, in milliseconds.
    pub reconnect_max_ms: Option<u64>,
    /// Most events published and not yet acknowledged, 1 to 1000.
    pub inflight: Option<u16>,
    /// Largest MQTT packet sent or accepted, in bytes, topic and header
    /// included: 65536 to 268435455 (default 262144).
    pub max_packet_bytes: Option<u32>,
}

/// The largest event the outbox stores, encoded (the outbox bounds every
/// event to it when it is stored, splitting a large `flow` into parts).
const MAX_EVENT_BYTES: u32 = crate::events::MAX_EVENT_BYTES as u32;

/// `mqtt.max_packet_bytes` may not go below this: twice the largest stored
/// event, so every stored event fits in a packet with its topic (at most a
/// few hundred bytes) and header, with room to spare.
pub const MIN_PACKET_BYTES: u32 = 2 * MAX_EVENT_BYTES;

/// MQTT's own limit: the remaining length field tops out at 268,435,455.
const MQTT_MAX_PACKET_BYTES: u32 = 268_435_455;

pub(super) fn validate(
    raw: RawMqtt,
    origin: &Origin,
    check: &mut Check<'_, '_>,
) -> Option<MqttSettings> {
    let before = check.count();
    if raw.host.is_empty() || raw.host.contains(['/', ' ']) {
        check.fail(
            "mqtt.host",
            Some(format!("{:?}", raw.host)),
            "must be a host name or IP address (no scheme, port or path)",
        );
    }
    // `Ok(None)`: not written, the default applies.
    let protocol = match raw.protocol.as_deref() {
        None => Ok(None),
        Some("3.1.1") => Ok(Some(Protocol::V311)),
        Some("5") => Ok(Some(Protocol::V5)),
        Some(other) => {
            check.fail(
                "mqtt.protocol",
                Some(format!("{other:?}")),
                "must be \"3.1.1\" or \"5\"",
            );
            Err(())
        }
    };
    if raw.port == Some(0) {
        check.fail("mqtt.port", Some("0".into()), "must be between 1 and 65535");
    }
    let file = |key: &str, value: &Option<String>, check: &mut Check<'_, '_>| {
        check.file(key, value.as_deref()?)
    };
    let ca_file = file("mqtt.ca_file", &raw.ca_file, check);
    let cert = file("mqtt.client_cert_file", &raw.client_cert_file, check);
    let key = file("mqtt.client_key_file", &raw.client_key_file, check);
    let password_file = file("mqtt.password_file", &raw.password_file, check);
    let tls = if raw.tls.unwrap_or(true) {
        if raw.ca_file.is_none() {
            check.fail(
                "mqtt.ca_file",
                None,
                "TLS needs the CA that signed the broker's certificate; set mqtt.ca_file (or mqtt.tls = false for a plaintext broker)",
            );
        }
        if raw.client_cert_file.is_some() != raw.client_key_file.is_some() {
            check.fail(
                "mqtt.client_key_file",
                None,
                "mqtt.client_cert_file and mqtt.client_key_file go together: set both or neither",
            );
        }
        Some(TlsSettings {
            ca_file: ca_file.unwrap_or_default(),
            client_cert: cert.zip(key),
        })
    } else {
        for (name, value) in [
            ("mqtt.ca_file", &raw.ca_file),
            ("mqtt.client_cert_file", &raw.client_cert_file),
            ("mqtt.client_key_file", &raw.client_key_file),
        ] {
            if value.is_some() {
                check.fail(name, None, "only used with mqtt.tls = true");
            }
        }
        None
    };
    if raw.password_file.is_some() && raw.username.is_none() {
        check.fail("mqtt.password_file", None, "only used with mqtt.username");
    }
    let d = MqttSettings::new(raw.host.clone(), origin, tls);
    let client_id = raw.client_id.clone().unwrap_or(d.client_id.clone());
    if client_id.is_empty() || client_id.len() > 128 {
        check.fail(
            "mqtt.client_id",
            Some(format!("{client_id:?}")),
            "must be 1 to 128 characters",
        );
    }
    let topic_prefix = raw.topic_prefix.clone().unwrap_or(d.topic_prefix.clone());
    if topic_prefix.is_empty()
        || topic_prefix.starts_with('/')
        || topic_prefix.ends_with('/')
        || topic_prefix.contains(['+', '#'])
    {
        check.fail(
            "mqtt.topic_prefix",
            Some(format!("{topic_prefix:?}")),
            "must be a non-empty topic without wildcards (+, #) or leading/trailing '/'",
        );
    }
    let keep_alive_s = raw.keep_alive_s.unwrap_or(d.keep_alive.as_secs());
    let inflight = raw.inflight.unwrap_or(d.inflight);
    check.range("mqtt.keep_alive_s", keep_alive_s, 5, 3600);
    let reconnect = check.backoff(
        "mqtt",
        (raw.reconnect_min_ms, raw.reconnect_max_ms),
        d.reconnect,
        (600_000, 3_600_000),
    );
    check.range("mqtt.inflight", inflight.into(), 1, 1000);
    let max_packet_bytes = raw.max_packet_bytes.unwrap_or(d.max_packet_bytes);
    if max_packet_bytes < MIN_PACKET_BYTES {
        check.fail(
            "mqtt.max_packet_bytes",
            Some(max_packet_bytes.to_string()),
            format!(
                "must be at least {MIN_PACKET_BYTES}: the outbox stores events of up to {MAX_EVENT_BYTES} bytes, and each must fit in a packet with its topic"
            ),
        );
    } else if max_packet_bytes > MQTT_MAX_PACKET_BYTES {
        check.fail(
            "mqtt.max_packet_bytes",
            Some(max_packet_bytes.to_string()),
            format!("must be at most {MQTT_MAX_PACKET_BYTES} (MQTT's largest packet)"),
        );
    }
    if check.count() > before {
        return None;
    }
    Some(MqttSettings {
        protocol: protocol.ok()?.unwrap_or(d.protocol),
        port: raw.port.unwrap_or(d.port),
        username: raw.username,
        password_file,
        client_id,
        topic_prefix,
        keep_alive: Duration::from_secs(keep_alive_s),
        reconnect: reconnect?,
        inflight,
        max_packet_bytes,
        ..d
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse, ConfigError};

    const POLE: &str = "[device]\nsite = \"lyon\"\nid = \"pole-7\"\n\n[camera]\ndevice = \"/dev/video2\"\n\n[outbox]\n\n[mqtt]\nhost = \"127.0.0.1\"\ntls = false\n";

    fn max_packet(line: &str) -> Result<u32, ConfigError> {
        let text = format!("{POLE}{line}\n");
        parse(Path::new("pole.toml"), &text).map(|s| s.mqtt.unwrap().max_packet_bytes)
    }

    #[test]
    fn the_packet_limit_defaults_to_256_kib_and_must_hold_the_largest_stored_event() {
        assert_eq!(max_packet("").unwrap(), 256 * 1024);
        assert_eq!(max_packet("max_packet_bytes = 65536").unwrap(), 65_536);
        let small = max_packet("max_packet_bytes = 10240")
            .unwrap_err()
            .to_string();
        assert!(
            small.contains("pole.toml:13 mqtt.max_packet_bytes = 10240: must be at least 65536"),
            "{small}"
        );
        let huge = max_packet("max_packet_bytes = 300000000")
            .unwrap_err()
            .to_string();
        assert!(huge.contains("must be at most 268435455"), "{huge}");
    }
}
