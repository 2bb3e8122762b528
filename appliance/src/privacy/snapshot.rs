//! Installer snapshots: a masked frame with every person, vehicle and
//! moving region pixelated, and the pole's geometry drawn on it.
//!
//! An installer aims the camera and checks the counting lines on site from
//! such a picture. It must show the street, never a recognisable person:
//!
//! - [`Regions`] gathers what must not be seen: the detector's boxes
//!   (widened, down to the tracker's low score) and the cells where the
//!   motion gate saw change;
//! - [`pixelate`] replaces every [`BLOCK`]-pixel square of the picture's
//!   grid that touches one of them by its mean colour: coarse blocks, a
//!   loss of information no filter can undo (a blur could be);
//! - [`draw`] draws with `embedded-graphics` on the frame buffer: mask
//!   outlines, zones, counting lines with an arrow across them and their
//!   side names, calibration points with their ground positions, the
//!   detections' boxes and class, and a caption.
//!
//! [`compose`] does all three on one frame; `luciole snapshot` and the
//! daemon's remote snapshots both call it. The masks themselves are filled
//! before any of this, on the raw frame ([`super::mask`]), as for every
//! frame the pole analyses.

use std::convert::Infallible;

use embedded_graphics::mono_font::ascii::FONT_7X13;
use embedded_graphics::mono_font::MonoTextStyleBuilder;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Circle, Line, Polyline, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};

use std::time::Duration;

use serde::Serialize;

use super::mask::Mask;
use crate::analytics::geometry::Point as Spot;
use crate::analytics::{LineSettings, ZoneSettings};
use crate::capture::FrameRef;
use crate::convert::{ConvertError, Converter, RgbImage};
use crate::detect::Detection;
use crate::motion::{MotionGate, MotionSettings};

/// Side of the pixelation squares, in frame pixels.
pub const BLOCK: u32 = 16;

/// Each side of a detection's box is widened by this fraction of its size
/// (at least [`BLOCK`] / 2 pixels), so heads and wheels at the box's edge
/// are covered too.
pub const WIDEN: f32 = 0.15;

/// Colours of the drawing.
pub const LINE: Rgb888 = Rgb888::new(255, 210, 0);
pub const ZONE: Rgb888 = Rgb888::new(0, 200, 255);
pub const MASK: Rgb888 = Rgb888::new(255, 0, 200);
pub const CALIBRATION: Rgb888 = Rgb888::new(0, 255, 120);
pub const DETECTION: Rgb888 = Rgb888::new(255, 60, 60);

/// The parts of a picture that must be pixelated, as a grid of blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Regions {
    width: u32,
    height: u32,
    columns: u32,
    blocks: Vec<bool>,
}

impl Regions {
    /// Nothing to pixelate yet on a `width` × `height` picture.
    pub fn new(width: u32, height: u32) -> Regions {
        let columns = width.div_ceil(BLOCK);
        Regions {
            width,
            height,
            columns,
            blocks: vec![false; (columns * height.div_ceil(BLOCK)) as usize],
        }
    }

    /// Marks every block touching the box `[x0, y0, x1, y1]` (pixels).
    pub fn add_box(&mut self, b: [f32; 4]) {
        let clamp = |v: f32, max: u32| v.clamp(0.0, max as f32);
        let (x0, x1) = (clamp(b[0], self.width), clamp(b[2], self.width));
        let (y0, y1) = (clamp(b[1], self.height), clamp(b[3], self.height));
        if x1 <= x0 || y1 <= y0 {
            return;
        }
        let (bx0, bx1) = ((x0 as u32) / BLOCK, (x1.ceil() as u32).div_ceil(BLOCK));
        let (by0, by1) = ((y0 as u32) / BLOCK, (y1.ceil() as u32).div_ceil(BLOCK));
        for by in by0..by1 {
            for bx in bx0..bx1.min(self.columns) {
                if let Some(block) = self.blocks.get_mut((by * self.columns + bx) as usize) {
                    *block = true;
                }
            }
        }
    }

