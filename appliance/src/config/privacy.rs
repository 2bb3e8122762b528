//! `[privacy]`: what leaves the pole (the data profile) and why it counts.

use serde::Deserialize;

use super::check::Check;
use crate::privacy::{PrivacySettings, Profile};

/// Longest purpose statement, in characters.
const MAX_PURPOSE: usize = 500;

/// `[privacy]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivacy {
    /// `"aggregates"` (default), `"crossings"` or `"tracks"`.
    pub publish: Option<String>,
    /// Why the pole counts, in the city's words (stated in the manifest).
    pub purpose: Option<String>,
}

pub(super) fn validate(raw: Option<RawPrivacy>, check: &mut Check<'_, '_>) -> PrivacySettings {
    let raw = raw.unwrap_or_default();
    let mut settings = PrivacySettings::default();
    if let Some(name) = raw.publish {
        match Profile::parse(&name) {
            Some(profile) => settings.publish = profile,
            None => check.fail(
                "privacy.publish",
                Some(format!("{name:?}")),
                "expected \"aggregates\" (counts only), \"crossings\" (each crossing, no track id) or \"tracks\" (per-track records)",
            ),
        }
    }
    if let Some(purpose) = raw.purpose {
        let trimmed = purpose.trim();
        if trimmed.is_empty()
            || trimmed.chars().count() > MAX_PURPOSE
            || trimmed.chars().any(char::is_control)
        {
            check.fail(
                "privacy.purpose",
                Some(format!("{purpose:?}")),
                format!("must be one line of 1 to {MAX_PURPOSE} characters"),
            );
        } else {
            settings.purpose = Some(trimmed.to_string());
        }
    }
    settings
}
