//! From output tensors to detections: pure functions, no runtime.
//!
//! Two decoders, one per kind of model output:
//! - [`decode_postprocess`]: models whose graph ends in
//!   `TFLite_Detection_PostProcess` already give boxes, classes, scores and
//!   a count after non-maximum suppression; only the class filter and the
//!   score thresholds remain.
//! - [`decode_ssd`] + [`nms_per_class`]: raw SSD heads give, per anchor
//!   ([`ssd_anchors`]), a box encoding relative to the anchor and one score
//!   per class; decoding and suppression happen here.
//!
//! Boxes stay in normalised model-input coordinates until [`Geometry`] maps
//! them to frame pixels.

use std::collections::BTreeMap;

use super::manifest::{AnchorSpec, SsdParams};
use super::Class;

/// A detection in normalised model-input coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub class: Class,
    pub score: f32,
    pub ymin: f32,
    pub xmin: f32,
    pub ymax: f32,
    pub xmax: f32,
}

impl Candidate {
    /// A candidate from a box in the models' order: ymin, xmin, ymax, xmax.
    fn new(class: Class, score: f32, [ymin, xmin, ymax, xmax]: [f32; 4]) -> Self {
        Self {
            class,
            score,
            ymin,
            xmin,
            ymax,
            xmax,
        }
    }

    fn area(&self) -> f32 {
        (self.ymax - self.ymin).max(0.0) * (self.xmax - self.xmin).max(0.0)
    }

    /// Intersection over union with `other` (0 when either box is empty).
    pub fn iou(&self, other: &Candidate) -> f32 {
        let h = (self.ymax.min(other.ymax) - self.ymin.max(other.ymin)).max(0.0);
        let w = (self.xmax.min(other.xmax) - self.xmin.max(other.xmin)).max(0.0);
        let inter = h * w;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// Which model class ids are reported, as which class, from which score.
#[derive(Clone, Debug, Default)]
pub struct ClassMap {
    /// Indexed by model class id.
    by_id: Vec<Option<(Class, f32)>>,
}

impl ClassMap {
    /// `class_ids`: the model id of each class the model knows;
    /// `min_scores`: the classes to report and their thresholds. A class in
    /// one and not the other is never reported.
    pub fn new(class_ids: &BTreeMap<Class, usize>, min_scores: &BTreeMap<Class, f32>) -> Self {
        let mut by_id = Vec::new();
        for (class, &id) in class_ids {
            if let Some(&min) = min_scores.get(class) {
                if by_id.len() <= id {
                    by_id.resize(id + 1, None);
                }
                by_id[id] = Some((*class, min));
            }
        }
        Self { by_id }
    }

    /// The class and threshold of model class `id`, if reported.
    pub fn get(&self, id: usize) -> Option<(Class, f32)> {
        self.by_id.get(id).copied().flatten()
    }

    /// Reported model ids with their class and threshold.
    pub fn iter(&self) -> impl Iterator<Item = (usize, Class, f32)> + '_ {
        self.by_id
            .iter()
            .enumerate()
            .filter_map(|(id, entry)| entry.map(|(class, min)| (id, class, min)))
    }
}

/// Outputs of `TFLite_Detection_PostProcess`: `boxes` holds `[ymin, xmin,
/// ymax, xmax]` per detection, `classes` the class ids as floats, `count`
/// the number of valid rows.
pub fn decode_postprocess(
    boxes: &[f32],
    classes: &[f32],
    scores: &[f32],
    count: &[f32],
    map: &ClassMap,
    out: &mut Vec<Candidate>,
) {
    let rows = boxes.len() / 4;
    let valid = count.first().copied().unwrap_or(0.0).max(0.0) as usize;
    let n = valid.min(rows).min(classes.len()).min(scores.len());
    for i in 0..n {
        let id = classes[i];
        if id.is_nan() || id < 0.0 {
            continue; // negative or NaN: no class
        }
        let Some((class, min)) = map.get(id.round() as usize) else {
            continue;
        };
        let score = scores[i];
        // `NaN < min` is false: test for a usable score, not against one.
        if !passes(score, min) {
            continue;
        }
        let b = [
            boxes[i * 4],
            boxes[i * 4 + 1],
            boxes[i * 4 + 2],
            boxes[i * 4 + 3],
        ];
        if b.iter().all(|v| v.is_finite()) {
            out.push(Candidate::new(class, score, b));
        }
    }
}

/// An SSD anchor: centre and size, normalised to the model input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Anchor {
    pub y: f32,
    pub x: f32,
    pub h: f32,
    pub w: f32,
}