    /// Marks a detection's box, widened by [`WIDEN`].
    pub fn add_detection(&mut self, d: &Detection) {
        let [x0, y0, x1, y1] = d.bbox;
        let dx = ((x1 - x0) * WIDEN).max(BLOCK as f32 / 2.0);
        let dy = ((y1 - y0) * WIDEN).max(BLOCK as f32 / 2.0);
        self.add_box([x0 - dx, y0 - dy, x1 + dx, y1 + dy]);
    }

    /// Marks the cells that changed on a small `width` × `height` image of
    /// the picture (the motion gate's), each widened by one cell.
    pub fn add_moving(&mut self, width: u32, height: u32, moving: &[bool]) {
        if width == 0 || height == 0 || moving.len() != (width * height) as usize {
            return;
        }
        let fx = self.width as f32 / width as f32;
        let fy = self.height as f32 / height as f32;
        for (i, _) in moving.iter().enumerate().filter(|(_, m)| **m) {
            let (x, y) = ((i as u32 % width) as f32, (i as u32 / width) as f32);
            self.add_box([
                (x - 1.0) * fx,
                (y - 1.0) * fy,
                (x + 2.0) * fx,
                (y + 2.0) * fy,
            ]);
        }
    }

    /// How many blocks are marked.
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.blocks.iter().filter(|b| **b).count()
    }

    /// Whether the block holding pixel (x, y) is marked (`false` outside
    /// the picture).
    #[cfg(test)]
    pub fn marked(&self, x: u32, y: u32) -> bool {
        if x >= self.width || y >= self.height {
            return false;
        }
        self.blocks
            .get(((y / BLOCK) * self.columns + x / BLOCK) as usize)
            .copied()
            .unwrap_or(false)
    }
}

/// Replaces each marked block of `image` by its mean colour. Returns how
/// many blocks were pixelated.
pub fn pixelate(image: &mut RgbImage, regions: &Regions) -> usize {
    let (width, height) = (image.width, image.height);
    assert_eq!((width, height), (regions.width, regions.height));
    let rows = height.div_ceil(BLOCK);
    let mut done = 0;
    for by in 0..rows {
        for bx in 0..regions.columns {
            if !regions.blocks[(by * regions.columns + bx) as usize] {
                continue;
            }
            let (x0, y0) = (bx * BLOCK, by * BLOCK);
            let (x1, y1) = ((x0 + BLOCK).min(width), (y0 + BLOCK).min(height));
            let mut sum = [0u64; 3];
            for y in y0..y1 {
                let row =
                    &image.data[((y * width + x0) * 3) as usize..((y * width + x1) * 3) as usize];
                for px in row.chunks_exact(3) {
                    for c in 0..3 {
                        sum[c] += u64::from(px[c]);
                    }
                }
            }
            let n = u64::from((x1 - x0) * (y1 - y0));
            let mean = sum.map(|s| ((s + n / 2) / n) as u8);
            for y in y0..y1 {
                let row = &mut image.data
                    [((y * width + x0) * 3) as usize..((y * width + x1) * 3) as usize];
                for px in row.chunks_exact_mut(3) {
                    px.copy_from_slice(&mean);
                }
            }
            done += 1;
        }
    }
    done
}

/// The pole's geometry a snapshot shows, and its caption; [`draw`] adds
/// the detections [`compose`] finds.
#[derive(Debug, Default)]
pub struct Scene<'a> {
    pub lines: &'a [LineSettings],
    pub zones: &'a [ZoneSettings],
    /// Picture points and their ground positions in metres.
    pub calibration: &'a [(Spot, Spot)],
    pub masks: &'a [Mask],
    /// One line at the top: pole, time, what was done.
    pub caption: String,
}

/// One detection of a snapshot's frame.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Found {
    #[serde(flatten)]
    pub detection: Detection,
    /// Standing in a mask: pixelated, not drawn, never tracked.
    pub in_mask: bool,
}

