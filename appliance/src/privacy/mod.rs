//! What leaves the pole: the data profile (`privacy.publish`) applied where
//! analytics outputs become events, and the data manifest that states it.
//!
//! A city usually needs counts, not records about individuals. The profile
//! decides, in one place ([`Profile::event`]), which of the analytics'
//! outputs become events and with which fields:
//!
//! - [`Profile::Aggregates`] (the default): flows only (counts per interval,
//!   occupancy, mean speeds), beside status, health, light and the other
//!   device events. No track id, no per-object time or position.
//! - [`Profile::Crossings`]: adds one `crossing` event per crossing, its time
//!   rounded down to the second, without track id or position.
//! - [`Profile::Tracks`]: adds the track id, millisecond time and position
//!   to each crossing, and one `track` summary per ended track.
//!
//! Every event the pipeline makes from analytics passes through
//! [`Profile::event`], so no other setting can publish what the profile
//! excludes. Local displays (the demo) get every crossing through
//! [`crate::events::Sink::seen`], which no publishing sink implements.
//!
//! [`manifest`] builds the data manifest from the running configuration.
//! [`mask`] fills the privacy masks in every frame before anything looks at
//! it; [`snapshot`] pixelates and annotates the installer's pictures, and
//! [`retention`] keeps them in one folder for a limited time, audited.

pub mod manifest;
pub mod mask;
pub mod retention;
pub mod snapshot;

use std::fmt;

use crate::analytics::Output;
use crate::events::{Body, Crossing};

/// `privacy.publish`: which analytics outputs leave the pole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Profile {
    /// Flows only: counts, occupancy, mean speeds per interval.
    #[default]
    Aggregates,
    /// Flows, and each crossing without track id or position, to the second.
    Crossings,
    /// Everything: crossings with track id, time and position, and track
    /// summaries. For studies with a legal basis.
    Tracks,
}

impl Profile {
    /// Every profile, least data first.
    pub const ALL: [Profile; 3] = [Profile::Aggregates, Profile::Crossings, Profile::Tracks];

