//! Privacy masks: polygons of the picture (windows, doorways, private
//! property) that are blanked in every frame as it leaves the capture
//! thread, so motion gating, detection and any image written never see
//! what is behind them.
//!
//! A [`Masker`] turns the polygons into spans of pixels per row for the
//! frame's size (once per size), then fills those spans in the frame's own
//! pixel format: black luma and neutral chroma for YUYV, NV12 and GREY,
//! black for RGB. A compressed (MJPEG) frame cannot be filled in place: it
//! is decoded to RGB at full size, filled, and handed on as an RGB frame.
//! A frame that cannot be filled (truncated, undecodable) is an error: the
//! caller drops it rather than pass it on unmasked.
//!
//! A pixel is masked when its centre is inside a polygon by the same
//! even-odd rule as [`crate::analytics::geometry::inside`], which also
//! decides ([`covers`]) whether a detection's foot point falls in a mask.

use crate::analytics::geometry::{inside, Point};
use crate::capture::{FrameLayout, FrameRef, PixelFormat};
use crate::convert::{ConvertError, Converter, RgbImage};

/// `[[privacy.masks]]`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    /// Name shown on snapshots (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Corners in frame pixels, at least three, in order.
    pub polygon: Vec<Point>,
}

/// Whether `p` (a detection's foot point) lies in any of the masks.
pub fn covers(masks: &[Mask], p: Point) -> bool {
    masks.iter().any(|m| inside(&m.polygon, p))
}

/// Errors of masking; the frame is dropped, never passed on unmasked.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    /// Undecodable, or fewer bytes than its layout needs.
    #[error("cannot mask the frame: {0}")]
    Convert(#[from] ConvertError),
}

/// The masked pixels of one frame size: per row, sorted disjoint
/// half-open spans `[x0, x1)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Raster {
    pub width: u32,
    pub height: u32,
    pub rows: Vec<Vec<(u32, u32)>>,
}

impl Raster {
    /// The spans of `masks` on a `width` × `height` frame.
    pub fn new(masks: &[Mask], width: u32, height: u32) -> Raster {
        let mut rows = Vec::with_capacity(height as usize);
        let mut crossings = Vec::new();
        for y in 0..height {
            let centre = y as f32 + 0.5;
            let mut spans: Vec<(u32, u32)> = Vec::new();
            for mask in masks {
                crossings.clear();
                let polygon = &mask.polygon;
                let mut j = polygon.len().wrapping_sub(1);
                for i in 0..polygon.len() {
                    let (a, b) = (polygon[i], polygon[j]);
                    if (a[1] > centre) != (b[1] > centre) {
                        crossings.push(a[0] + (centre - a[1]) / (b[1] - a[1]) * (b[0] - a[0]));
                    }
                    j = i;
                }
                crossings.sort_by(f32::total_cmp);
                // A pixel centre x + 0.5 is inside when it lies in
                // [c0, c1), [c2, c3), ... of the sorted crossings.
                for pair in crossings.chunks_exact(2) {
                    let first = column(pair[0], width);
                    let end = column(pair[1], width);
                    if first < end {
                        spans.push((first, end));
                    }
                }
            }
            rows.push(merge(spans));
        }
        Raster {
            width,
            height,
            rows,
        }
    }

    /// Whether the pixel (x, y) is masked.
    #[cfg(test)]
    pub fn masked(&self, x: u32, y: u32) -> bool {
        self.rows
            .get(y as usize)
            .is_some_and(|spans| spans.iter().any(|&(a, b)| a <= x && x < b))
    }

    /// How many pixels are masked.
    pub fn area(&self) -> u64 {
        self.rows
            .iter()
            .flatten()
            .map(|&(a, b)| u64::from(b - a))
            .sum()
    }
}

/// The first pixel column whose centre is at or right of `x`, within the frame.
fn column(x: f32, width: u32) -> u32 {
    let c = (x - 0.5).ceil();
    if c <= 0.0 {
        0
    } else if c >= width as f32 {
        width
    } else {
        c as u32
    }
}

/// Sorted, disjoint spans covering the same pixels as `spans`.
fn merge(mut spans: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    spans.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(spans.len());
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// `data` as a frame of `layout` (its sequence and time do not matter here).
fn as_frame(data: &[u8], layout: FrameLayout) -> FrameRef<'_> {
    FrameRef {
        data,
        layout,
        sequence: 0,
        timestamp: std::time::Duration::ZERO,
        stream: 0,
    }
}