/// A finished snapshot: the picture, what was found, how much was hidden.
#[derive(Debug)]
pub struct Shot {
    pub image: RgbImage,
    pub found: Vec<Found>,
    pub pixelated_blocks: usize,
}

/// Motion maps of the snapshot's last frames (the motion gate's cells:
/// width, height, changed), oldest first.
pub type MotionMaps = [(u32, u32, Vec<bool>)];

/// Makes a snapshot of `frame` (masks already filled): every detection
/// (also those standing in a mask: part of them may show above or beside
/// it) and every cell that moved in `moving` is pixelated, then the scene
/// and the detections outside the masks are drawn.
pub fn compose(
    frame: &FrameRef<'_>,
    detections: &[Detection],
    moving: &MotionMaps,
    scene: Scene<'_>,
) -> Result<Shot, ConvertError> {
    let found: Vec<Found> = detections
        .iter()
        .map(|&detection| Found {
            detection,
            in_mask: super::mask::covers(scene.masks, detection.foot()),
        })
        .collect();
    let drawn: Vec<Detection> = found
        .iter()
        .filter(|f| !f.in_mask)
        .map(|f| f.detection)
        .collect();
    let mut image = RgbImage::default();
    Converter::new().to_rgb(frame, &mut image)?;
    let pixelated_blocks = hide(&mut image, detections, moving);
    draw(&mut image, &scene, &drawn);
    Ok(Shot {
        image,
        found,
        pixelated_blocks,
    })
}

/// Frames whose motion is pixelated: the last one and the two before it.
pub const MOTION_FRAMES: usize = 3;

/// What moved in the frames before a snapshot, seen by a motion gate of
/// its own (the pole's gate may be switched off, and keeps no map).
pub struct Watch {
    gate: MotionGate,
    recent: Vec<(u32, u32, Vec<bool>)>,
    seen: u64,
}

impl Watch {
    /// Nothing seen yet; `motion`'s thresholds, always enabled.
    pub fn new(motion: &MotionSettings) -> Watch {
        Watch {
            gate: MotionGate::keeping_moving(MotionSettings {
                enabled: true,
                ..motion.clone()
            }),
            recent: Vec::new(),
            seen: 0,
        }
    }

    /// Looks at one frame (masks filled) taken at `time`.
    pub fn see(&mut self, frame: &FrameRef<'_>, time: Duration) {
        self.gate.check(frame, time);
        let (w, h, moving) = self.gate.moving();
        if self.recent.len() == MOTION_FRAMES {
            self.recent.remove(0);
        }
        self.recent.push((w, h, moving.to_vec()));
        self.seen += 1;
    }

    /// Frames seen.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Where the last [`MOTION_FRAMES`] frames moved, oldest first.
    pub fn maps(&self) -> &MotionMaps {
        &self.recent
    }
}

/// Pixelates every block of `image` touching one of `detections` or a cell
/// that moved in `moving`; how many blocks. What a snapshot and a capture
/// both do before anything is drawn or written.
pub fn hide(image: &mut RgbImage, detections: &[Detection], moving: &MotionMaps) -> usize {
    let mut regions = Regions::new(image.width, image.height);
    for d in detections {
        regions.add_detection(d);
    }
    for (w, h, cells) in moving {
        regions.add_moving(*w, *h, cells);
    }
    pixelate(image, &regions)
}

/// The caption of a snapshot of pole `site`/`device` taken at `time_ms`.
pub fn caption(site: &str, device: &str, time_ms: u64) -> String {
    format!(
        "{site}/{device} {} - people, vehicles and movement pixelated, masks filled",
        crate::events::rfc3339_ms(time_ms)
    )
}

/// An [`RgbImage`] as an `embedded-graphics` draw target.
struct Canvas<'a>(&'a mut RgbImage);

impl OriginDimensions for Canvas<'_> {
    fn size(&self) -> Size {
        Size::new(self.0.width, self.0.height)
    }
}

