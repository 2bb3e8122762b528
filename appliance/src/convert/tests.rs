use super::*;
use crate::capture::{FrameLayout, FrameRef};
use std::time::Duration;

/// A smooth, colourful test card: gradients in R and G, B from both.
fn card(width: u32, height: u32) -> RgbImage {
    let mut img = RgbImage::new(width, height);
    for y in 0..height {
        for x in 0..width {
            let at = ((y * width + x) * 3) as usize;
            img.data[at] = (x * 255 / (width - 1)) as u8;
            img.data[at + 1] = (y * 255 / (height - 1)) as u8;
            img.data[at + 2] = ((x + y) * 255 / (width + height - 2)) as u8;
        }
    }
    img
}

/// BT.601 limited-range encoding of one RGB pixel.
fn rgb_to_yuv([r, g, b]: [u8; 3]) -> (u8, u8, u8) {
    let (r, g, b) = (f32::from(r), f32::from(g), f32::from(b));
    let y = 0.299 * r + 0.587 * g + 0.114 * b;
    let u = (b - y) / 1.772;
    let v = (r - y) / 1.402;
    let q = |c: f32| c.round().clamp(0.0, 255.0) as u8;
    (
        q(16.0 + y * 219.0 / 255.0),
        q(128.0 + u * 224.0 / 255.0),
        q(128.0 + v * 224.0 / 255.0),
    )
}

fn encode(img: &RgbImage, format: PixelFormat, stride: u32) -> Vec<u8> {
    let (w, h, s) = (img.width as usize, img.height as usize, stride as usize);
    let mut out = vec![0u8; format.frame_len(stride, img.height).unwrap()];
    for y in 0..h {
        for x in 0..w {
            let p = img.pixel(x as u32, y as u32);
            let (yy, u, v) = rgb_to_yuv(p);
            match format {
                PixelFormat::Yuyv => {
                    let pair = y * s + (x / 2) * 4;
                    out[pair + if x % 2 == 0 { 0 } else { 2 }] = yy;
                    if x % 2 == 0 {
                        out[pair + 1] = u;
                        out[pair + 3] = v;
                    }
                }
                PixelFormat::Nv12 => {
                    out[y * s + x] = yy;
                    if x % 2 == 0 && y % 2 == 0 {
                        let uv = s * h + (y / 2) * s + x;
                        out[uv] = u;
                        out[uv + 1] = v;
                    }
                }
                PixelFormat::Grey => out[y * s + x] = yy,
                PixelFormat::Rgb24 => out[y * s + x * 3..y * s + x * 3 + 3].copy_from_slice(&p),
                PixelFormat::Mjpeg => unreachable!(),
            }
        }
    }
    out
}

fn frame(data: &[u8], format: PixelFormat, width: u32, height: u32, stride: u32) -> FrameRef<'_> {
    FrameRef {
        data,
        layout: FrameLayout {
            format,
            width,
            height,
            stride,
            yuv: YuvEncoding::default(),
        },
        sequence: 0,
        timestamp: Duration::ZERO,
        stream: 0,
    }
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

fn mean_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn every_raw_format_converts_like_the_reference_even_with_padded_rows() {
    let img = card(64, 48);
    for format in [
        PixelFormat::Yuyv,
        PixelFormat::Nv12,
        PixelFormat::Grey,
        PixelFormat::Rgb24,
    ] {
        for pad in [0, 32] {
            let stride = format.packed_stride(64).unwrap() + pad;
            let data = encode(&img, format, stride);
            let f = frame(&data, format, 64, 48, stride);
            let mut fast = RgbImage::default();
            Converter::new().to_rgb(&f, &mut fast).unwrap();
            let slow = reference::to_rgb(&f).unwrap();
            assert_eq!((fast.width, fast.height), (64, 48));
            let diff = max_diff(&fast.data, &slow.data);
            assert!(diff <= 3, "{format} pad {pad}: max difference {diff}");
        }
    }
}

#[test]
fn yuv_round_trip_lands_near_the_original_colours() {
    let img = card(64, 48);
    let data = encode(&img, PixelFormat::Yuyv, 128);
    let mut out = RgbImage::default();
    Converter::new()
        .to_rgb(&frame(&data, PixelFormat::Yuyv, 64, 48, 128), &mut out)
        .unwrap();
    // 4:2:2 halves chroma horizontally; the card's gradients are gentle.
    assert!(mean_diff(&out.data, &img.data) < 3.0);
    assert_eq!(
        out.pixel(0, 0),
        [0, 0, 0].map(|c: u8| c),
        "black stays black"
    );
}

