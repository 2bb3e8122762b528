//! What a pole tells the city: versioned JSON events.
//!
//! Every event is an envelope (`schema`, `id`, `time`, `site`, `device`,
//! `kind`) around a body whose shape depends on `kind`. The id is given by
//! the [`crate::outbox`] when the event is committed: it increases by one per
//! event for the life of the outbox, across restarts, so a consumer can sort
//! and de-duplicate on it. A JSON Schema per kind lives in
//! `appliance/schemas/<kind>.json`.
//!
//! Topics: `<prefix>/<site>/<device>/events/<kind>` for events (QoS 1, not
//! retained), and `<prefix>/<site>/<device>/status` for the retained
//! presence message (`online` on connect, `offline` as the broker's last
//! will).

pub mod clock;
mod finite;

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use clock::ClockMark;

/// Version of the envelope and bodies below; bumped on any change a
/// consumer could notice.
pub const SCHEMA_VERSION: u32 = 2;

/// Largest encoded event (the JSON payload published), bytes. The outbox
/// stores nothing larger: a `flow` is split into parts, anything else is
/// replaced by an `event_too_large` alert. The MQTT packet limit is set
/// above it.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;

/// Problems turning bytes back into an event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Stored bytes are not an event of this schema.
    #[error("event {id}: cannot decode: {source}")]
    Decode {
        id: u64,
        #[source]
        source: serde_json::Error,
    },
}

/// One event as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// [`SCHEMA_VERSION`] at the time the event was made.
    pub schema: u32,
    /// Device-unique, increasing id given by the outbox.
    pub id: u64,
    /// UTC time the event was made, RFC 3339 with milliseconds.
    pub time: String,
    /// `unsynchronised` when the event was made before the system clock was
    /// synchronised (`time` may then be far off); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockMark>,
    /// `device.site` of the configuration.
    pub site: String,
    /// `device.id` of the configuration.
    pub device: String,
    /// What happened; serialised as `kind` plus `data`.
    #[serde(flatten)]
    pub body: Body,
}

/// The kinds of event, each with its own body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Body {
    /// The daemon's state changed (started, stopping, camera back).
    Status(Status),
    /// Periodic health figures.
    Health(Health),
    /// Something failed and the daemon is working around it.
    Error(ErrorReport),
    /// Events were deleted unpublished (outbox full or too old).
    Dropped(Dropped),
    /// Needs a person's attention (e.g. storage was corrupted).
    Alert(Alert),
    /// An object crossed a counting line.
    Crossing(Crossing),
    /// A track ended: where an object went, without who it was.
    Track(TrackSummary),
    /// Counts, occupancy and speeds over one interval.
    Flow(Flow),
    /// A FIWARE Smart Data Models entity (NGSI-LD, key-values form).
    Fiware(serde_json::Value),
    /// The lamp's target level or its reason changed.
    Light(crate::light::LightState),
    /// A remote command was refused, accepted, done or failed.
    Audit(Audit),
    /// One step of a software update ordered remotely.
    Update(UpdateStep),
    /// The lamp's energy over the night that just ended.
    Energy(Energy),
}

impl Body {
    /// The `kind` string, also the last topic level.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Status(_) => "status",
            Body::Health(_) => "health",
            Body::Error(_) => "error",
            Body::Dropped(_) => "dropped",
            Body::Alert(_) => "alert",
            Body::Crossing(_) => "crossing",
            Body::Track(_) => "track",
            Body::Flow(_) => "flow",
            Body::Fiware(_) => "fiware",
            Body::Light(_) => "light",
            Body::Audit(_) => "audit",
            Body::Update(_) => "update",
            Body::Energy(_) => "energy",
        }
    }
}

/// `status` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// `started`, `stopping`, `camera_lost` or `camera_back`.
    pub state: String,
    /// The daemon's version.
    pub version: String,
    /// Free text for people.
    pub detail: String,
}

