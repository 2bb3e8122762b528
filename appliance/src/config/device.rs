//! `[device]`: who this pole is. Both names go into MQTT topics and every
//! event's envelope.

use serde::Deserialize;

use super::check::Check;
use crate::events::Origin;

/// `[device]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    /// Site or district the pole belongs to, e.g. `"lyon-part-dieu"`. Used in
    /// MQTT topics: letters, digits, `-`, `_`, `.`.
    pub site: String,
    /// This pole's identifier, unique within its site, e.g. `"pole-0042"`.
    /// Same character rules as `site`.
    pub id: String,
}

pub(super) fn validate(raw: RawDevice, check: &mut Check<'_, '_>) -> Origin {
    check.name("device.site", &raw.site);
    check.name("device.id", &raw.id);
    Origin {
        site: raw.site,
        device: raw.id,
    }
}