/// Fills the masks in frames, keeping its raster and decoding buffers
/// from frame to frame.
pub struct Masker {
    masks: Vec<Mask>,
    raster: Raster,
    converter: Converter,
}

impl Masker {
    /// A masker for `masks`, or `None` when there are none.
    pub fn new(masks: &[Mask]) -> Option<Masker> {
        (!masks.is_empty()).then(|| Masker {
            masks: masks.to_vec(),
            raster: Raster::default(),
            converter: Converter::new(),
        })
    }

    fn raster(&mut self, width: u32, height: u32) -> &Raster {
        if (self.raster.width, self.raster.height) != (width, height) || self.raster.rows.is_empty()
        {
            self.raster = Raster::new(&self.masks, width, height);
            for mask in &self.masks {
                if Raster::new(std::slice::from_ref(mask), width, height).area() == 0 {
                    tracing::warn!(
                        mask = %mask.name,
                        "privacy mask {:?} covers no pixel of the {width}x{height} frames: check its corners against the camera's size",
                        mask.name
                    );
                }
            }
        }
        &self.raster
    }

    /// Fills the masks in a frame's bytes, in place; an MJPEG frame becomes
    /// an RGB frame (`data` and `layout` both change).
    pub fn apply(&mut self, data: &mut Vec<u8>, layout: &mut FrameLayout) -> Result<(), MaskError> {
        if layout.format == PixelFormat::Mjpeg {
            // The decoder returns a new buffer; it replaces the JPEG's bytes.
            let mut rgb = RgbImage::default();
            self.converter.to_rgb(&as_frame(data, *layout), &mut rgb)?;
            *layout = FrameLayout {
                format: PixelFormat::Rgb24,
                width: rgb.width,
                height: rgb.height,
                stride: rgb.width * 3,
                yuv: layout.yuv,
            };
            *data = rgb.data;
        }
        let FrameLayout {
            format,
            width,
            height,
            stride,
            yuv,
        } = *layout;
        crate::convert::check_len(&as_frame(data, *layout))?;
        let black = if yuv.full_range { 0 } else { 16 };
        let stride = stride as usize;
        let raster = self.raster(width, height);
        for (y, spans) in raster.rows.iter().enumerate() {
            let row = &mut data[y * stride..(y + 1) * stride];
            for &(a, b) in spans {
                let (a, b) = (a as usize, b as usize);
                match format {
                    PixelFormat::Rgb24 => row[a * 3..b * 3].fill(0),
                    PixelFormat::Grey | PixelFormat::Nv12 => row[a..b].fill(black),
                    PixelFormat::Yuyv => {
                        // Luma of each pixel; the chroma of every pair the
                        // span touches (never less than the mask). An odd
                        // width's last pair may have no room for its V.
                        for x in a..b {
                            row[2 * x] = black;
                        }
                        for pair in a / 2..b.div_ceil(2) {
                            for at in [4 * pair + 1, 4 * pair + 3] {
                                if let Some(v) = row.get_mut(at) {
                                    *v = 128;
                                }
                            }
                        }
                    }
                    PixelFormat::Mjpeg => unreachable!("decoded above"),
                }
            }
        }
        if format == PixelFormat::Nv12 {
            // Interleaved UV at half resolution after the luma plane: every
            // chroma sample that covers a masked pixel becomes neutral.
            let chroma = &mut data[stride * height as usize..];
            for (y, spans) in raster.rows.iter().enumerate() {
                let row = &mut chroma[(y / 2) * stride..(y / 2 + 1) * stride];
                for &(a, b) in spans {
                    for pair in a as usize / 2..(b as usize).div_ceil(2) {
                        for at in [2 * pair, 2 * pair + 1] {
                            if let Some(v) = row.get_mut(at) {
                                *v = 128;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::YuvEncoding;

    fn mask(polygon: &[Point]) -> Mask {
        Mask {
            name: "m".into(),
            polygon: polygon.to_vec(),
        }
    }

    fn layout(format: PixelFormat, width: u32, height: u32) -> FrameLayout {
        FrameLayout {
            format,
            width,
            height,
            stride: format.packed_stride(width).unwrap_or(0),
            yuv: YuvEncoding::default(),
        }
    }

    #[test]
    fn the_raster_masks_exactly_the_pixels_whose_centre_is_inside() {
        // Small pseudo-random polygons, convex or not, partly outside.
        let mut seed = 0x2545_f491_u32;
        let mut next = |range: f32| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed % 10_000) as f32 / 10_000.0 * range - 4.0
        };
        for _ in 0..200 {
            let corners = 3 + (next(10.0).abs() as usize % 5);
            let polygon: Vec<Point> = (0..corners).map(|_| [next(40.0), next(30.0)]).collect();
            let masks = [mask(&polygon)];
            let raster = Raster::new(&masks, 32, 24);
            for y in 0..24 {
                for x in 0..32 {
                    let centre = [x as f32 + 0.5, y as f32 + 0.5];
                    assert_eq!(
                        raster.masked(x, y),
                        covers(&masks, centre),
                        "pixel ({x}, {y}) of {polygon:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn overlapping_masks_are_merged_and_clipped_to_the_frame() {
        let masks = [
            mask(&[[-10.0, -10.0], [4.0, -10.0], [4.0, 2.0], [-10.0, 2.0]]),
            mask(&[[2.0, 0.0], [100.0, 0.0], [100.0, 1.0], [2.0, 1.0]]),
        ];
        let raster = Raster::new(&masks, 8, 4);
        assert_eq!(raster.rows[0], vec![(0, 8)]);
        assert_eq!(raster.rows[1], vec![(0, 4)]);
        assert!(raster.rows[2].is_empty());
        assert_eq!(raster.area(), 12);
    }

    /// A 6×4 frame of `format` with every byte 200, masked by the square
    /// covering pixels x 1..3, y 1..3.
    fn masked_frame(format: PixelFormat) -> (Vec<u8>, FrameLayout) {
        let mut layout = layout(format, 6, 4);
        let mut data = vec![200; format.frame_len(layout.stride, 4).unwrap()];
        let mut masker = Masker::new(&[mask(&[[1.0, 1.0], [3.0, 1.0], [3.0, 3.0], [1.0, 3.0]])])
            .expect("one mask");
        masker.apply(&mut data, &mut layout).unwrap();
        (data, layout)
    }

    #[test]
    fn rgb_and_grey_frames_are_black_inside_and_untouched_outside() {
        let (rgb, _) = masked_frame(PixelFormat::Rgb24);
        for y in 0..4 {
            for x in 0..6 {
                let inside = (1..3).contains(&x) && (1..3).contains(&y);
                let px = &rgb[(y * 6 + x) * 3..][..3];
                assert_eq!(px, if inside { [0; 3] } else { [200; 3] }, "({x}, {y})");
            }
        }
        let (grey, _) = masked_frame(PixelFormat::Grey);
        assert_eq!(&grey[6..12], &[200, 16, 16, 200, 200, 200]);
        assert_eq!(&grey[0..6], &[200; 6]);
    }

    #[test]
    fn yuyv_frames_get_black_luma_and_neutral_chroma_for_each_touched_pair() {
        let (data, _) = masked_frame(PixelFormat::Yuyv);
        // Row 1: pixels 1 and 2 masked; pairs 0 (pixels 0-1) and 1 (2-3).
        let row = &data[12..24];
        assert_eq!(
            row,
            &[200, 128, 16, 128, 16, 128, 200, 128, 200, 200, 200, 200]
        );
        assert_eq!(&data[0..12], &[200; 12]);
    }

    #[test]
    fn nv12_frames_get_black_luma_and_neutral_chroma_below_the_mask() {
        let (data, _) = masked_frame(PixelFormat::Nv12);
        assert_eq!(&data[6..12], &[200, 16, 16, 200, 200, 200]);
        let chroma = &data[24..];
        // Chroma rows 0 (luma rows 0-1) and 1 (rows 2-3); pairs 0 and 1.
        assert_eq!(&chroma[0..6], &[128, 128, 128, 128, 200, 200]);
        assert_eq!(&chroma[6..12], &[128, 128, 128, 128, 200, 200]);
    }

    #[test]
    fn an_mjpeg_frame_becomes_a_masked_rgb_frame() {
        let mut jpeg = Vec::new();
        let grey = image::RgbImage::from_pixel(16, 8, image::Rgb([180, 180, 180]));
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode_image(&grey)
            .unwrap();
        let mut layout = FrameLayout {
            format: PixelFormat::Mjpeg,
            width: 16,
            height: 8,
            stride: 0,
            yuv: YuvEncoding::default(),
        };
        let mut masker =
            Masker::new(&[mask(&[[0.0, 0.0], [8.0, 0.0], [8.0, 8.0], [0.0, 8.0]])]).unwrap();
        masker.apply(&mut jpeg, &mut layout).unwrap();
        assert_eq!(layout.format, PixelFormat::Rgb24);
        assert_eq!((layout.stride, jpeg.len()), (48, 16 * 8 * 3));
        for y in 0..8 {
            assert_eq!(&jpeg[y * 48..y * 48 + 24], &[0; 24]);
            assert!(jpeg[y * 48 + 24..(y + 1) * 48].iter().all(|&v| v > 150));
        }
        // A second frame reuses the buffers.
        let mut again = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut again, 95)
            .encode_image(&grey)
            .unwrap();
        layout.format = PixelFormat::Mjpeg;
        masker.apply(&mut again, &mut layout).unwrap();
        assert_eq!(&again[..24], &[0; 24]);
    }

    #[test]
    fn padded_rows_odd_widths_and_full_range_are_filled_within_each_row() {
        let square = [[0.0, 0.0], [5.0, 0.0], [5.0, 3.0], [0.0, 3.0]];
        let mut masker = Masker::new(&[mask(&square)]).unwrap();
        // YUYV, 5 pixels wide (10 bytes) in rows of 12: the last pair's V
        // lies in the padding; the next row starts untouched at byte 12.
        let mut yuyv = FrameLayout {
            stride: 12,
            ..layout(PixelFormat::Yuyv, 5, 3)
        };
        let mut data = vec![200; 36];
        masker.apply(&mut data, &mut yuyv).unwrap();
        assert_eq!(&data[..10], &[16, 128, 16, 128, 16, 128, 16, 128, 16, 128]);
        assert_eq!(&data[10..12], &[200, 128], "no sixth pixel; the pair's V");
        assert_eq!(&data[12..14], &[16, 128]);
        // NV12, 5 wide in rows of 6, 3 high: chroma rows 0 and 1.
        let mut nv12 = FrameLayout {
            stride: 6,
            ..layout(PixelFormat::Nv12, 5, 3)
        };
        let mut data = vec![200; 6 * 3 + 6 * 2];
        masker.apply(&mut data, &mut nv12).unwrap();
        assert_eq!(&data[..6], &[16, 16, 16, 16, 16, 200]);
        assert_eq!(&data[18..30], &[128; 12]);
        // NV12 with an odd width and no padding: the last chroma pair is
        // cut short, not written past the row.
        let mut tight = layout(PixelFormat::Nv12, 5, 2);
        let mut data = vec![200; 5 * 2 + 5];
        masker.apply(&mut data, &mut tight).unwrap();
        assert_eq!(&data[10..15], &[128; 5]);
        // Full-range grey is black at 0.
        let mut grey = FrameLayout {
            yuv: YuvEncoding {
                full_range: true,
                ..YuvEncoding::default()
            },
            ..layout(PixelFormat::Grey, 6, 3)
        };
        let mut data = vec![200; 18];
        masker.apply(&mut data, &mut grey).unwrap();
        assert_eq!(&data[..6], &[0, 0, 0, 0, 0, 200]);
    }

    #[test]
    fn a_frame_that_cannot_be_masked_is_an_error_not_passed_on() {
        let mut masker = Masker::new(&[mask(&[[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])]).unwrap();
        let mut layout = layout(PixelFormat::Yuyv, 6, 4);
        let mut short = vec![0; 10];
        let err = masker.apply(&mut short, &mut layout).unwrap_err();
        assert!(err.to_string().contains("has 10 bytes, needs 48"), "{err}");
        let mut broken = vec![0xff, 0xd8, 0x00];
        let mut layout = FrameLayout {
            format: PixelFormat::Mjpeg,
            ..layout
        };
        assert!(masker.apply(&mut broken, &mut layout).is_err());
        assert!(Masker::new(&[]).is_none());
    }
}
