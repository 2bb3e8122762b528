//! Plane geometry for zones, counting lines and ground calibration.

/// A point in frame pixels (or metres on the ground).
pub type Point = [f32; 2];

/// Whether `p` lies inside `polygon` (even-odd rule; points on an edge may
/// fall either way).
pub fn inside(polygon: &[Point], p: Point) -> bool {
    let mut inside = false;
    let mut j = polygon.len().wrapping_sub(1);
    for i in 0..polygon.len() {
        let (a, b) = (polygon[i], polygon[j]);
        if (a[1] > p[1]) != (b[1] > p[1]) {
            let x = a[0] + (p[1] - a[1]) / (b[1] - a[1]) * (b[0] - a[0]);
            if p[0] < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// Twice the signed area; positive when the vertices turn clockwise on
/// screen (y grows downwards). Zero means degenerate.
pub fn signed_area2(polygon: &[Point]) -> f32 {
    let n = polygon.len();
    (0..n)
        .map(|i| {
            let (a, b) = (polygon[i], polygon[(i + 1) % n]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum()
}

/// Where a point is relative to a segment `a`→`b`: the signed distance to
/// its line (positive on side "a", to the left of `a`→`b` as seen on
/// screen) and how far along it projects (0 at `a`, 1 at `b`).
pub fn side_of(a: Point, b: Point, p: Point) -> (f32, f32) {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    if len2 == 0.0 {
        return (0.0, 0.0);
    }
    let len = len2.sqrt();
    let (px, py) = (p[0] - a[0], p[1] - a[1]);
    // On screen (y down), `cross < 0` is to the left of a→b.
    let cross = dx * py - dy * px;
    (-cross / len, (px * dx + py * dy) / len2)
}

/// Where the segment `p`–`q` meets the line through `a` and `b`, when it
/// does (its ends on either side, or on it).
pub fn meets(a: Point, b: Point, p: Point, q: Point) -> Option<Point> {
    let (dp, _) = side_of(a, b, p);
    let (dq, _) = side_of(a, b, q);
    if dp == dq || dp.signum() == dq.signum() && dp != 0.0 && dq != 0.0 {
        return None;
    }
    let t = dp / (dp - dq);
    Some([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])])
}

/// Euclidean distance.
pub fn distance(a: Point, b: Point) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// A plane-to-plane projective mapping (homography), from frame pixels to
/// ground metres.
#[derive(Debug, Clone, PartialEq)]
pub struct Homography {
    m: [[f64; 3]; 3],
    /// The sign of the projective divisor on the calibration points: image
    /// points where it is 0 lie on the ground's horizon, those where it has
    /// the other sign beyond it (sky), neither has a ground position.
    front: f64,
}

impl Homography {
    /// The mapping that sends each `image[i]` to `ground[i]`; `None` when
    /// three of the points are on one line (no unique mapping).
    pub fn from_points(image: &[Point; 4], ground: &[Point; 4]) -> Option<Homography> {
        // h33 = 1; two equations per correspondence, eight unknowns.
        let mut a = [[0f64; 9]; 8];
        for i in 0..4 {
            let (x, y) = (f64::from(image[i][0]), f64::from(image[i][1]));
            let (u, v) = (f64::from(ground[i][0]), f64::from(ground[i][1]));
            a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
            a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
        }
        for quad in [image, ground] {
            for skip in 0..4 {
                let p: Vec<Point> = (0..4).filter(|&i| i != skip).map(|i| quad[i]).collect();
                if signed_area2(&p).abs() < 1e-6 {
                    return None;
                }
            }
        }
        let h = solve8(a)?;
        let m = [[h[0], h[1], h[2]], [h[3], h[4], h[5]], [h[6], h[7], 1.0]];
        let (x, y) = (f64::from(image[0][0]), f64::from(image[0][1]));
        let front = (m[2][0] * x + m[2][1] * y + m[2][2]).signum();
        Some(Homography { m, front })
    }

    /// The ground point of an image point; `None` for a point on or beyond
    /// the ground's horizon, or one so near it that its ground position is
    /// out of `f32` range (no finite ground position).
    pub fn map(&self, p: Point) -> Option<Point> {
        let (x, y) = (f64::from(p[0]), f64::from(p[1]));
        let m = &self.m;
        let w = m[2][0] * x + m[2][1] * y + m[2][2];
        // On the horizon (0), beyond it (the other sign), or NaN: none.
        let in_front = w * self.front > 0.0;
        if !in_front {
            return None;
        }
        let g = [
            ((m[0][0] * x + m[0][1] * y + m[0][2]) / w) as f32,
            ((m[1][0] * x + m[1][1] * y + m[1][2]) / w) as f32,
        ];
        (g[0].is_finite() && g[1].is_finite()).then_some(g)
    }

    /// Ground distance between two image points, metres; `None` when either
    /// has no ground position ([`Homography::map`]).
    pub fn ground_distance(&self, a: Point, b: Point) -> Option<f64> {
        let d = f64::from(distance(self.map(a)?, self.map(b)?));
        d.is_finite().then_some(d)
    }
}

/// Gaussian elimination with partial pivoting on an 8x8 system given as
/// rows of coefficients followed by the right-hand side.
fn solve8(mut a: [[f64; 9]; 8]) -> Option<[f64; 8]> {
    for col in 0..8 {
        let pivot = (col..8).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col];
        for (row, coefficients) in a.iter_mut().enumerate() {
            if row != col {
                let f = coefficients[col] / pivot_row[col];
                for (c, p) in coefficients.iter_mut().zip(pivot_row.iter()).skip(col) {
                    *c -= f * p;
                }
            }
        }
    }
    let mut x = [0f64; 8];
    for i in 0..8 {
        x[i] = a[i][8] / a[i][i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_inside_a_concave_polygon() {
        // An L shape.
        let l = [
            [0.0, 0.0],
            [10.0, 0.0],
            [10.0, 4.0],
            [4.0, 4.0],
            [4.0, 10.0],
            [0.0, 10.0],
        ];
        assert!(inside(&l, [2.0, 2.0]));
        assert!(inside(&l, [8.0, 2.0]));
        assert!(inside(&l, [2.0, 8.0]));
        assert!(!inside(&l, [8.0, 8.0]), "the notch");
        assert!(!inside(&l, [-1.0, 5.0]));
    }

    #[test]
    fn side_and_projection_on_screen_axes() {
        // A line going right: "a" (left of a→b on screen) is above it.
        let (d, t) = side_of([0.0, 10.0], [10.0, 10.0], [5.0, 4.0]);
        assert!((d - 6.0).abs() < 1e-6 && (t - 0.5).abs() < 1e-6);
        let (d, t) = side_of([0.0, 10.0], [10.0, 10.0], [12.0, 13.0]);
        assert!((d + 3.0).abs() < 1e-6 && (t - 1.2).abs() < 1e-6);
    }

    #[test]
    fn a_homography_maps_the_four_points_and_keeps_lines_straight() {
        // A road seen in perspective: a trapezoid in the image is a 3.5 m by
        // 10 m rectangle on the ground.
        let image = [
            [300.0, 200.0],
            [380.0, 200.0],
            [520.0, 450.0],
            [100.0, 450.0],
        ];
        let ground = [[0.0, 10.0], [3.5, 10.0], [3.5, 0.0], [0.0, 0.0]];
        let h = Homography::from_points(&image, &ground).unwrap();
        for i in 0..4 {
            let g = h.map(image[i]).unwrap();
            assert!(distance(g, ground[i]) < 1e-3, "{i}: {g:?}");
        }
        // The middle of the near edge is the middle of the rectangle's edge.
        let g = h.map([310.0, 450.0]).unwrap();
        assert!(distance(g, [1.75, 0.0]) < 1e-3, "{g:?}");
        // The road's edges meet at y = 141.2, the horizon: above it is sky.
        assert!(h.map([310.0, 150.0]).is_some());
        assert_eq!(h.map([310.0, 100.0]), None);
        assert_eq!(h.map([310.0, 0.0]), None);
        // Three points on one line: refused.
        let flat = [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 5.0]];
        assert!(Homography::from_points(&flat, &ground).is_none());
    }
}
