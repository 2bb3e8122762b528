//! `[privacy]`: what leaves the pole (the data profile), why it counts, and
//! the masks blanked in every frame.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::check::Check;
use crate::privacy::mask::Mask;
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
    /// `[[privacy.masks]]`
    #[serde(default)]
    pub masks: Vec<RawMask>,
}

/// `[[privacy.masks]]`: a window, doorway or private property never analysed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMask {
    /// Name drawn on snapshots.
    pub name: String,
    /// Corners `[x, y]` in frame pixels, at least three, in order.
    pub polygon: Vec<[f32; 2]>,
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
    let mut names = BTreeSet::new();
    for (i, mask) in raw.masks.into_iter().enumerate() {
        let key = |k: &str| format!("privacy.masks[{i}].{k}");
        check.name(&key("name"), &mask.name);
        if !names.insert(mask.name.clone()) {
            check.fail(
                &key("name"),
                Some(format!("{:?}", mask.name)),
                "is already the name of another mask",
            );
        }
        let polygon = check.polygon(&key("polygon"), &mask.polygon, "mask");
        settings.masks.push(Mask {
            name: mask.name,
            polygon,
        });
    }
    settings
}