/// `health` body: figures since the previous health event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Frames per second measured over the interval.
    pub fps: f64,
    /// Frames received since start.
    pub frames: u64,
    /// Frames the driver or the pipeline dropped since start.
    pub dropped_frames: u64,
    /// Camera reconnections since start.
    pub reconnects: u64,
    /// Milliseconds without a camera since start.
    pub outage_ms: u64,
    /// Events waiting in the outbox (not yet acknowledged by the broker).
    pub outbox_depth: u64,
    /// Broker connections regained since start (after a lost one; failed
    /// attempts are not counted).
    pub broker_reconnects: u64,
    /// Frames the model ran on since start.
    pub inferences: u64,
    /// Frames motion gating spared the model since start.
    pub skipped_by_motion: u64,
    /// Frames where things moved but the tracker only predicted, the
    /// adaptive rate sparing the model, since start.
    #[serde(default)]
    pub predicted: u64,
    /// Inferences per second over the interval.
    #[serde(default)]
    pub inference_fps: f64,
    /// Frames dropped between capture and inference since start (inference
    /// slower than the camera).
    pub queue_dropped: u64,
    /// Mean milliseconds per inference (pre- and post-processing included)
    /// over the interval; 0 when none ran.
    pub inference_ms: f64,
    /// Confirmed tracks alive now.
    pub tracks: u64,
}

/// `crossing` body: one object crossed a counting line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crossing {
    /// The line's configured name.
    pub line: String,
    /// `<side>_to_<side>` with the line's side names.
    pub direction: String,
    /// `person`, `bicycle`, `car`, `motorcycle`, `bus` or `truck`.
    pub class: String,
    /// Ephemeral track id (random per run, never linked across runs);
    /// published with the `tracks` data profile only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub track: Option<u32>,
    /// When it crossed (UTC, from the frame's time): milliseconds with the
    /// `tracks` profile, whole seconds with `crossings`.
    pub at: String,
    /// Where its path between the two measured positions met the line,
    /// frame pixels; published with the `tracks` profile only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub position: Option<[f32; 2]>,
    /// Speed at the crossing, pixels per second.
    pub speed_px_s: f64,
    /// Speed at the crossing, metres per second (with a ground calibration).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub speed_m_s: Option<f64>,
}

/// `track` body: a summary of one ended track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackSummary {
    /// Ephemeral track id.
    pub track: u32,
    pub class: String,
    /// When it was first seen (UTC, from the frame's time).
    pub first_seen: String,
    /// From first to last detection.
    pub duration_ms: u64,
    /// Frames it was detected on.
    pub detections: u32,
    /// Where it was first and last seen standing, frame pixels.
    pub first: [f32; 2],
    pub last: [f32; 2],
    /// Path length, pixels.
    pub distance_px: f64,
    /// Mean speed, pixels per second.
    pub speed_px_s: f64,
    /// Path length and mean speed on the ground (with a calibration).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub distance_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub speed_m_s: Option<f64>,
    /// Zones it stood in.
    pub zones: Vec<String>,
}

/// `flow` body: one aggregation interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// Start and end of the interval (UTC, from frame times).
    pub from: String,
    pub to: String,
    pub interval_s: f64,
    /// Crossings per line, direction and class (only non-zero ones).
    pub lines: Vec<FlowCount>,
    /// Occupancy and dwell per zone and class (only classes seen).
    pub zones: Vec<FlowZone>,
    /// Mean speed per class of the tracks seen moving.
    pub speeds: Vec<FlowSpeed>,
    /// Set when the interval was too large for one event
    /// ([`MAX_EVENT_BYTES`]) and is sent in parts: each part carries some
    /// of the lists, all with the same interval.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub part: Option<FlowPart>,
}

/// Which part of a split `flow` this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowPart {
    /// 1-based.
    pub index: u32,
    /// How many parts the interval was split into.
    pub of: u32,
}

/// Crossings of one line in one direction by one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowCount {
    pub line: String,
    pub direction: String,
    pub class: String,
    pub count: u64,
}

/// One zone and class over an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowZone {
    pub zone: String,
    pub class: String,
    /// Mean number present per frame.
    pub occupancy_mean: f64,
    /// Most present on one frame.
    pub occupancy_max: u64,
    /// Mean time spent in the zone by those who left it in the interval.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dwell_mean_s: Option<f64>,
    /// How many left it in the interval.
    pub dwells: u64,
}

/// Mean speed of one class over an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowSpeed {
    pub class: String,
    /// Tracks measured.
    pub tracks: u64,
    pub speed_px_s: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub speed_m_s: Option<f64>,
}

/// `error` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Free text for people.
    pub message: String,
}

