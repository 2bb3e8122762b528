//! `[pipeline]`: the queues between the daemon's threads.

use serde::Deserialize;

use super::check::Check;
use crate::pipeline::PipelineSettings;

/// `[pipeline]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// Frames waiting between capture and inference, 1 to 16. When full, a
    /// camera's oldest frame is dropped (and counted); a recording played
    /// with `pace = "fast"` waits instead.
    pub queue: Option<usize>,
}

pub(super) fn validate(raw: Option<RawPipeline>, check: &mut Check<'_, '_>) -> PipelineSettings {
    let defaults = PipelineSettings::default();
    let queue = raw.and_then(|r| r.queue).unwrap_or(defaults.queue);
    if check.range("pipeline.queue", queue as u64, 1, 16) {
        PipelineSettings { queue }
    } else {
        defaults
    }
}