fn layer_scale(spec: &AnchorSpec, layer: usize) -> f32 {
    if spec.num_layers == 1 {
        (spec.min_scale + spec.max_scale) / 2.0
    } else {
        spec.min_scale
            + (spec.max_scale - spec.min_scale) * layer as f32 / (spec.num_layers - 1) as f32
    }
}

/// How many anchors [`ssd_anchors`] makes, counted without making them (a
/// manifest is checked with it before anything is allocated).
pub fn ssd_anchor_count(spec: &AnchorSpec, width: u32, height: u32) -> u64 {
    let mut count = 0u64;
    for (layer, &stride) in spec.strides.iter().enumerate().take(spec.num_layers) {
        let shapes = if layer == 0 && spec.reduce_boxes_in_lowest_layer {
            3
        } else {
            spec.aspect_ratios.len() as u64 + u64::from(spec.interpolated_scale_aspect_ratio > 0.0)
        };
        let cells =
            u64::from(height.div_ceil(stride.max(1))) * u64::from(width.div_ceil(stride.max(1)));
        count = count.saturating_add(cells.saturating_mul(shapes));
    }
    count
}

/// The anchors of an SSD head over a `width` x `height` input, in the order
/// the model emits its boxes: layer by layer, row by row, column by column,
/// anchor shape by anchor shape.
pub fn ssd_anchors(spec: &AnchorSpec, width: u32, height: u32) -> Vec<Anchor> {
    let mut anchors = Vec::new();
    for (layer, &stride) in spec.strides.iter().enumerate().take(spec.num_layers) {
        let scale = layer_scale(spec, layer);
        // (scale, aspect ratio) of each anchor shape in this layer.
        let mut shapes: Vec<(f32, f32)> = Vec::new();
        if layer == 0 && spec.reduce_boxes_in_lowest_layer {
            shapes.extend([(0.1, 1.0), (scale, 2.0), (scale, 0.5)]);
        } else {
            shapes.extend(spec.aspect_ratios.iter().map(|&ratio| (scale, ratio)));
            if spec.interpolated_scale_aspect_ratio > 0.0 {
                let next = if layer + 1 == spec.num_layers {
                    1.0
                } else {
                    layer_scale(spec, layer + 1)
                };
                shapes.push(((scale * next).sqrt(), spec.interpolated_scale_aspect_ratio));
            }
        }
        let rows = height.div_ceil(stride);
        let cols = width.div_ceil(stride);
        for row in 0..rows {
            for col in 0..cols {
                for &(scale, ratio) in &shapes {
                    let root = ratio.sqrt();
                    anchors.push(Anchor {
                        y: (row as f32 + spec.offset) / rows as f32,
                        x: (col as f32 + spec.offset) / cols as f32,
                        h: scale / root,
                        w: scale * root,
                    });
                }
            }
        }
    }
    anchors
}

/// Raw SSD outputs: `encodings` holds `[y, x, h, w]` per anchor (centre
/// offsets in anchor units and log sizes, divided by `params.scales`),
/// `scores` holds `num_classes` scores per anchor. Every (anchor, class)
/// pair over its class's threshold becomes a candidate, in anchor order.
pub fn decode_ssd(
    encodings: &[f32],
    scores: &[f32],
    num_classes: usize,
    anchors: &[Anchor],
    params: &SsdParams,
    map: &ClassMap,
    out: &mut Vec<Candidate>,
) {
    // Compare raw logits with the threshold's logit: one `ln` per class
    // instead of one `exp` per anchor and class.
    let reported: Vec<(usize, Class, f32, f32)> = map
        .iter()
        .filter(|(id, _, _)| *id < num_classes && !params.ignore_classes.contains(id))
        .map(|(id, class, min)| {
            let raw_min = if params.sigmoid { logit(min) } else { min };
            (id, class, min, raw_min)
        })
        .collect();
    let [sy, sx, sh, sw] = params.scales;
    let n = anchors
        .len()
        .min(encodings.len() / 4)
        .min(scores.len() / num_classes.max(1));
    for (i, anchor) in anchors.iter().enumerate().take(n) {
        let row = &scores[i * num_classes..(i + 1) * num_classes];
        let mut decoded = None;
        for &(id, class, min, raw_min) in &reported {
            let raw = row[id];
            if raw.is_nan() || raw < raw_min {
                continue;
            }
            let score = if params.sigmoid { sigmoid(raw) } else { raw };
            if !passes(score, min) {
                continue;
            }
            let yxyx = *decoded.get_or_insert_with(|| {
                let e = &encodings[i * 4..i * 4 + 4];
                let y = e[0] / sy * anchor.h + anchor.y;
                let x = e[1] / sx * anchor.w + anchor.x;
                let h = (e[2] / sh).exp() * anchor.h;
                let w = (e[3] / sw).exp() * anchor.w;
                [y - h / 2.0, x - w / 2.0, y + h / 2.0, x + w / 2.0]
            });
            if yxyx.iter().all(|v| v.is_finite()) {
                out.push(Candidate::new(class, score, yxyx));
            }
        }
    }
}