/// The codes of `error` events: the one list. The `error` schema's `code`
/// enum and the table in docs/events.md say the same (a test checks), and
/// an error event cannot be made with a code that is not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The camera could not be opened at start.
    CameraUnavailable,
    /// No frame for the camera's timeout; it is reopened with backoff.
    CameraLost,
    /// The source failed in a way reopening cannot cure.
    CaptureFailed,
    /// The model or its runtime could not be loaded at start.
    DetectorUnavailable,
    /// Detection failed while running.
    DetectorFailed,
    /// The lamp's outputs could not be opened; counting goes on.
    LightingUnavailable,
    /// The pipeline stopped on another error.
    PipelineFailed,
    /// SIGHUP: the configuration file is invalid; the daemon runs on.
    ConfigRejected,
    /// SIGHUP: the new configuration's stages failed to open; the daemon
    /// went back to the previous configuration.
    ConfigRolledBack,
}

impl ErrorCode {
    /// Every code, in the order the documentation lists them.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::CameraUnavailable,
        ErrorCode::CameraLost,
        ErrorCode::DetectorUnavailable,
        ErrorCode::DetectorFailed,
        ErrorCode::LightingUnavailable,
        ErrorCode::CaptureFailed,
        ErrorCode::PipelineFailed,
        ErrorCode::ConfigRejected,
        ErrorCode::ConfigRolledBack,
    ];

    /// The code as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::CameraUnavailable => "camera_unavailable",
            ErrorCode::CameraLost => "camera_lost",
            ErrorCode::CaptureFailed => "capture_failed",
            ErrorCode::DetectorUnavailable => "detector_unavailable",
            ErrorCode::DetectorFailed => "detector_failed",
            ErrorCode::LightingUnavailable => "lighting_unavailable",
            ErrorCode::PipelineFailed => "pipeline_failed",
            ErrorCode::ConfigRejected => "config_rejected",
            ErrorCode::ConfigRolledBack => "config_rolled_back",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// `dropped` body: the gap a consumer will see in ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    /// `overflow` (outbox full), `expired` (older than the retention),
    /// `refused` (the broker would not take it) or `too_large` (over the
    /// MQTT packet limit).
    pub reason: String,
    /// How many events were deleted.
    pub count: u64,
    /// Smallest deleted id.
    pub first_id: u64,
    /// Largest deleted id.
    pub last_id: u64,
    /// Time of the oldest deleted event.
    pub from: String,
    /// Time of the newest deleted event.
    pub to: String,
}

/// `alert` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable machine-readable code, e.g. `outbox_corrupted`.
    pub code: String,
    /// Free text for people.
    pub message: String,
}

/// `audit` body: one step of a remote command. Never its arguments (a
/// configuration, a level): only who, what and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    /// The key the command names (`[[remote.keys]]`); whether the
    /// signature matched it is told by `outcome` and `code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key's role, once the signature matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The command's name, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `refused`, `accepted`, `done` or `failed`.
    pub outcome: String,
    /// Why it was refused or failed (the response's error code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Free text for people.
    pub detail: String,
}

/// `update` body: one step of `update.install`, from the order to the new
/// system marked good (or refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateStep {
    /// `accepted`, `downloading`, `downloaded`, `installing`, `installed`,
    /// `scheduled`, `rebooting`, `booted`, `good` or `failed`.
    pub step: String,
    /// The bundle's URL without credentials or query.
    pub url: String,
    pub sha256: String,
    /// Bytes downloaded (download steps), or RAUC's percentage
    /// (`installing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    /// The slot booted (`booted`, `good`, `failed` after a reboot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// When the reboot is planned (`scheduled`), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Why it failed (`failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Free text for people.
    pub detail: String,
}

/// `energy` body: the lamp's energy over one night, from its light
/// timeline and its rated power (`lighting.lamp_watts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Energy {
    /// The night's start (or the daemon's first light change in it) and
    /// end, RFC 3339.
    pub from: String,
    pub to: String,
    /// Hours the lighting policy called night.
    pub night_h: f64,
    pub used_kwh: f64,
    /// A lamp at full power all night.
    pub full_kwh: f64,
    /// `full_kwh - used_kwh` (negative when light given in the day
    /// outweighs the dimming).
    pub saved_kwh: f64,
    pub lamp_watts: f64,
}

/// Who is speaking: put in every envelope and topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub site: String,
    pub device: String,
}

