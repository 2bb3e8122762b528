//! Every stored event fits in [`MAX_EVENT_BYTES`]: a `flow` too large is
//! split into parts (each a valid `flow` of the same interval carrying
//! some of its lists, numbered by `part`), any other event too large is
//! replaced by an `alert` (`event_too_large`) naming its kind and size, so
//! nothing waits forever behind an event the broker would refuse.

use crate::events::{Alert, Body, Flow, FlowPart, Origin, MAX_EVENT_BYTES};

/// Room left for the id (an event is measured before it has one).
const ID_ROOM: usize = 20;

/// The encoded size of `body` as an event made at `time_ms`, with the
/// largest id.
pub fn encoded_len(origin: &Origin, body: &Body, time_ms: u64) -> usize {
    origin.event(0, time_ms, body.clone()).encode().len() + ID_ROOM
}

/// `body` as one or more events that each fit in [`MAX_EVENT_BYTES`].
pub fn bound(origin: &Origin, body: Body, time_ms: u64) -> Vec<Body> {
    bound_to(origin, body, time_ms, MAX_EVENT_BYTES)
}

/// [`bound`] with another limit (tests).
pub fn bound_to(origin: &Origin, body: Body, time_ms: u64, max: usize) -> Vec<Body> {
    let size = encoded_len(origin, &body, time_ms);
    if size <= max {
        return vec![body];
    }
    let kind = body.kind();
    if let Body::Flow(flow) = &body {
        if let Some(parts) = split_flow(origin, flow, time_ms, max) {
            tracing::warn!(
                size,
                parts = parts.len(),
                "flow event larger than {max} bytes sent in parts"
            );
            return parts.into_iter().map(Body::Flow).collect();
        }
    }
    tracing::error!(
        kind,
        size,
        "event larger than {max} bytes replaced by an alert"
    );
    vec![Body::Alert(Alert {
        code: "event_too_large".into(),
        message: format!(
            "a {kind} event of {size} bytes exceeds the {max}-byte limit of an event and was not stored"
        ),
    })]
}

/// One item of a flow's lists.
#[derive(Clone)]
enum Item {
    Line(crate::events::FlowCount),
    Zone(crate::events::FlowZone),
    Speed(crate::events::FlowSpeed),
}

fn item_len(item: &Item) -> usize {
    let json = match item {
        Item::Line(x) => serde_json::to_vec(x),
        Item::Zone(x) => serde_json::to_vec(x),
        Item::Speed(x) => serde_json::to_vec(x),
    };
    json.map_or(usize::MAX / 4, |j| j.len()) + 1
}