/// Whether `score` is a real score (finite, so a NaN or an infinity from a
/// broken model or delegate never passes) at or above `min`.
fn passes(score: f32, min: f32) -> bool {
    score.is_finite() && score >= min
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn logit(p: f32) -> f32 {
    if p <= 0.0 {
        f32::NEG_INFINITY
    } else if p >= 1.0 {
        f32::INFINITY
    } else {
        // A hair below, so rounding never drops a score equal to `p`.
        (p / (1.0 - p)).ln() - 1e-4
    }
}

/// Greedy non-maximum suppression within each class: highest score first,
/// a box is dropped when it overlaps a kept box of its class by more than
/// `iou_threshold`; at most `max` boxes are kept, best first. Ties keep the
/// input order.
pub fn nms_per_class(candidates: &mut Vec<Candidate>, iou_threshold: f32, max: usize) {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::with_capacity(candidates.len().min(max));
    for candidate in candidates.iter() {
        if kept.len() == max {
            break;
        }
        let suppressed = kept
            .iter()
            .any(|k| k.class == candidate.class && k.iou(candidate) > iou_threshold);
        if !suppressed {
            kept.push(*candidate);
        }
    }
    *candidates = kept;
}

/// Where the frame sits in the model input, to map boxes back to pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Geometry {
    pub frame_width: u32,
    pub frame_height: u32,
    /// The frame's region in normalised input coordinates: left, top,
    /// width, height (0, 0, 1, 1 when the frame is stretched to the input).
    pub region: [f32; 4],
}

impl Geometry {
    /// A frame stretched over the whole input.
    pub fn stretched(frame_width: u32, frame_height: u32) -> Self {
        Self {
            frame_width,
            frame_height,
            region: [0.0, 0.0, 1.0, 1.0],
        }
    }

    /// A frame scaled to fit `input_w` x `input_h` with its aspect ratio
    /// kept and centred: the scaled size and offset in input pixels.
    pub fn letterboxed(
        frame_width: u32,
        frame_height: u32,
        input_w: u32,
        input_h: u32,
    ) -> (Self, [u32; 4]) {
        let scale = (input_w as f64 / frame_width as f64).min(input_h as f64 / frame_height as f64);
        let w = ((frame_width as f64 * scale).round() as u32).clamp(1, input_w);
        let h = ((frame_height as f64 * scale).round() as u32).clamp(1, input_h);
        let (left, top) = ((input_w - w) / 2, (input_h - h) / 2);
        let geometry = Self {
            frame_width,
            frame_height,
            region: [
                left as f32 / input_w as f32,
                top as f32 / input_h as f32,
                w as f32 / input_w as f32,
                h as f32 / input_h as f32,
            ],
        };
        (geometry, [left, top, w, h])
    }

