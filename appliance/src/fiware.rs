//! FIWARE Smart Data Models payloads for city platforms, from flows.
//!
//! Each `flow` interval becomes, per counting line:
//! - a `CrowdFlowObserved` (people): `peopleCount`, `peopleCountTowards`
//!   (crossings from side a to side b), `peopleCountAway` (b to a), and
//!   `averageCrowdSpeed` in km/h with a ground calibration;
//! - a `TrafficFlowObserved` per direction and vehicle class seen:
//!   `intensity`, `vehicleType` (a truck is a `lorry`), `laneDirection`
//!   (`forward` for a to b), and `averageVehicleSpeed` in km/h with a
//!   calibration.
//!
//! Entities are in NGSI-LD key-values form; `dateObserved` is the ISO 8601
//! interval `from/to`, with `dateObservedFrom` and `dateObservedTo`. Ids are
//! `urn:ngsi-ld:<Type>:<site>:<device>:<line>[:<direction>:<class>]:<from>`,
//! stable for one interval so a re-delivered event updates the same entity.

use serde_json::{json, Value};

use crate::analytics::AnalyticsSettings;
use crate::events::{Flow, Origin};

/// Builds entities for one pole.
pub struct Mapper {
    origin: Origin,
}

impl Mapper {
    pub fn new(origin: Origin) -> Self {
        Mapper { origin }
    }

    /// The entities of one flow interval.
    pub fn entities(&self, flow: &Flow, settings: &AnalyticsSettings) -> Vec<Value> {
        let stamp: String = flow.from.chars().filter(|c| c.is_ascii_digit()).collect();
        let base = |kind: &str, rest: &str| {
            format!(
                "urn:ngsi-ld:{kind}:{}:{}:{rest}:{stamp}",
                self.origin.site, self.origin.device
            )
        };
        let km_h = |class: &str| {
            flow.speeds
                .iter()
                .find(|s| s.class == class)
                .and_then(|s| s.speed_m_s)
                // JSON has no NaN or infinity (`json!` would write `null`).
                .filter(|m_s| m_s.is_finite())
                .map(|m_s| (m_s * 3.6 * 100.0).round() / 100.0)
        };
        let count = |line: &str, direction: &str, class: &str| -> u64 {
            flow.lines
                .iter()
                .filter(|c| c.line == line && c.direction == direction && c.class == class)
                .map(|c| c.count)
                .sum()
        };
        let mut entities = Vec::new();
        for line in &settings.lines {
            let forward = format!("{}_to_{}", line.side_a, line.side_b);
            let backward = format!("{}_to_{}", line.side_b, line.side_a);
            let common = |kind: &str, id: String| {
                json!({
                    "id": id,
                    "type": kind,
                    "name": line.name,
                    "dateObserved": format!("{}/{}", flow.from, flow.to),
                    "dateObservedFrom": flow.from,
                    "dateObservedTo": flow.to,
                    "dataProvider": format!("luciole:{}:{}", self.origin.site, self.origin.device),
                })
            };
            let counts_people =
                line.classes.is_empty() || line.classes.contains(&crate::detect::Class::Person);
            if counts_people {
                let towards = count(&line.name, &forward, "person");
                let away = count(&line.name, &backward, "person");
                let mut entity = common("CrowdFlowObserved", base("CrowdFlowObserved", &line.name));
                entity["description"] = json!(format!(
                    "People crossing counting line {}: towards = {} to {}, away = {} to {}",
                    line.name, line.side_a, line.side_b, line.side_b, line.side_a
                ));
                entity["peopleCount"] = json!(towards + away);
                entity["peopleCountTowards"] = json!(towards);
                entity["peopleCountAway"] = json!(away);
                if let Some(speed) = km_h("person") {
                    entity["averageCrowdSpeed"] = json!(speed);
                }
                entities.push(entity);
            }
            for (direction, lane) in [(&forward, "forward"), (&backward, "backward")] {
                for class in ["bicycle", "car", "motorcycle", "bus", "truck"] {
                    let n = count(&line.name, direction, class);
                    if n == 0 {
                        continue;
                    }
                    let vehicle = if class == "truck" { "lorry" } else { class };
                    let rest = format!("{}:{direction}:{class}", line.name);
                    let mut entity =
                        common("TrafficFlowObserved", base("TrafficFlowObserved", &rest));
                    entity["description"] = json!(format!(
                        "{class} crossing counting line {} from {direction}",
                        line.name
                    ));
                    entity["intensity"] = json!(n);
                    entity["vehicleType"] = json!(vehicle);
                    entity["laneDirection"] = json!(lane);
                    if let Some(speed) = km_h(class) {
                        entity["averageVehicleSpeed"] = json!(speed);
                    }
                    entities.push(entity);
                }
            }
        }
        entities
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::LineSettings;
    use crate::events::{FlowCount, FlowSpeed};

    #[test]
    fn a_flow_becomes_crowd_and_traffic_entities_per_line() {
        let settings = AnalyticsSettings {
            lines: vec![LineSettings {
                name: "main-st".into(),
                from: [0.0, 0.0],
                to: [0.0, 100.0],
                side_a: "east".into(),
                side_b: "west".into(),
                hysteresis_px: 10.0,
                min_distance_px: 20.0,
                classes: Vec::new(),
            }],
            ..AnalyticsSettings::default()
        };
        let count = |direction: &str, class: &str, count| FlowCount {
            line: "main-st".into(),
            direction: direction.into(),
            class: class.into(),
            count,
        };
        let flow = Flow {
            from: "2026-11-29T10:00:00.000Z".into(),
            to: "2026-11-29T10:01:00.000Z".into(),
            interval_s: 60.0,
            lines: vec![
                count("east_to_west", "person", 3),
                count("west_to_east", "person", 2),
                count("west_to_east", "truck", 1),
            ],
            zones: Vec::new(),
            speeds: vec![FlowSpeed {
                class: "truck".into(),
                tracks: 1,
                speed_px_s: 100.0,
                speed_m_s: Some(10.0),
            }],
            part: None,
        };
        let mapper = Mapper::new(Origin {
            site: "lyon".into(),
            device: "p7".into(),
        });
        let entities = mapper.entities(&flow, &settings);
        assert_eq!(entities.len(), 2, "{entities:#?}");
        let crowd = &entities[0];
        assert_eq!(crowd["type"], "CrowdFlowObserved");
        assert_eq!(crowd["peopleCount"], 5);
        assert_eq!(crowd["peopleCountTowards"], 3);
        assert_eq!(crowd["peopleCountAway"], 2);
        assert_eq!(
            crowd["id"],
            "urn:ngsi-ld:CrowdFlowObserved:lyon:p7:main-st:20261129100000000"
        );
        let traffic = &entities[1];
        assert_eq!(traffic["type"], "TrafficFlowObserved");
        assert_eq!(traffic["vehicleType"], "lorry");
        assert_eq!(traffic["laneDirection"], "backward");
        assert_eq!(traffic["intensity"], 1);
        assert_eq!(traffic["averageVehicleSpeed"], 36.0);
        assert_eq!(
            traffic["dateObserved"],
            "2026-11-29T10:00:00.000Z/2026-11-29T10:01:00.000Z"
        );
    }
}