    /// The name in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Aggregates => "aggregates",
            Profile::Crossings => "crossings",
            Profile::Tracks => "tracks",
        }
    }

    /// The profile named `name` in the configuration file.
    pub fn parse(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The event an analytics output becomes under this profile, or `None`
    /// when the profile keeps it on the pole.
    pub fn event(self, output: Output) -> Option<Body> {
        match output {
            Output::Flow(flow) => Some(Body::Flow(flow)),
            Output::Crossing(crossing) => match self {
                Profile::Aggregates => None,
                Profile::Crossings => Some(Body::Crossing(Crossing {
                    track: None,
                    position: None,
                    at: to_the_second(&crossing.at),
                    ..crossing
                })),
                Profile::Tracks => Some(Body::Crossing(crossing)),
            },
            Output::Track(track) => (self == Profile::Tracks).then_some(Body::Track(track)),
        }
    }

    /// The event kinds made from analytics that this profile publishes.
    pub fn analytics_kinds(self) -> &'static [&'static str] {
        match self {
            Profile::Aggregates => &["flow"],
            Profile::Crossings => &["flow", "crossing"],
            Profile::Tracks => &["flow", "crossing", "track"],
        }
    }

    /// Fields (under `data`) of a kind this profile leaves out even when it
    /// publishes the kind.
    pub fn withheld(self, kind: &str) -> &'static [&'static str] {
        match (self, kind) {
            (Profile::Crossings, "crossing") => &["track", "position"],
            _ => &[],
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[privacy]`, validated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrivacySettings {
    /// What leaves the pole.
    pub publish: Profile,
    /// Why the pole counts, in the city's words; stated in the manifest.
    pub purpose: Option<String>,
    /// Polygons blanked in every frame before anything looks at it.
    pub masks: Vec<mask::Mask>,
    /// Where snapshots and captures are written, and how long they stay.
    pub images: retention::ImageSettings,
    /// An integrator may order a snapshot over the command channel.
    pub remote_snapshots: bool,
}

/// An RFC 3339 time with milliseconds (`…:SS.mmmZ`) rounded down to its
/// second (`…:SS.000Z`); any other text is returned unchanged.
fn to_the_second(at: &str) -> String {
    match at.rsplit_once('.') {
        Some((whole, fraction))
            if fraction.len() == 4
                && fraction.ends_with('Z')
                && fraction[..3].bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{whole}.000Z")
        }
        _ => at.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Flow, TrackSummary};

    fn crossing() -> Crossing {
        Crossing {
            line: "kerb".into(),
            direction: "north_to_south".into(),
            class: "person".into(),
            track: Some(0x1234_5678),
            at: "2026-12-03T19:04:05.678Z".into(),
            position: Some([430.2, 215.0]),
            speed_px_s: 41.5,
            speed_m_s: Some(1.3),
        }
    }

    fn track() -> TrackSummary {
        TrackSummary {
            track: 7,
            class: "car".into(),
            first_seen: "2026-12-03T19:04:05.678Z".into(),
            duration_ms: 1200,
            detections: 20,
            first: [1.0, 2.0],
            last: [3.0, 4.0],
            distance_px: 10.0,
            speed_px_s: 8.3,
            distance_m: None,
            speed_m_s: None,
            zones: vec![],
        }
    }

    fn flow() -> Flow {
        Flow {
            from: "2026-12-03T19:00:00.000Z".into(),
            to: "2026-12-03T19:01:00.000Z".into(),
            interval_s: 60.0,
            lines: vec![],
            zones: vec![],
            speeds: vec![],
            part: None,
        }
    }

    #[test]
    fn aggregates_publish_flows_and_nothing_about_one_object() {
        let p = Profile::default();
        assert_eq!(p, Profile::Aggregates);
        assert_eq!(p.event(Output::Crossing(crossing())), None);
        assert_eq!(p.event(Output::Track(track())), None);
        assert_eq!(p.event(Output::Flow(flow())), Some(Body::Flow(flow())));
    }

    #[test]
    fn crossings_lose_their_track_id_and_position_and_keep_whole_seconds() {
        let Some(Body::Crossing(c)) = Profile::Crossings.event(Output::Crossing(crossing())) else {
            panic!("a crossing is published with the crossings profile");
        };
        assert_eq!(c.track, None);
        assert_eq!(c.position, None);
        assert_eq!(c.at, "2026-12-03T19:04:05.000Z");
        assert_eq!((c.line.as_str(), c.speed_m_s), ("kerb", Some(1.3)));
        let json = serde_json::to_value(Body::Crossing(c)).unwrap();
        let keys: Vec<&str> = json["data"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "at",
                "class",
                "direction",
                "line",
                "speed_m_s",
                "speed_px_s"
            ]
        );
        assert_eq!(Profile::Crossings.event(Output::Track(track())), None);
    }

    #[test]
    fn tracks_publish_everything_unchanged() {
        assert_eq!(
            Profile::Tracks.event(Output::Crossing(crossing())),
            Some(Body::Crossing(crossing()))
        );
        assert_eq!(
            Profile::Tracks.event(Output::Track(track())),
            Some(Body::Track(track()))
        );
    }

    #[test]
    fn profile_names_round_trip_and_unknown_ones_are_refused() {
        for p in Profile::ALL {
            assert_eq!(Profile::parse(p.name()), Some(p));
        }
        assert_eq!(Profile::parse("everything"), None);
        assert_eq!(Profile::parse("Tracks"), None);
    }

    #[test]
    fn only_a_well_formed_millisecond_time_is_rounded() {
        assert_eq!(
            to_the_second("2026-01-01T00:00:59.999Z"),
            "2026-01-01T00:00:59.000Z"
        );
        assert_eq!(
            to_the_second("2026-01-01T00:00:59Z"),
            "2026-01-01T00:00:59Z"
        );
        assert_eq!(to_the_second("soon"), "soon");
    }
}