    /// `[x0, y0, x1, y1]` in frame pixels, clamped to the frame.
    pub fn to_pixels(&self, c: &Candidate) -> [f32; 4] {
        let [left, top, width, height] = self.region;
        let (fw, fh) = (self.frame_width as f32, self.frame_height as f32);
        let x = |v: f32| ((v - left) / width * fw).clamp(0.0, fw);
        let y = |v: f32| ((v - top) / height * fh).clamp(0.0, fh);
        [x(c.xmin), y(c.ymin), x(c.xmax), y(c.ymax)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(class: Class, score: f32, b: [f32; 4]) -> Candidate {
        Candidate::new(class, score, b)
    }

    fn coco_map(min: f32) -> ClassMap {
        let ids = BTreeMap::from([(Class::Person, 0), (Class::Car, 2), (Class::Truck, 7)]);
        let mins = BTreeMap::from([(Class::Person, min), (Class::Car, min)]);
        ClassMap::new(&ids, &mins)
    }

    #[test]
    fn postprocess_outputs_are_filtered_by_class_threshold_and_count() {
        let boxes = [
            0.1, 0.2, 0.5, 0.6, // person 0.9
            0.0, 0.0, 1.0, 1.0, // truck: known to the model, not asked for
            0.2, 0.2, 0.3, 0.3, // car under threshold
            0.3, 0.3, 0.4, 0.4, // kite: not a Luciole class
            0.5, 0.5, 0.9, 0.9, // car, but beyond count
        ];
        let classes = [0.0, 7.0, 2.0, 37.0, 2.0];
        let scores = [0.9, 0.95, 0.4, 0.99, 0.99];
        let mut out = Vec::new();
        decode_postprocess(&boxes, &classes, &scores, &[4.0], &coco_map(0.5), &mut out);
        assert_eq!(out, [candidate(Class::Person, 0.9, [0.1, 0.2, 0.5, 0.6])]);
    }

    #[test]
    fn nan_or_infinite_scores_and_boxes_never_pass_the_filter() {
        // A model or delegate gone wrong can emit NaN: `NaN < min` is
        // false, so a plain comparison would let it through.
        let boxes = [
            0.1,
            0.2,
            0.5,
            0.6, // NaN score
            0.1,
            0.2,
            0.5,
            0.6, // infinite score
            f32::NAN,
            0.2,
            0.5,
            0.6, // good score, NaN box
            0.1,
            0.2,
            0.5,
            0.6, // the one good row
        ];
        let classes = [0.0, 0.0, 0.0, 2.0];
        let scores = [f32::NAN, f32::INFINITY, 0.9, 0.8];
        let mut out = Vec::new();
        decode_postprocess(&boxes, &classes, &scores, &[4.0], &coco_map(0.5), &mut out);
        assert_eq!(out, [candidate(Class::Car, 0.8, [0.1, 0.2, 0.5, 0.6])]);

        let anchors = [Anchor {
            y: 0.5,
            x: 0.5,
            h: 0.2,
            w: 0.2,
        }; 3];
        let ids = BTreeMap::from([(Class::Person, 1)]);
        let mins = BTreeMap::from([(Class::Person, 0.5)]);
        let map = ClassMap::new(&ids, &mins);
        out.clear();
        decode_ssd(
            &[
                0.0,
                0.0,
                0.0,
                0.0,
                f32::NAN,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
            ],
            &[0.0, f32::NAN, 0.0, 5.0, 0.0, 5.0],
            2,
            &anchors,
            &raw_params(),
            &map,
            &mut out,
        );
        // Anchor 0: NaN logit; anchor 1: NaN encoding; anchor 2 passes.
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].score > 0.99 && out[0].ymin.is_finite());
    }

    #[test]
    fn a_count_beyond_the_tensors_is_clamped() {
        let mut out = Vec::new();
        decode_postprocess(
            &[0.0, 0.0, 1.0, 1.0],
            &[0.0],
            &[0.8],
            &[50.0],
            &coco_map(0.5),
            &mut out,
        );
        assert_eq!(out.len(), 1);
    }

    fn mediapipe_layout() -> AnchorSpec {
        AnchorSpec {
            num_layers: 6,
            min_scale: 0.2,
            max_scale: 0.95,
            strides: vec![16, 32, 64, 128, 256, 512],
            aspect_ratios: vec![1.0, 2.0, 0.5, 3.0, 0.3333],
            offset: 0.5,
            reduce_boxes_in_lowest_layer: true,
            interpolated_scale_aspect_ratio: 1.0,
        }
    }

    #[test]
    fn ssd_anchors_match_the_models_box_count_and_layout() {
        let anchors = ssd_anchors(&mediapipe_layout(), 300, 300);
        assert_eq!(ssd_anchor_count(&mediapipe_layout(), 300, 300), 1917);
        // 19x19x3 + 10x10x6 + 5x5x6 + 3x3x6 + 2x2x6 + 1x1x6
        assert_eq!(anchors.len(), 1917);
        let first = anchors[0];
        assert!((first.y - 0.5 / 19.0).abs() < 1e-6 && (first.x - 0.5 / 19.0).abs() < 1e-6);
        assert!((first.h - 0.1).abs() < 1e-6 && (first.w - 0.1).abs() < 1e-6);
        // Second shape of the lowest layer: scale 0.2, ratio 2 (wider).
        assert!((anchors[1].w - 0.2 * 2f32.sqrt()).abs() < 1e-6);
        // The last anchor: the single top-layer cell, interpolated shape
        // between scale 0.95 and 1.0.
        let last = anchors[1916];
        assert!((last.x - 0.5).abs() < 1e-6 && (last.y - 0.5).abs() < 1e-6);
        assert!((last.w - (0.95f32).sqrt()).abs() < 1e-5, "{last:?}");
    }

    fn raw_params() -> SsdParams {
        SsdParams {
            encodings: 0,
            scores: 1,
            sigmoid: true,
            ignore_classes: vec![0],
            scales: [10.0, 10.0, 5.0, 5.0],
            iou_threshold: 0.5,
            max_detections: 10,
            anchors: mediapipe_layout(),
        }
    }

