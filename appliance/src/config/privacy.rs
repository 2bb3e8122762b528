//! `[privacy]`: what leaves the pole (the data profile), why it counts, the
//! masks blanked in every frame, and where images are kept and for how long.

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
    /// The only folder snapshots and captures are written into.
    pub images_dir: Option<String>,
    /// Seconds an image is kept there, 60 to 2 592 000 (30 days).
    pub image_retention_s: Option<u64>,
    /// Whether an integrator may order a snapshot over the command channel.
    pub remote_snapshots: Option<bool>,
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
    if let Some(dir) = &raw.images_dir {
        if let Some(path) = check.path("privacy.images_dir", dir) {
            settings.images.dir = path;
        }
    }
    if let Some(seconds) = raw.image_retention_s {
        check.range("privacy.image_retention_s", seconds, 60, 30 * 86_400);
        settings.images.retention = std::time::Duration::from_secs(seconds);
    }
    settings.remote_snapshots = raw.remote_snapshots.unwrap_or(false);
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