#[test]
fn mjpeg_decodes_like_an_independent_decoder_and_scales() {
    let img = card(160, 120);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode(&img.data, 160, 120, image::ExtendedColorType::Rgb8)
        .unwrap();
    let f = frame(&jpeg, PixelFormat::Mjpeg, 160, 120, 0);
    let mut fast = RgbImage::default();
    let mut conv = Converter::new();
    conv.to_rgb(&f, &mut fast).unwrap();
    let slow = reference::to_rgb(&f).unwrap();
    assert!(mean_diff(&fast.data, &slow.data) < 1.5);
    assert!(mean_diff(&fast.data, &img.data) < 4.0);

    let mut small = vec![0; 40 * 30 * 3];
    conv.to_rgb_scaled(&f, 40, 30, &mut small).unwrap();
    let expected = reference::resize(&slow, 40, 30);
    assert!(mean_diff(&small, &expected.data) < 3.0);
}

#[test]
fn scaling_matches_area_averaging_for_every_format() {
    let img = card(128, 96);
    let mut conv = Converter::new();
    for format in [
        PixelFormat::Yuyv,
        PixelFormat::Nv12,
        PixelFormat::Grey,
        PixelFormat::Rgb24,
    ] {
        let stride = format.packed_stride(128).unwrap() + 6;
        let data = encode(&img, format, stride);
        let f = frame(&data, format, 128, 96, stride);
        let mut out = vec![0; 30 * 30 * 3];
        conv.to_rgb_scaled(&f, 30, 30, &mut out).unwrap();
        let expected = reference::resize(&reference::to_rgb(&f).unwrap(), 30, 30);
        let diff = mean_diff(&out, &expected.data);
        assert!(diff < 2.0, "{format}: mean difference {diff}");
    }
}

#[test]
fn a_short_frame_is_an_error_naming_format_and_size() {
    let data = vec![0u8; 100];
    let err = Converter::new()
        .to_rgb(
            &frame(&data, PixelFormat::Yuyv, 64, 48, 128),
            &mut RgbImage::default(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "YUYV frame 64x48 (stride 128) has 100 bytes, needs 6144"
    );
    let mut out = vec![0; 10 * 10 * 3];
    let err = Converter::new()
        .to_rgb_scaled(
            &frame(&data, PixelFormat::Mjpeg, 64, 48, 0),
            10,
            10,
            &mut out,
        )
        .unwrap_err();
    assert!(
        err.to_string().starts_with("MJPEG frame cannot be decoded"),
        "{err}"
    );
}

#[test]
fn a_wrong_output_size_is_refused() {
    let img = card(32, 32);
    let data = encode(&img, PixelFormat::Rgb24, 96);
    let mut out = vec![0; 7];
    let err = Converter::new()
        .to_rgb_scaled(
            &frame(&data, PixelFormat::Rgb24, 32, 32, 96),
            10,
            10,
            &mut out,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot scale to 10x10: output holds 7 bytes"
    );
}

#[test]
fn an_mjpeg_frame_of_another_size_than_negotiated_is_refused() {
    let img = card(64, 48);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode(&img.data, 64, 48, image::ExtendedColorType::Rgb8)
        .unwrap();
    let err = Converter::new()
        .to_rgb(
            &frame(&jpeg, PixelFormat::Mjpeg, 640, 480, 0),
            &mut RgbImage::default(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MJPEG frame cannot be decoded: frame is 64x48, the camera negotiated 640x480"
    );
}

/// Found by fuzzing (fuzz/regressions/convert/rgb3-zero-width): a frame of
/// width 0 has a stride of 0, and the RGB3 copy split its rows into chunks
/// of 0 bytes, which panics. A driver's layout must not crash the pipeline.
#[test]
fn a_frame_without_pixels_is_an_error_not_a_panic() {
    for (format, width, height) in [
        (PixelFormat::Rgb24, 0, 1),
        (PixelFormat::Rgb24, 1, 0),
        (PixelFormat::Yuyv, 0, 4),
        (PixelFormat::Nv12, 0, 4),
        (PixelFormat::Grey, 4, 0),
    ] {
        let stride = format.packed_stride(width).unwrap();
        let data = vec![0u8; format.frame_len(stride, height).unwrap()];
        let f = frame(&data, format, width, height, stride);
        let err = Converter::new()
            .to_rgb(&f, &mut RgbImage::default())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot convert {format} frame {width}x{height}: the frame has no pixels")
        );
        let mut out = vec![0; 4 * 4 * 3];
        assert!(Converter::new().to_rgb_scaled(&f, 4, 4, &mut out).is_err());
    }
}