    #[test]
    fn a_zero_encoding_decodes_to_its_anchor_and_logits_go_through_the_sigmoid() {
        let anchors = [Anchor {
            y: 0.5,
            x: 0.25,
            h: 0.2,
            w: 0.4,
        }];
        // Classes: 0 background, 1 bicycle, 2 person.
        let ids = BTreeMap::from([(Class::Bicycle, 1), (Class::Person, 2)]);
        let mins = BTreeMap::from([(Class::Bicycle, 0.5), (Class::Person, 0.5)]);
        let map = ClassMap::new(&ids, &mins);
        let mut out = Vec::new();
        decode_ssd(
            &[0.0, 0.0, 0.0, 0.0],
            &[9.0, -1.0, 2.0],
            3,
            &anchors,
            &raw_params(),
            &map,
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        let c = out[0];
        assert_eq!(c.class, Class::Person);
        assert!((c.score - 1.0 / (1.0 + (-2f32).exp())).abs() < 1e-6);
        assert!((c.ymin - 0.4).abs() < 1e-6 && (c.ymax - 0.6).abs() < 1e-6);
        assert!((c.xmin - 0.05).abs() < 1e-6 && (c.xmax - 0.45).abs() < 1e-6);

        // An offset of one anchor width (x 10) and a doubled height.
        out.clear();
        decode_ssd(
            &[0.0, 10.0, 5.0 * 2f32.ln(), 0.0],
            &[0.0, 0.0, 3.0],
            3,
            &anchors,
            &raw_params(),
            &map,
            &mut out,
        );
        let c = out[0];
        assert!((c.xmin - 0.45).abs() < 1e-6 && (c.xmax - 0.85).abs() < 1e-6);
        assert!((c.ymin - 0.3).abs() < 1e-6 && (c.ymax - 0.7).abs() < 1e-6);
    }

    #[test]
    fn a_score_exactly_at_the_threshold_is_kept() {
        let anchors = [Anchor {
            y: 0.5,
            x: 0.5,
            h: 0.1,
            w: 0.1,
        }];
        let ids = BTreeMap::from([(Class::Person, 1)]);
        let mins = BTreeMap::from([(Class::Person, 0.5)]);
        let mut out = Vec::new();
        decode_ssd(
            &[0.0; 4],
            &[0.0, 0.0],
            2,
            &anchors,
            &raw_params(),
            &ClassMap::new(&ids, &mins),
            &mut out,
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn nms_suppresses_overlaps_within_a_class_only() {
        let mut boxes = vec![
            candidate(Class::Person, 0.6, [0.0, 0.0, 0.5, 0.5]),
            candidate(Class::Person, 0.9, [0.02, 0.02, 0.52, 0.52]),
            candidate(Class::Car, 0.7, [0.0, 0.0, 0.5, 0.5]),
            candidate(Class::Person, 0.5, [0.6, 0.6, 0.9, 0.9]),
        ];
        nms_per_class(&mut boxes, 0.5, 10);
        let kept: Vec<(Class, f32)> = boxes.iter().map(|c| (c.class, c.score)).collect();
        assert_eq!(
            kept,
            [
                (Class::Person, 0.9),
                (Class::Car, 0.7),
                (Class::Person, 0.5)
            ]
        );
        nms_per_class(&mut boxes, 0.5, 2);
        assert_eq!(boxes.len(), 2);
    }

    #[test]
    fn boxes_map_back_to_frame_pixels_through_stretch_and_letterbox() {
        let c = candidate(Class::Car, 0.9, [0.25, 0.5, 0.75, 1.0]);
        let stretched = Geometry::stretched(768, 576);
        assert_eq!(stretched.to_pixels(&c), [384.0, 144.0, 768.0, 432.0]);

        // 768x576 into 300x300: 300x225, 37 rows of padding above.
        let (boxed, place) = Geometry::letterboxed(768, 576, 300, 300);
        assert_eq!(place, [0, 37, 300, 225]);
        let full = candidate(Class::Car, 0.9, [37.0 / 300.0, 0.0, 262.0 / 300.0, 1.0]);
        let px = boxed.to_pixels(&full);
        for (got, want) in px.iter().zip([0.0, 0.0, 768.0, 576.0]) {
            assert!((got - want).abs() < 1e-3, "{px:?}");
        }
        // Boxes reaching into the padding are clamped to the frame.
        let over = candidate(Class::Car, 0.9, [0.0, -0.1, 1.0, 1.1]);
        assert_eq!(boxed.to_pixels(&over), [0.0, 0.0, 768.0, 576.0]);
    }
}