impl DrawTarget for Canvas<'_> {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Infallible>
    where
        I: IntoIterator<Item = Pixel<Rgb888>>,
    {
        let (width, height) = (self.0.width as i32, self.0.height as i32);
        for Pixel(p, colour) in pixels {
            if (0..width).contains(&p.x) && (0..height).contains(&p.y) {
                let at = ((p.y * width + p.x) * 3) as usize;
                self.0.data[at..at + 3].copy_from_slice(&[colour.r(), colour.g(), colour.b()]);
            }
        }
        Ok(())
    }
}

fn at(p: Spot) -> Point {
    Point::new(p[0].round() as i32, p[1].round() as i32)
}

/// A label: `colour` text on black, its top left at `p`, moved inside the
/// picture when it would run off an edge.
fn label(canvas: &mut Canvas<'_>, text: &str, p: Point, colour: Rgb888) {
    let (width, height) = (canvas.0.width as i32, canvas.0.height as i32);
    let p = Point::new(
        p.x.min(width - 7 * text.chars().count() as i32 - 1).max(0),
        p.y.min(height - 14).max(0),
    );
    let style = MonoTextStyleBuilder::new()
        .font(&FONT_7X13)
        .text_color(colour)
        .background_color(Rgb888::BLACK)
        .build();
    let _ = Text::with_baseline(text, p, style, Baseline::Top).draw(canvas);
}

/// A label centred on `p`.
fn label_centred(canvas: &mut Canvas<'_>, text: &str, p: Point, colour: Rgb888) {
    let half = Point::new(text.chars().count() as i32 * 7 / 2, 6);
    label(canvas, text, p - half, colour);
}

/// An arrow from `a` to `b` with a head at `b`.
fn arrow(canvas: &mut Canvas<'_>, a: Spot, b: Spot, colour: Rgb888) {
    let style = PrimitiveStyle::with_stroke(colour, 2);
    let _ = Line::new(at(a), at(b)).into_styled(style).draw(canvas);
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let length = dx.hypot(dy).max(1e-3);
    let (ux, uy) = (dx / length, dy / length);
    for side in [-1.0, 1.0] {
        let tip = [
            b[0] - 8.0 * ux + side * 5.0 * uy,
            b[1] - 8.0 * uy - side * 5.0 * ux,
        ];
        let _ = Line::new(at(b), at(tip)).into_styled(style).draw(canvas);
    }
}

/// The unit normal of a counting line pointing to its side a: the left of
/// from→to as seen on the picture (y grows downwards), as
/// [`crate::analytics::geometry::side_of`] decides.
pub fn side_a_normal(line: &LineSettings) -> Spot {
    let (dx, dy) = (line.to[0] - line.from[0], line.to[1] - line.from[1]);
    let length = dx.hypot(dy).max(1e-3);
    [dy / length, -dx / length]
}

/// A closed polygon in `colour`, labelled `text` inside its first corner.
fn outlined(canvas: &mut Canvas<'_>, polygon: &[Spot], text: &str, colour: Rgb888) {
    let mut closed: Vec<Point> = polygon.iter().map(|&p| at(p)).collect();
    closed.extend(closed.first().copied());
    let _ = Polyline::new(&closed)
        .into_styled(PrimitiveStyle::with_stroke(colour, 2))
        .draw(canvas);
    if let Some(&first) = polygon.first() {
        label(canvas, text, at(first) + Point::new(4, 4), colour);
    }
}

