//! Conversion benchmark: camera formats to a 300x300 RGB model input, on
//! frames of real footage (Debian opencv-doc's `vtest.avi`, re-encoded by
//! ffmpeg into each camera format and size).
//!
//! Run: `cargo bench --bench convert` (needs `tests/assets/fetch-footage`
//! to have fetched the footage, and ffmpeg). Prints median milliseconds per
//! frame for the shipped path and for references timed in the same run.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use std::process::Command;
use std::time::{Duration, Instant};

use luciole::capture::{FrameLayout, FrameRef, PixelFormat, YuvEncoding};
use luciole::convert::{reference, Converter, RgbImage};

const OUT: (u32, u32) = (300, 300);

/// Frame 200 of vtest.avi, scaled and encoded by ffmpeg.
fn ffmpeg_frame(width: u32, height: u32, args: &[&str]) -> Vec<u8> {
    let video = support::footage().join("vtest.avi");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(video)
        .args([
            "-vf",
            &format!("select=eq(n\\,200),scale={width}:{height}"),
            "-frames:v",
            "1",
        ])
        .args(args)
        .arg("-")
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn frame(data: &[u8], format: PixelFormat, width: u32, height: u32) -> FrameRef<'_> {
    FrameRef {
        data,
        layout: FrameLayout {
            format,
            width,
            height,
            stride: format.packed_stride(width).unwrap_or(0),
            yuv: YuvEncoding::default(),
        },
        sequence: 0,
        timestamp: Duration::ZERO,
        stream: 0,
    }
}

/// Median milliseconds of `f` over enough runs to fill about a second.
fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    let probe = Instant::now();
    f();
    let once = probe.elapsed().as_secs_f64().max(1e-6);
    let runs = ((1.0 / once) as usize).clamp(5, 400);
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// A plain, reasonably tight hand-written YUYV -> scaled RGB: fixed-point
/// BT.601 limited range, bilinear luma, nearest chroma, one pass with no
/// intermediate image. The yardstick for "a crate where it beats
/// hand-written code".
fn hand_yuyv_scaled(src: &[u8], w: u32, h: u32, out: &mut [u8], ow: u32, oh: u32) {
    let stride = w as usize * 2;
    let fx = (w as u64) << 16;
    let fy = (h as u64) << 16;
    for oy in 0..oh as usize {
        let sy = ((oy as u64 * 2 + 1) * fy / (2 * oh as u64)).saturating_sub(1 << 15);
        let (y0, wy) = ((sy >> 16) as usize, (sy & 0xffff) as i64);
        let y1 = (y0 + 1).min(h as usize - 1);
        for ox in 0..ow as usize {
            let sx = ((ox as u64 * 2 + 1) * fx / (2 * ow as u64)).saturating_sub(1 << 15);
            let (x0, wx) = ((sx >> 16) as usize, (sx & 0xffff) as i64);
            let x1 = (x0 + 1).min(w as usize - 1);
            let luma = |x: usize, y: usize| i64::from(src[y * stride + x * 2]);
            let top = luma(x0, y0) * (65536 - wx) + luma(x1, y0) * wx;
            let bottom = luma(x0, y1) * (65536 - wx) + luma(x1, y1) * wx;
            let yv = ((top >> 16) * (65536 - wy) + (bottom >> 16) * wy) >> 16;
            let pair = y0 * stride + (x0 / 2) * 4;
            let (u, v) = (
                i64::from(src[pair + 1]) - 128,
                i64::from(src[pair + 3]) - 128,
            );
            let c = (yv - 16) * 76309;
            let q = |x: i64| (x >> 16).clamp(0, 255) as u8;
            let at = (oy * ow as usize + ox) * 3;
            out[at] = q(c + 104597 * v);
            out[at + 1] = q(c - 25675 * u - 53279 * v);
            out[at + 2] = q(c + 132201 * u);
        }
    }
}

