//! The motion model of one track: a Kalman filter over its box.
//!
//! The box is four quantities: its centre's x and y, its width and its
//! height. Each centre coordinate has a constant-velocity model (position
//! and rate, driven by random acceleration); width and height are levels
//! that drift at random (a person's box grows and shrinks with their pose
//! and distance, but has no steady trend worth extrapolating). The axes are
//! independent, so each is a filter of its own with a 2×2 (or 1×1)
//! covariance: small, exact and cheap.
//!
//! Every noise scales with the box's height: a person far away (a small
//! box) moves fewer pixels and is measured to fewer pixels than one near
//! the camera. What this buys over a fixed-gain (alpha-beta) filter:
//! the gain follows the uncertainty, so a track's first detections set its
//! velocity quickly, a long-lived track's velocity is smooth, and a
//! detection after a gap (a miss, frames the model did not see) corrects
//! the velocity by what the gap's length warrants, without a special case.
//!
//! Pure: time is passed in as seconds elapsed on the filter's clock (the
//! tracker stops that clock during still frames).

use super::BBox;

/// Spread of a detection's edges about the truth, as a fraction of the
/// box's height (the detector's jitter).
const MEASUREMENT: f64 = 0.05;
/// Random acceleration of the centre: the square root of its spectral
/// density, in box heights per second^1.5 (after t seconds unseen, the
/// velocity's spread has grown by this × √t box heights per second): how
/// quickly walkers change pace or heading.
const ACCELERATION: f64 = 0.5;
/// Random drift of width and height, in box heights per √second.
const SIZE_DRIFT: f64 = 0.1;
/// Spread of a new track's velocity, in box heights per second: anything a
/// walker or a car entering the picture may do.
const INITIAL_SPEED: f64 = 1.0;

/// One centre coordinate: position and rate with their covariance.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    x: f64,
    v: f64,
    /// Covariance of (x, v): `[var x, cov, var v]`.
    p: [f64; 3],
}

impl Axis {
    fn new(x: f64, scale: f64) -> Self {
        Axis {
            x,
            v: 0.0,
            p: [
                (MEASUREMENT * scale).powi(2),
                0.0,
                (INITIAL_SPEED * scale).powi(2),
            ],
        }
    }

    /// The axis `dt` seconds on, with random acceleration of density `q`
    /// (the continuous white-noise acceleration model).
    fn predicted(&self, dt: f64, q: f64) -> Axis {
        let [pxx, pxv, pvv] = self.p;
        Axis {
            x: self.x + self.v * dt,
            v: self.v,
            p: [
                pxx + 2.0 * dt * pxv + dt * dt * pvv + q * dt.powi(3) / 3.0,
                pxv + dt * pvv + q * dt * dt / 2.0,
                pvv + q * dt,
            ],
        }
    }

    /// Corrects with a measurement `z` of the position, variance `r`.
    fn correct(&mut self, z: f64, r: f64) {
        let [pxx, pxv, pvv] = self.p;
        let s = pxx + r;
        let (kx, kv) = (pxx / s, pxv / s);
        let residual = z - self.x;
        self.x += kx * residual;
        self.v += kv * residual;
        self.p = [(1.0 - kx) * pxx, (1.0 - kx) * pxv, pvv - kv * pxv];
    }
}

/// Width or height: a level and its variance.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Level {
    x: f64,
    p: f64,
}

impl Level {
    fn predicted(&self, dt: f64, q: f64) -> Level {
        Level {
            x: self.x,
            p: self.p + q * dt,
        }
    }

    fn correct(&mut self, z: f64, r: f64) {
        let k = self.p / (self.p + r);
        self.x += k * (z - self.x);
        self.p *= 1.0 - k;
    }
}

/// A box's motion state: centre with velocity, size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxFilter {
    cx: Axis,
    cy: Axis,
    w: Level,
    h: Level,
}

impl BoxFilter {
    /// A filter started from one detection: where it is is known to the
    /// detector's jitter, how it moves is not known at all.
    pub fn new(bbox: &BBox) -> Self {
        let [cx, cy, w, h] = centre_size(bbox);
        let scale = h.max(1.0);
        let r = (MEASUREMENT * scale).powi(2);
        BoxFilter {
            cx: Axis::new(cx, scale),
            cy: Axis::new(cy, scale),
            w: Level { x: w, p: r },
            h: Level { x: h, p: r },
        }
    }

    /// The height the noises scale with (at least a pixel).
    fn scale(&self) -> f64 {
        self.h.x.max(1.0)
    }

    /// The state `dt` seconds on, uncertainty grown accordingly.
    pub fn predicted(&self, dt: f64) -> BoxFilter {
        let scale = self.scale();
        let q = (ACCELERATION * scale).powi(2);
        let drift = (SIZE_DRIFT * scale).powi(2);
        BoxFilter {
            cx: self.cx.predicted(dt, q),
            cy: self.cy.predicted(dt, q),
            w: self.w.predicted(dt, drift),
            h: self.h.predicted(dt, drift),
        }
    }