/// Greedy split of the lists, in order, into parts that fit; `None` if one
/// item alone does not fit.
fn split_flow(origin: &Origin, flow: &Flow, time_ms: u64, max: usize) -> Option<Vec<Flow>> {
    let empty = Flow {
        lines: Vec::new(),
        zones: Vec::new(),
        speeds: Vec::new(),
        part: Some(FlowPart {
            index: u32::MAX,
            of: u32::MAX,
        }),
        ..flow.clone()
    };
    let base = encoded_len(origin, &Body::Flow(empty.clone()), time_ms);
    let budget = max.checked_sub(base)?;
    let items = flow
        .lines
        .iter()
        .cloned()
        .map(Item::Line)
        .chain(flow.zones.iter().cloned().map(Item::Zone))
        .chain(flow.speeds.iter().cloned().map(Item::Speed));
    let mut parts: Vec<Flow> = Vec::new();
    let mut used = 0;
    for item in items {
        let len = item_len(&item);
        if len > budget {
            return None;
        }
        if parts.is_empty() || used + len > budget {
            parts.push(Flow {
                part: None,
                ..empty.clone()
            });
            used = 0;
        }
        used += len;
        let part = parts.last_mut().expect("pushed above");
        match item {
            Item::Line(x) => part.lines.push(x),
            Item::Zone(x) => part.zones.push(x),
            Item::Speed(x) => part.speeds.push(x),
        }
    }
    let of = u32::try_from(parts.len()).ok()?;
    for (n, part) in parts.iter_mut().enumerate() {
        part.part = Some(FlowPart {
            index: n as u32 + 1,
            of,
        });
    }
    // Checked, not assumed.
    parts
        .iter()
        .all(|p| encoded_len(origin, &Body::Flow(p.clone()), time_ms) <= max)
        .then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{FlowCount, FlowSpeed, FlowZone};

    fn origin() -> Origin {
        Origin {
            site: "site".into(),
            device: "pole".into(),
        }
    }

    /// A junction of `lines` counting lines, 4 classes, both directions.
    pub fn busy_flow(lines: usize) -> Flow {
        let classes = ["person", "bicycle", "car", "truck"];
        let mut counts = Vec::new();
        for l in 0..lines {
            for class in classes {
                for direction in ["north_to_south", "south_to_north"] {
                    counts.push(FlowCount {
                        line: format!("junction-line-{l:03}"),
                        direction: direction.into(),
                        class: class.into(),
                        count: 12,
                    });
                }
            }
        }
        Flow {
            from: "2026-11-29T10:00:00.000Z".into(),
            to: "2026-11-29T10:01:00.000Z".into(),
            interval_s: 60.0,
            lines: counts,
            zones: vec![FlowZone {
                zone: "square".into(),
                class: "person".into(),
                occupancy_mean: 1.5,
                occupancy_max: 3,
                dwell_mean_s: Some(2.0),
                dwells: 4,
            }],
            speeds: vec![FlowSpeed {
                class: "car".into(),
                tracks: 9,
                speed_px_s: 210.0,
                speed_m_s: None,
            }],
            part: None,
        }
    }

    #[test]
    fn a_small_event_is_kept_as_it_is() {
        let body = Body::Flow(busy_flow(2));
        assert_eq!(bound(&origin(), body.clone(), 0), vec![body]);
    }

    #[test]
    fn a_flow_over_the_limit_is_split_into_numbered_parts_that_fit_and_keep_every_count() {
        let flow = busy_flow(200);
        let size = encoded_len(&origin(), &Body::Flow(flow.clone()), 0);
        assert!(size > MAX_EVENT_BYTES, "{size}");
        let parts = bound(&origin(), Body::Flow(flow.clone()), 0);
        assert!(parts.len() >= 2, "{}", parts.len());
        let mut lines = Vec::new();
        let mut zones = Vec::new();
        let mut speeds = Vec::new();
        for (n, part) in parts.iter().enumerate() {
            assert!(encoded_len(&origin(), part, 0) <= MAX_EVENT_BYTES);
            let Body::Flow(p) = part else {
                panic!("{part:?}")
            };
            assert_eq!(
                p.part,
                Some(FlowPart {
                    index: n as u32 + 1,
                    of: parts.len() as u32
                })
            );
            assert_eq!((&p.from, &p.to, p.interval_s), (&flow.from, &flow.to, 60.0));
            lines.extend(p.lines.clone());
            zones.extend(p.zones.clone());
            speeds.extend(p.speeds.clone());
        }
        assert_eq!(
            (lines, zones, speeds),
            (flow.lines, flow.zones, flow.speeds)
        );
    }

    #[test]
    fn another_event_over_the_limit_becomes_an_alert_naming_it() {
        let body = Body::Alert(Alert {
            code: "outbox_corrupted".into(),
            message: "x".repeat(40_000),
        });
        let out = bound(&origin(), body, 0);
        let [Body::Alert(alert)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(alert.code, "event_too_large");
        assert!(
            alert.message.starts_with("a alert event of "),
            "{}",
            alert.message
        );
    }

    #[test]
    fn a_flow_whose_one_item_cannot_fit_becomes_an_alert() {
        let mut flow = busy_flow(1);
        flow.lines[0].line = "l".repeat(500);
        let out = bound_to(&origin(), Body::Flow(flow), 0, 600);
        assert!(matches!(out.as_slice(), [Body::Alert(a)] if a.code == "event_too_large"));
    }
}