impl Origin {
    /// The full event with the outbox's id and time, marked when the
    /// system clock is not synchronised.
    pub fn event(&self, id: u64, time_ms: u64, body: Body) -> Event {
        self.event_marked(id, time_ms, clock::system_mark(), body)
    }

    /// The full event with the outbox's id and time, and a given clock
    /// mark.
    pub fn event_marked(
        &self,
        id: u64,
        time_ms: u64,
        clock: Option<ClockMark>,
        body: Body,
    ) -> Event {
        Event {
            schema: SCHEMA_VERSION,
            id,
            time: rfc3339_ms(time_ms),
            clock,
            site: self.site.clone(),
            device: self.device.clone(),
            body,
        }
    }

    /// `<prefix>/<site>/<device>/events/<kind>`.
    pub fn event_topic(&self, prefix: &str, kind: &str) -> String {
        format!("{prefix}/{}/{}/events/{kind}", self.site, self.device)
    }

    /// `<prefix>/<site>/<device>/status` (retained presence).
    pub fn presence_topic(&self, prefix: &str) -> String {
        format!("{prefix}/{}/{}/status", self.site, self.device)
    }

    /// The topic of the retained data manifest.
    pub fn manifest_topic(&self, prefix: &str) -> String {
        format!("{prefix}/{}/{}/manifest", self.site, self.device)
    }

    /// The retained presence payload: `online` or `offline`.
    pub fn presence(&self, state: &str) -> Vec<u8> {
        serde_json::json!({
            "schema": SCHEMA_VERSION,
            "site": self.site,
            "device": self.device,
            "state": state,
        })
        .to_string()
        .into_bytes()
    }
}

/// Where the events a stage produces go: the daemon's reporter (outbox,
/// then broker), the demo's printer, a plain `Vec` in tests.
pub trait Sink {
    /// Takes one event. It runs on the pipeline's main thread: keep it
    /// short (a store write, a line of output).
    fn event(&mut self, body: Body);

    /// Every crossing as analytics found it, whatever the data profile lets
    /// out, for a local display (the demo). Publishing sinks leave it: what
    /// they get is [`Sink::event`] only.
    fn seen(&mut self, _crossing: &Crossing) {}
}

/// A collector: keeps every event in order (tests, tools).
impl Sink for Vec<Body> {
    fn event(&mut self, body: Body) {
        self.push(body);
    }
}

/// `[events]`, validated: what the daemon reports on its own, and how
/// often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSettings {
    /// Time between two `health` events.
    pub health_interval: std::time::Duration,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            health_interval: std::time::Duration::from_secs(60),
        }
    }
}

impl Event {
    /// Decodes stored or received JSON. An event holding a number beyond
    /// its field's range (a 32-bit field given `1e39`) is refused: it would
    /// hold infinity (docs/events.md, "Numbers").
    pub fn decode(id: u64, bytes: &[u8]) -> Result<Event, EventError> {
        let mut event: Event =
            serde_json::from_slice(bytes).map_err(|source| EventError::Decode { id, source })?;
        if let Some(field) = finite::not_finite(&mut event.body).first() {
            return Err(EventError::Decode {
                id,
                source: serde::de::Error::custom(format!(
                    "data.{field}: a number out of the range of its field"
                )),
            });
        }
        Ok(event)
    }