    /// Corrects a predicted state with a detected box.
    pub fn correct(&mut self, bbox: &BBox) {
        let [cx, cy, w, h] = centre_size(bbox);
        let r = (MEASUREMENT * self.scale()).powi(2);
        self.cx.correct(cx, r);
        self.cy.correct(cy, r);
        self.w.correct(w, r);
        self.h.correct(h, r);
    }

    /// The box `[x0, y0, x1, y1]`.
    pub fn bbox(&self) -> BBox {
        let (hw, hh) = (self.w.x.max(0.0) / 2.0, self.h.x.max(0.0) / 2.0);
        [
            (self.cx.x - hw) as f32,
            (self.cy.x - hh) as f32,
            (self.cx.x + hw) as f32,
            (self.cy.x + hh) as f32,
        ]
    }

    /// The centre's velocity, pixels per second.
    pub fn velocity(&self) -> [f32; 2] {
        [self.cx.v as f32, self.cy.v as f32]
    }
}

/// `[cx, cy, w, h]` of a box, in f64.
fn centre_size(b: &BBox) -> [f64; 4] {
    let [x0, y0, x1, y1] = b.map(f64::from);
    [(x0 + x1) / 2.0, (y0 + y1) / 2.0, x1 - x0, y1 - y0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard deviation of the centre's position, pixels (the larger
    /// axis).
    fn spread(f: &BoxFilter) -> f64 {
        f.cx.p[0].max(f.cy.p[0]).sqrt()
    }

    fn walker(x: f32) -> BBox {
        [x, 100.0, x + 40.0, 200.0]
    }

    /// A filter that followed a walker at 50 px/s, seen 10 times a second
    /// for `steps` tenths of a second.
    fn walked(steps: u32) -> BoxFilter {
        let mut f = BoxFilter::new(&walker(0.0));
        for i in 1..=steps {
            f = f.predicted(0.1);
            f.correct(&walker(5.0 * i as f32));
        }
        f
    }

    #[test]
    fn a_steady_walk_gives_its_velocity_and_a_tight_state() {
        let f = walked(30);
        let v = f.velocity();
        assert!((v[0] - 50.0).abs() < 1.0, "{v:?}");
        assert!(v[1].abs() < 0.5, "{v:?}");
        let b = f.bbox();
        assert!(
            (b[0] - 150.0).abs() < 0.5 && (b[3] - 200.0).abs() < 0.5,
            "{b:?}"
        );
        assert!(spread(&f) < 5.0, "{}", spread(&f));
    }

    #[test]
    fn a_detection_after_a_gap_moves_the_velocity_by_what_the_gap_warrants() {
        let steady = walked(20);
        // The walker speeds up to 100 px/s: seen once 0.1 s later, or once
        // after a second unseen.
        let (mut soon, mut late) = (steady.predicted(0.1), steady.predicted(1.0));
        soon.correct(&walker(100.0 + 10.0));
        late.correct(&walker(100.0 + 100.0));
        let (vs, vl) = (soon.velocity()[0], late.velocity()[0]);
        assert!(vs > 50.0 && vs < 100.0, "{vs}");
        // The change, seen over ten times the time, is believed more: the
        // velocity after the gap is closer to the truth.
        assert!((vl - 100.0).abs() < 15.0, "{vs} {vl}");
        assert!((vl - 100.0).abs() < (vs - 100.0).abs(), "{vs} {vl}");
    }

    #[test]
    fn uncertainty_grows_while_unseen_and_shrinks_when_seen() {
        let f = walked(10);
        let seen = spread(&f);
        let unseen = f.predicted(2.0);
        assert!(spread(&unseen) > 4.0 * seen, "{seen} {}", spread(&unseen));
        // Seen again where it walked to: the spread is back near where it was.
        let mut found = unseen;
        found.correct(&walker(5.0 * 10.0 + 100.0));
        assert!(spread(&found) < 1.5 * seen, "{seen} {}", spread(&found));
        // Prediction moves the box by its velocity, size unchanged.
        let (b0, b1) = (f.bbox(), unseen.bbox());
        assert!(((b1[0] - b0[0]) - 100.0).abs() < 5.0, "{b0:?} {b1:?}");
        assert!(((b1[3] - b1[1]) - (b0[3] - b0[1])).abs() < 1e-3);
    }

    #[test]
    fn a_new_filter_is_its_detection_standing_still() {
        let f = BoxFilter::new(&[10.0, 20.0, 50.0, 120.0]);
        assert_eq!(f.bbox(), [10.0, 20.0, 50.0, 120.0]);
        assert_eq!(f.velocity(), [0.0, 0.0]);
        // A second detection sets most of the velocity at once.
        let mut g = f.predicted(0.1);
        g.correct(&[15.0, 20.0, 55.0, 120.0]);
        assert!(g.velocity()[0] > 25.0, "{:?}", g.velocity());
    }
}