/// Draws `scene` and `detections` on `image`.
pub fn draw(image: &mut RgbImage, scene: &Scene<'_>, detections: &[Detection]) {
    let mut canvas = Canvas(image);
    let canvas = &mut canvas;
    for mask in scene.masks {
        outlined(canvas, &mask.polygon, &format!("mask {}", mask.name), MASK);
    }
    for zone in scene.zones {
        outlined(canvas, &zone.polygon, &format!("zone {}", zone.name), ZONE);
    }
    for d in detections {
        let [x0, y0, x1, y1] = d.bbox;
        let _ = Rectangle::with_corners(at([x0, y0]), at([x1, y1]))
            .into_styled(PrimitiveStyle::with_stroke(DETECTION, 1))
            .draw(canvas);
        label(
            canvas,
            d.class.name(),
            at([x0, y1]) + Point::new(0, 2),
            DETECTION,
        );
    }
    for line in scene.lines {
        let _ = Line::new(at(line.from), at(line.to))
            .into_styled(PrimitiveStyle::with_stroke(LINE, 3))
            .draw(canvas);
        let left = side_a_normal(line);
        let mid = [
            (line.from[0] + line.to[0]) / 2.0,
            (line.from[1] + line.to[1]) / 2.0,
        ];
        let off = |d: f32| [mid[0] + d * left[0], mid[1] + d * left[1]];
        // Both directions are counted: an arrow each way across the line.
        arrow(canvas, off(6.0), off(24.0), LINE);
        arrow(canvas, off(-6.0), off(-24.0), LINE);
        label_centred(canvas, &line.side_a, at(off(38.0)), LINE);
        label_centred(canvas, &line.side_b, at(off(-38.0)), LINE);
        label(
            canvas,
            &format!("line {}", line.name),
            at(line.to) + Point::new(4, -6),
            LINE,
        );
    }
    for (i, (image_point, ground)) in scene.calibration.iter().enumerate() {
        let _ = Circle::with_center(at(*image_point), 9)
            .into_styled(PrimitiveStyle::with_stroke(CALIBRATION, 2))
            .draw(canvas);
        label(
            canvas,
            &format!("C{} ({:.1}, {:.1} m)", i + 1, ground[0], ground[1]),
            at(*image_point) + Point::new(7, 2),
            CALIBRATION,
        );
    }
    label(canvas, &scene.caption, Point::new(4, 4), Rgb888::WHITE);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Class;

    fn noise(width: u32, height: u32) -> RgbImage {
        let mut image = RgbImage::new(width, height);
        for (i, v) in image.data.iter_mut().enumerate() {
            *v = (i.wrapping_mul(2_654_435_761) >> 7) as u8;
        }
        image
    }

    #[test]
    fn a_detection_is_pixelated_into_uniform_blocks_covering_its_widened_box() {
        let mut image = noise(96, 64);
        let before = image.clone();
        let mut regions = Regions::new(96, 64);
        regions.add_detection(&Detection {
            class: Class::Person,
            score: 0.3,
            bbox: [40.0, 20.0, 50.0, 40.0],
        });
        // Widened by 8 px (half a block): 32..58 x 12..48, so blocks 2 and
        // 3 across (32..64), 0 to 2 down (0..48).
        assert_eq!(regions.count(), 2 * 3);
        assert_eq!(pixelate(&mut image, &regions), 6);
        for by in 0..4 {
            for bx in 0..6 {
                let block: Vec<[u8; 3]> = (0..BLOCK * BLOCK)
                    .map(|i| image.pixel(bx * BLOCK + i % BLOCK, by * BLOCK + i / BLOCK))
                    .collect();
                let original: Vec<[u8; 3]> = (0..BLOCK * BLOCK)
                    .map(|i| before.pixel(bx * BLOCK + i % BLOCK, by * BLOCK + i / BLOCK))
                    .collect();
                if (2..4).contains(&bx) && by < 3 {
                    assert!(block.iter().all(|p| *p == block[0]), "block {bx},{by}");
                    let mean = |c: usize| {
                        (original.iter().map(|p| u32::from(p[c])).sum::<u32>() + 128) / 256
                    };
                    assert_eq!(block[0], [0, 1, 2].map(|c| mean(c) as u8));
                } else {
                    assert_eq!(block, original, "block {bx},{by} untouched");
                }
            }
        }
    }

    #[test]
    fn moving_cells_are_scaled_to_the_picture_and_widened() {
        let mut regions = Regions::new(160, 160);
        // A 10×10 motion image: cell (5, 5) is 80..96 in the picture,
        // widened by a cell: 64..112 → blocks 4..7.
        let mut moving = vec![false; 100];
        moving[55] = true;
        regions.add_moving(10, 10, &moving);
        assert_eq!(regions.count(), 9);
        assert!(regions.marked(64, 64) && regions.marked(111, 111));
        assert!(!regions.marked(63, 80) && !regions.marked(112, 80));
        assert!(!regions.marked(160, 64), "outside the picture");
        regions.add_moving(3, 3, &moving); // the wrong size: ignored
        assert_eq!(regions.count(), 9);
    }

    #[test]
    fn blocks_at_the_picture_edge_are_partial_and_boxes_outside_are_ignored() {
        let mut image = noise(20, 20);
        let mut regions = Regions::new(20, 20);
        regions.add_box([-50.0, -50.0, -10.0, 5.0]);
        assert_eq!(regions.count(), 0);
        regions.add_box([18.0, 18.0, 500.0, 500.0]);
        assert_eq!(regions.count(), 1);
        pixelate(&mut image, &regions);
        let corner = image.pixel(16, 16);
        assert!((16..20).all(|y| (16..20).all(|x| image.pixel(x, y) == corner)));
    }

    #[test]
    fn side_a_is_drawn_on_the_side_the_analytics_call_a() {
        use crate::analytics::geometry::side_of;
        for (from, to) in [
            ([0.0, 0.0], [0.0, 10.0]),
            ([0.0, 0.0], [10.0, 0.0]),
            ([5.0, 9.0], [-3.0, 1.0]),
        ] {
            let line = LineSettings::new("l", from, to);
            let n = side_a_normal(&line);
            let mid = [(from[0] + to[0]) / 2.0, (from[1] + to[1]) / 2.0];
            let (d, _) = side_of(from, to, [mid[0] + n[0], mid[1] + n[1]]);
            assert!((d - 1.0).abs() < 1e-4, "{from:?}→{to:?}: {d}");
        }
    }

    #[test]
    fn lines_zones_masks_and_labels_are_drawn_in_their_colours() {
        let mut image = RgbImage::new(200, 160);
        let mut line = LineSettings::new("gate", [100.0, 20.0], [100.0, 140.0]);
        line.side_a = "east".into();
        line.side_b = "west".into();
        let zone = ZoneSettings {
            name: "path".into(),
            polygon: vec![[10.0, 100.0], [60.0, 100.0], [60.0, 150.0], [10.0, 150.0]],
            classes: Vec::new(),
        };
        let mask = Mask {
            name: "door".into(),
            polygon: vec![[150.0, 100.0], [190.0, 100.0], [190.0, 150.0]],
        };
        let scene = Scene {
            lines: std::slice::from_ref(&line),
            zones: std::slice::from_ref(&zone),
            calibration: &[([30.0, 60.0], [1.0, 2.0])],
            masks: std::slice::from_ref(&mask),
            caption: "test".into(),
        };
        draw(&mut image, &scene, &[]);
        let rgb = |c: Rgb888| [c.r(), c.g(), c.b()];
        assert_eq!(image.pixel(100, 80), rgb(LINE), "on the line");
        assert_eq!(image.pixel(60, 125), rgb(ZONE), "on the zone's edge");
        assert_eq!(image.pixel(190, 125), rgb(MASK), "on the mask's edge");
        // The arrows across the line: left of from→to (downwards) is +x.
        assert_eq!(image.pixel(115, 80), rgb(LINE));
        assert_eq!(image.pixel(85, 80), rgb(LINE));
        // Some label text in each colour, and nothing drawn far away.
        let count = |c: [u8; 3]| {
            (0..160)
                .flat_map(|y| (0..200).map(move |x| (x, y)))
                .filter(|&(x, y)| image.pixel(x, y) == c)
                .count()
        };
        assert!(count(rgb(CALIBRATION)) > 20);
        assert!(count([255, 255, 255]) > 20, "the caption");
        assert_eq!(image.pixel(180, 20), [0, 0, 0]);
    }
}
