//! `[metrics]`: the OpenMetrics endpoint for the pole itself.

use serde::Deserialize;

use super::check::Check;
use crate::metrics::MetricsSettings;

/// `[metrics]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `IP:PORT` to serve `GET /metrics` on; a loopback address only
    /// (default 127.0.0.1:9464).
    pub listen: Option<String>,
}

pub(super) fn validate(raw: RawMetrics, check: &mut Check<'_, '_>) -> Option<MetricsSettings> {
    let mut settings = MetricsSettings::default();
    if let Some(text) = raw.listen {
        match text.parse::<std::net::SocketAddr>() {
            Ok(address) if address.ip().is_loopback() => settings.listen = address,
            Ok(_) => {
                check.fail(
                    "metrics.listen",
                    Some(format!("{text:?}")),
                    "must be a loopback address (127.0.0.1:PORT or [::1]:PORT): the endpoint is for the pole itself",
                );
                return None;
            }
            Err(_) => {
                check.fail(
                    "metrics.listen",
                    Some(format!("{text:?}")),
                    "expected IP:PORT, e.g. \"127.0.0.1:9464\"",
                );
                return None;
            }
        }
    }
    Some(settings)
}
