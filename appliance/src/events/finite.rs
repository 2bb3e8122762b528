//! Keeps every number an event carries finite, so that what the outbox
//! stores always reads back.
//!
//! JSON has no infinity and no NaN: serde_json writes them as `null`, and no
//! field of any event accepts `null`, so an event holding one would be
//! stored as bytes that never decode (and be set aside unpublished). The
//! producers keep their arithmetic finite (a speed over no time is 0, a point
//! at or beyond a ground calibration's horizon has no ground position); this
//! module is the last guard, the one place that lists the numbers of every
//! body:
//!
//! - [`super::Event::encode`] writes a number that is not finite as 0 when
//!   its field is required (every such field of the schemas accepts 0), and
//!   leaves it out when the field is optional (unknown);
//! - [`super::Event::decode`] refuses an event holding one. JSON cannot say
//!   infinity, but a number beyond a 32-bit field's range (a position of
//!   `1e39`) decodes to it.

use super::Body;

/// Where one number of a body lives.
enum Slot<'a> {
    /// A required `f64`: written as 0 when not finite.
    Required(&'a mut f64),
    /// An optional `f64`: left out when not finite.
    Optional(&'a mut Option<f64>),
    /// A required `f32` (frame pixels): written as 0 when not finite.
    Pixel(&'a mut f32),
}

impl Slot<'_> {
    fn is_finite(&self) -> bool {
        match self {
            Slot::Required(v) => v.is_finite(),
            Slot::Optional(v) => v.is_none_or(|v| v.is_finite()),
            Slot::Pixel(v) => v.is_finite(),
        }
    }

    /// 0 or absent in place of a number that is not finite.
    fn repair(self) {
        match self {
            Slot::Required(v) if !v.is_finite() => *v = 0.0,
            Slot::Optional(v) if !v.is_none_or(|v| v.is_finite()) => *v = None,
            Slot::Pixel(v) if !v.is_finite() => *v = 0.0,
            _ => {}
        }
    }
}

/// Calls `f` with the name (under `data`) and place of every number that
/// is not an integer in `body`.
fn each(body: &mut Body, f: &mut dyn FnMut(&'static str, Slot<'_>)) {
    match body {
        Body::Health(h) => {
            f("fps", Slot::Required(&mut h.fps));
            f("inference_ms", Slot::Required(&mut h.inference_ms));
        }
        Body::Crossing(c) => {
            for v in c.position.iter_mut().flatten() {
                f("position", Slot::Pixel(v));
            }
            f("speed_px_s", Slot::Required(&mut c.speed_px_s));
            f("speed_m_s", Slot::Optional(&mut c.speed_m_s));
        }
        Body::Track(t) => {
            for v in &mut t.first {
                f("first", Slot::Pixel(v));
            }
            for v in &mut t.last {
                f("last", Slot::Pixel(v));
            }
            f("distance_px", Slot::Required(&mut t.distance_px));
            f("speed_px_s", Slot::Required(&mut t.speed_px_s));
            f("distance_m", Slot::Optional(&mut t.distance_m));
            f("speed_m_s", Slot::Optional(&mut t.speed_m_s));
        }
        Body::Flow(flow) => {
            f("interval_s", Slot::Required(&mut flow.interval_s));
            for z in &mut flow.zones {
                f(
                    "zones.occupancy_mean",
                    Slot::Required(&mut z.occupancy_mean),
                );
                f("zones.dwell_mean_s", Slot::Optional(&mut z.dwell_mean_s));
            }
            for s in &mut flow.speeds {
                f("speeds.speed_px_s", Slot::Required(&mut s.speed_px_s));
                f("speeds.speed_m_s", Slot::Optional(&mut s.speed_m_s));
            }
        }
        Body::Light(l) => {
            f("level", Slot::Required(&mut l.level));
            f("previous", Slot::Required(&mut l.previous));
        }
        // Integers and text only.
        Body::Status(_)
        | Body::Error(_)
        | Body::Dropped(_)
        | Body::Alert(_)
        | Body::Audit(_)
        | Body::Update(_)
        | Body::Energy(_) => {}
        // A `serde_json::Value` cannot hold a number that is not finite.
        Body::Fiware(_) => {}
    }
}

/// The fields of `body` (under `data`) holding a number that is not
/// finite, each named once, in the order of the body.
pub(super) fn not_finite(body: &mut Body) -> Vec<&'static str> {
    let mut found = Vec::new();
    each(body, &mut |name, slot| {
        if !slot.is_finite() && !found.contains(&name) {
            found.push(name);
        }
    });
    found
}

/// Puts 0 (required fields) or nothing (optional fields) in place of every
/// number of `body` that is not finite; returns the fields changed.
pub(super) fn repair(body: &mut Body) -> Vec<&'static str> {
    let mut changed = Vec::new();
    each(body, &mut |name, slot| {
        if !slot.is_finite() && !changed.contains(&name) {
            changed.push(name);
        }
        slot.repair();
    });
    changed
}