fn main() {
    let (ow, oh) = OUT;
    let mut out = vec![0u8; (ow * oh * 3) as usize];
    let mut converter = Converter::new();
    println!("conversion to {ow}x{oh} RGB, median ms per frame (frame 200 of vtest.avi)");
    println!(
        "{:<34} {:>9} {:>12} {:>9}",
        "case", "luciole", "reference", "ratio"
    );
    let row = |name: &str, ours: f64, reference: f64, what: &str| {
        println!(
            "{name:<34} {ours:>9.3} {reference:>12.3} {:>8.1}x  (reference: {what})",
            reference / ours
        );
    };

    // 640x480 YUYV
    let yuyv = ffmpeg_frame(640, 480, &["-f", "rawvideo", "-pix_fmt", "yuyv422"]);
    let f = frame(&yuyv, PixelFormat::Yuyv, 640, 480);
    let ours = median_ms(|| {
        converter
            .to_rgb_scaled(black_box(&f), ow, oh, &mut out)
            .unwrap()
    });
    let mut hand = vec![0u8; out.len()];
    let hand_ms = median_ms(|| hand_yuyv_scaled(black_box(&yuyv), 640, 480, &mut hand, ow, oh));
    row(
        "YUYV 640x480",
        ours,
        hand_ms,
        "hand-written fused fixed-point",
    );
    let scalar = median_ms(|| {
        black_box(reference::resize(&reference::to_rgb(&f).unwrap(), ow, oh));
    });
    row("YUYV 640x480", ours, scalar, "scalar float oracle");

    // 640x480 NV12 and GREY, 640x480 RGB24
    for (name, pix_fmt, format) in [
        ("NV12 640x480", "nv12", PixelFormat::Nv12),
        ("GREY 640x480", "gray", PixelFormat::Grey),
        ("RGB3 640x480", "rgb24", PixelFormat::Rgb24),
    ] {
        let data = ffmpeg_frame(640, 480, &["-f", "rawvideo", "-pix_fmt", pix_fmt]);
        let f = frame(&data, format, 640, 480);
        let ours = median_ms(|| {
            converter
                .to_rgb_scaled(black_box(&f), ow, oh, &mut out)
                .unwrap()
        });
        let scalar = median_ms(|| {
            black_box(reference::resize(&reference::to_rgb(&f).unwrap(), ow, oh));
        });
        row(name, ours, scalar, "scalar float oracle");
    }

    // 1280x720 MJPEG
    let jpeg = ffmpeg_frame(1280, 720, &["-c:v", "mjpeg", "-q:v", "3", "-f", "mjpeg"]);
    let f = frame(&jpeg, PixelFormat::Mjpeg, 1280, 720);
    let ours = median_ms(|| {
        converter
            .to_rgb_scaled(black_box(&f), ow, oh, &mut out)
            .unwrap()
    });
    let mut full = RgbImage::default();
    let full_decode = median_ms(|| {
        converter.to_rgb(black_box(&f), &mut full).unwrap();
        let scaled = frame(&full.data, PixelFormat::Rgb24, full.width, full.height);
        Converter::new()
            .to_rgb_scaled(&scaled, ow, oh, &mut out)
            .unwrap();
    });
    row(
        "MJPEG 1280x720",
        ours,
        full_decode,
        "full-size jpeg-decoder + resize",
    );
    let zune = median_ms(|| {
        let img = image::load_from_memory_with_format(black_box(&jpeg), image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8();
        let scaled = frame(img.as_raw(), PixelFormat::Rgb24, img.width(), img.height());
        Converter::new()
            .to_rgb_scaled(&scaled, ow, oh, &mut out)
            .unwrap();
    });
    row(
        "MJPEG 1280x720",
        ours,
        zune,
        "full-size zune-jpeg (image) + resize",
    );
    println!("(MJPEG frame: {} bytes)", jpeg.len());

    masks(&mut converter);
}

/// The privacy masks' cost on the capture thread: filling a mask over about
/// a quarter of the picture (two windows and a doorway), in each format, per
/// frame, against the conversion to the model's input timed in the same run
/// (the frame is copied first, as the capture thread's buffer is).
fn masks(converter: &mut Converter) {
    use luciole::privacy::mask::{Mask, Masker};
    let (ow, oh) = OUT;
    let mut out = vec![0u8; (ow * oh * 3) as usize];
    let polygon = |points: &[[f32; 2]]| points.to_vec();
    let masks = [
        Mask {
            name: "window-1".into(),
            polygon: polygon(&[[40.0, 30.0], [250.0, 30.0], [250.0, 170.0], [40.0, 170.0]]),
        },
        Mask {
            name: "window-2".into(),
            polygon: polygon(&[[380.0, 40.0], [600.0, 20.0], [610.0, 160.0], [390.0, 175.0]]),
        },
        Mask {
            name: "door".into(),
            polygon: polygon(&[
                [270.0, 200.0],
                [360.0, 200.0],
                [360.0, 420.0],
                [270.0, 420.0],
            ]),
        },
    ];
    let mut masker = Masker::new(&masks).expect("masks");
    println!();
    println!("privacy masks (about 25 % of the picture), median ms per frame");
    println!(
        "{:<34} {:>9} {:>12} {:>9}",
        "case", "mask", "convert", "share"
    );
    let mut cases: Vec<(&str, Vec<u8>, PixelFormat, u32, u32)> = Vec::new();
    for (name, pix_fmt, format) in [
        ("YUYV 640x480", "yuyv422", PixelFormat::Yuyv),
        ("NV12 640x480", "nv12", PixelFormat::Nv12),
        ("GREY 640x480", "gray", PixelFormat::Grey),
        ("RGB3 640x480", "rgb24", PixelFormat::Rgb24),
    ] {
        let data = ffmpeg_frame(640, 480, &["-f", "rawvideo", "-pix_fmt", pix_fmt]);
        cases.push((name, data, format, 640, 480));
    }
    let jpeg = ffmpeg_frame(640, 480, &["-c:v", "mjpeg", "-q:v", "3", "-f", "mjpeg"]);
    cases.push(("MJPEG 640x480", jpeg, PixelFormat::Mjpeg, 640, 480));
    for (name, data, format, width, height) in &cases {
        let f = frame(data, *format, *width, *height);
        let convert = median_ms(|| {
            converter
                .to_rgb_scaled(black_box(&f), ow, oh, &mut out)
                .unwrap()
        });
        let mut copy = Vec::with_capacity(data.len());
        let mask = median_ms(|| {
            copy.clear();
            copy.extend_from_slice(black_box(data));
            let mut layout = f.layout;
            masker.apply(&mut copy, &mut layout).unwrap();
        });
        println!(
            "{name:<34} {mask:>9.3} {convert:>12.3} {:>8.0}%  (of the conversion's time)",
            100.0 * mask / convert
        );
    }
}
