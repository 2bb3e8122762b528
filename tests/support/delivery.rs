//! The delivery contract of docs/events.md, checked over what a consumer
//! received: every event is delivered or accounted for by a `dropped`
//! event, first arrivals come in increasing id order on each topic, and an
//! id received twice carries the same event both times.
//!
//! Include it beside the broker helpers:
//!
//! ```ignore
//! #[path = "support/broker.rs"]
//! mod broker;
//! #[path = "support/delivery.rs"]
//! mod delivery;
//! ```

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use super::broker::Received;

/// What a check found, for the test's closing line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delivery {
    /// Distinct ids received.
    pub delivered: u64,
    /// Ids not received but named by a `dropped` event.
    pub reported_dropped: u64,
    /// Messages that repeated an id already received (same content).
    pub duplicates: u64,
    /// `dropped` events received.
    pub dropped_events: u64,
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} delivered, {} reported dropped ({} dropped event(s)), {} duplicate message(s)",
            self.delivered, self.reported_dropped, self.dropped_events, self.duplicates
        )
    }
}

/// The id ranges `dropped` events in `received` name (`first_id..=last_id`).
pub fn dropped_ranges(received: &[Received]) -> Vec<RangeInclusive<u64>> {
    received
        .iter()
        .filter(|r| r.payload["kind"] == "dropped")
        .filter_map(|r| {
            let data = &r.payload["data"];
            Some(data["first_id"].as_u64()?..=data["last_id"].as_u64()?)
        })
        .collect()
}

/// Checks the contract over `received` for the ids in `expected` (the ids
/// the pole gave; `1..=max` when every id from the start is expected).
/// Panics, naming the first broken promise, or returns what was found.
pub fn check_contract(received: &[Received], expected: RangeInclusive<u64>) -> Delivery {
    let mut first: BTreeMap<u64, &Received> = BTreeMap::new();
    let mut last_per_topic: BTreeMap<&str, u64> = BTreeMap::new();
    let mut found = Delivery::default();
    for r in received.iter().filter(|r| r.id > 0) {
        if let Some(earlier) = first.get(&r.id) {
            assert_eq!(
                earlier.payload, r.payload,
                "id {} was received twice with different content",
                r.id
            );
            assert_eq!(earlier.topic, r.topic, "id {} on two topics", r.id);
            found.duplicates += 1;
            continue;
        }
        let last = last_per_topic.entry(&r.topic).or_insert(0);
        assert!(
            r.id > *last,
            "out of order on {}: id {} arrived after {}",
            r.topic,
            r.id,
            last
        );
        *last = r.id;
        first.insert(r.id, r);
    }
    let ranges = dropped_ranges(received);
    found.dropped_events = ranges.len() as u64;
    let mut lost = Vec::new();
    for id in expected {
        if first.contains_key(&id) {
            found.delivered += 1;
        } else if ranges.iter().any(|range| range.contains(&id)) {
            found.reported_dropped += 1;
        } else {
            lost.push(id);
        }
    }
    assert!(
        lost.is_empty(),
        "{} id(s) neither delivered nor reported by a `dropped` event: {}",
        lost.len(),
        summarise(&lost)
    );
    found
}

/// `[1, 2, 3, 7]` → `1..=3, 7`: short enough for a failure message.
fn summarise(ids: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut end = start;
        while i + 1 < ids.len() && ids[i + 1] == end + 1 {
            i += 1;
            end = ids[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}..={end}")
        });
        i += 1;
    }
    if parts.len() > 20 {
        let more = parts.len() - 20;
        parts.truncate(20);
        parts.push(format!("and {more} more range(s)"));
    }
    parts.join(", ")
}