    /// The JSON bytes published and stored. They always decode: a number
    /// that is not finite (which JSON cannot hold) is written as 0, or left
    /// out when its field is optional (docs/events.md, "Numbers"), with a
    /// warning naming the fields: such a number is a bug where the event
    /// was made.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = self.body.clone();
        let repaired = finite::repair(&mut body);
        if repaired.is_empty() {
            return serde_json::to_vec(self).expect("events always serialise");
        }
        tracing::warn!(
            "event {} ({}): data.{} not finite, written as 0 or left out",
            self.id,
            self.body.kind(),
            repaired.join(", data.")
        );
        let event = Event {
            schema: self.schema,
            id: self.id,
            time: self.time.clone(),
            clock: self.clock,
            site: self.site.clone(),
            device: self.device.clone(),
            body,
        };
        serde_json::to_vec(&event).expect("events always serialise")
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the Unix epoch.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Milliseconds since the Unix epoch of a time written by [`rfc3339_ms`].
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[10] != b'T' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    // Days since 1970-01-01 from a civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = ((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms;
    u64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339_ms(1_795_948_194_123), "2026-11-29T10:29:54.123Z");
        for ms in [0, 951_782_400_007, 1_795_948_194_123, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms));
        }
        assert_eq!(parse_rfc3339_ms("2026-11-29 10:29:54"), None);
    }

    #[test]
    fn an_event_round_trips_with_kind_and_data_beside_the_envelope() {
        let origin = Origin {
            site: "lyon".into(),
            device: "pole-7".into(),
        };
        let event = origin.event(
            42,
            0,
            Body::Error(ErrorReport {
                code: ErrorCode::CameraLost,
                message: "no frame for 2 s".into(),
            }),
        );
        let json: serde_json::Value = serde_json::from_slice(&event.encode()).unwrap();
        assert_eq!(json["kind"], "error");
        assert_eq!(json["data"]["code"], "camera_lost");
        assert_eq!(json["id"], 42);
        assert_eq!(json["schema"], SCHEMA_VERSION);
        assert_eq!(Event::decode(42, &event.encode()).unwrap(), event);
        assert_eq!(
            origin.event_topic("luciole", event.body.kind()),
            "luciole/lyon/pole-7/events/error"
        );
    }

    #[test]
    fn an_event_made_before_the_clock_was_synchronised_says_so_in_its_envelope() {
        let origin = Origin {
            site: "lyon".into(),
            device: "pole-7".into(),
        };
        let body = || {
            Body::Error(ErrorReport {
                code: ErrorCode::CameraLost,
                message: "x".into(),
            })
        };
        let marked = origin.event_marked(1, 0, Some(ClockMark::Unsynchronised), body());
        let json: serde_json::Value = serde_json::from_slice(&marked.encode()).unwrap();
        assert_eq!(json["clock"], "unsynchronised");
        assert_eq!(Event::decode(1, &marked.encode()).unwrap(), marked);
        let plain = origin.event_marked(2, 0, None, body());
        let json: serde_json::Value = serde_json::from_slice(&plain.encode()).unwrap();
        assert!(json.get("clock").is_none(), "{json}");
        // Events stored before the mark existed still decode.
        assert_eq!(Event::decode(2, &plain.encode()).unwrap().clock, None);
    }

    /// The JSON Schema of a kind (appliance/schemas/KIND.json).
    fn schema(kind: &str) -> jsonschema::Validator {
        let path = format!("{}/schemas/{kind}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let schema: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn origin() -> Origin {
        Origin {
            site: "lyon".into(),
            device: "pole-7".into(),
        }
    }

    /// A `crossing` with the given numbers.
    fn crossing(position: [f32; 2], speed_px_s: f64, speed_m_s: Option<f64>) -> Body {
        Body::Crossing(Crossing {
            line: "north".into(),
            direction: "a_to_b".into(),
            class: "car".into(),
            track: Some(3),
            at: rfc3339_ms(0),
            position: Some(position),
            speed_px_s,
            speed_m_s,
        })
    }

    #[test]
    fn an_event_holding_a_number_that_is_not_finite_encodes_to_bytes_that_decode() {
        // What the fuzz finding (fuzz/regressions/event_decode/infinite-f32)
        // showed: infinity in a position, NaN in a speed.
        let origin = origin();
        let event = origin.event_marked(
            1,
            0,
            None,
            crossing([f32::INFINITY, 2.0], f64::NAN, Some(f64::NEG_INFINITY)),
        );
        let encoded = event.encode();
        let back = Event::decode(1, &encoded).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&encoded));
        });
        assert_eq!(
            back,
            origin.event_marked(1, 0, None, crossing([0.0, 2.0], 0.0, None))
        );
    }

    #[test]
    fn every_number_of_every_kind_that_is_not_finite_is_written_as_0_or_left_out() {
        let (inf, nan) = (f64::INFINITY, f64::NAN);
        let bodies = |bad: bool| {
            let (x, y) = if bad { (inf, nan) } else { (0.0, 0.0) };
            let (f, g) = if bad {
                (f32::NEG_INFINITY, f32::NAN)
            } else {
                (0.0, 0.0)
            };
            let opt = |v: f64| if bad { Some(v) } else { None };
            vec![
                Body::Health(Health {
                    fps: x,
                    frames: 1,
                    dropped_frames: 2,
                    reconnects: 3,
                    outage_ms: 4,
                    outbox_depth: 5,
                    broker_reconnects: 6,
                    inferences: 7,
                    skipped_by_motion: 8,
                    predicted: 0,
                    inference_fps: 0.0,
                    queue_dropped: 9,
                    inference_ms: y,
                    tracks: 10,
                }),
                Body::Track(TrackSummary {
                    track: 3,
                    class: "person".into(),
                    first_seen: rfc3339_ms(0),
                    duration_ms: 1200,
                    detections: 12,
                    first: [f, 5.0],
                    last: [7.0, g],
                    distance_px: y,
                    speed_px_s: x,
                    distance_m: opt(nan),
                    speed_m_s: opt(inf),
                    zones: vec!["square".into()],
                }),
                Body::Flow(Flow {
                    from: rfc3339_ms(0),
                    to: rfc3339_ms(60_000),
                    interval_s: y,
                    lines: vec![],
                    zones: vec![FlowZone {
                        zone: "square".into(),
                        class: "person".into(),
                        occupancy_mean: x,
                        occupancy_max: 2,
                        dwell_mean_s: opt(nan),
                        dwells: 1,
                    }],
                    speeds: vec![FlowSpeed {
                        class: "car".into(),
                        tracks: 4,
                        speed_px_s: -x,
                        speed_m_s: opt(inf),
                    }],
                    part: None,
                }),
                Body::Light(crate::light::LightState {
                    level: y,
                    previous: x,
                    reason: crate::light::LightReason::Presence,
                    night: true,
                    detail: "presence".into(),
                }),
            ]
        };
        for (id, (bad, good)) in (1..).zip(bodies(true).into_iter().zip(bodies(false))) {
            let event = origin().event_marked(id, 0, None, bad);
            let encoded = event.encode();
            let text = String::from_utf8_lossy(&encoded);
            assert!(!text.contains("null"), "{text}");
            let json: serde_json::Value = serde_json::from_slice(&encoded).unwrap();
            assert!(schema(event.body.kind()).is_valid(&json), "{text}");
            let back = Event::decode(id, &encoded).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(back, origin().event_marked(id, 0, None, good), "{text}");
        }
    }

    #[test]
    fn a_number_beyond_a_32_bit_field_is_refused_when_decoding_and_its_largest_value_reads_back() {
        // Found by fuzzing (fuzz/regressions/event_decode/infinite-f32): a
        // stored value (8 bytes of time, then the event) with a position of
        // 1e39, infinity as an f32. It decoded, and then encoded to `null`.
        let stored = include_bytes!("../../../fuzz/regressions/event_decode/infinite-f32");
        let err = Event::decode(1, &stored[8..]).unwrap_err().to_string();
        assert_eq!(
            err,
            "event 1: cannot decode: data.position: a number out of the range of its field"
        );
        // The largest f32 is in range, and survives the round trip.
        let origin = origin();
        let event =
            origin.event_marked(2, 0, None, crossing([f32::MAX, -f32::MAX], f64::MAX, None));
        let encoded = event.encode();
        assert_eq!(Event::decode(2, &encoded).unwrap(), event);
        // The schema says the same: the largest f32 passes, 1e39 does not.
        let crossing = schema("crossing");
        let mut json: serde_json::Value = serde_json::from_slice(&encoded).unwrap();
        assert!(crossing.is_valid(&json), "{json}");
        json["data"]["position"][0] = serde_json::json!(1e39);
        assert!(!crossing.is_valid(&json), "{json}");
        let text = json.to_string();
        assert!(Event::decode(2, text.as_bytes()).is_err(), "{text}");
    }

    #[test]
    fn error_codes_are_one_list_in_the_code_the_schema_and_the_docs() {
        let in_code: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
            let back: ErrorCode = serde_json::from_value(code.as_str().into()).unwrap();
            assert_eq!(back, code);
        }
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/error.json")).unwrap();
        let in_schema: Vec<&str> = schema["properties"]["data"]["properties"]["code"]["enum"]
            .as_array()
            .expect("error.json: data.code has an enum")
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(in_schema, in_code, "appliance/schemas/error.json");
        let docs = include_str!("../../../docs/events.md");
        let table = docs
            .split("`error` codes (")
            .nth(1)
            .expect("docs/events.md has an `error` codes table");
        let in_docs: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with("| `"))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .collect();
        assert_eq!(in_docs, in_code, "docs/events.md");
    }
}
