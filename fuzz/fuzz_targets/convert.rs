//! Frame conversion of every pixel format the capture supports (YUYV, NV12,
//! RGB3, GREY, MJPEG), at arbitrary sizes, strides and encodings, whole,
//! truncated or corrupt, at full size and scaled to a model's input.
//!
//! The first 12 bytes describe the frame; the rest is its data:
//!
//! | byte | meaning |
//! |------|---------|
//! | 0    | pixel format (`PixelFormat::ALL[b % 5]`) |
//! | 1    | flags: 1 BT.709, 2 full range, 4 fill the frame by repeating the data, 8 take an MJPEG frame's size from its header, 16 stride below the packed stride |
//! | 2-3  | width, 0 to 2048 (little-endian, modulo 2049) |
//! | 4-5  | height, 0 to 2048 |
//! | 6    | stride padding in bytes |
//! | 7    | bytes cut from the end of a filled frame |
//! | 8-9  | scaled width, 0 to 640 |
//! | 10-11| scaled height, 0 to 640 |
//!
//! Properties: no panic; a frame converted at full size is `width x height`
//! RGB; a scaled one fills its output; raw formats agree with the plain
//! scalar reference (`convert::reference`) within a few levels (samples in
//! their legal range; AddressSanitizer watches the SIMD code's memory).

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use luciole::capture::{FrameLayout, FrameRef, PixelFormat, YuvEncoding};
use luciole::convert::{reference, Converter, RgbImage};

/// Largest frame converted, in pixels (1920x1080 fits).
const MAX_PIXELS: u64 = 1 << 21;
/// Largest frame also converted by the slow reference, in pixels.
const MAX_REFERENCE_PIXELS: u64 = 1 << 14;

fuzz_target!(|input: &[u8]| {
    if input.len() < 12 {
        return;
    }
    let (head, data) = input.split_at(12);
    let word = |at: usize| u32::from(u16::from_le_bytes([head[at], head[at + 1]]));
    let format = PixelFormat::ALL[usize::from(head[0]) % PixelFormat::ALL.len()];
    let flags = head[1];
    let mut width = word(2) % 2049;
    let mut height = word(4) % 2049;
    let pad = u32::from(head[6]);
    let cut = usize::from(head[7]);
    let out_w = word(8) % 641;
    let out_h = word(10) % 641;
    if format == PixelFormat::Mjpeg && flags & 8 != 0 {
        // The size the camera negotiated is the header's, so decoding goes
        // past the size check.
        let mut decoder = jpeg_decoder::Decoder::new(data);
        if decoder.read_info().is_err() {
            return;
        }
        let Some(info) = decoder.info() else { return };
        width = u32::from(info.width);
        height = u32::from(info.height);
        if width > 2048 || height > 2048 {
            return;
        }
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return;
    }
    let stride = match format.packed_stride(width) {
        None => 0,
        Some(packed) if flags & 16 != 0 => packed.saturating_sub(pad.max(1)),
        Some(packed) => packed + pad,
    };
    let filled: Vec<u8>;
    let data = match format.frame_len(stride, height) {
        Some(len) if flags & 4 != 0 && !data.is_empty() => {
            filled = data
                .iter()
                .copied()
                .cycle()
                .take(len.saturating_sub(cut))
                .collect();
            &filled[..]
        }
        _ => data,
    };
    let yuv = YuvEncoding {
        bt709: flags & 1 != 0,
        full_range: flags & 2 != 0,
    };
    let frame = FrameRef {
        data,
        layout: FrameLayout {
            format,
            width,
            height,
            stride,
            yuv,
        },
        sequence: 0,
        timestamp: Duration::ZERO,
        stream: 0,
    };
    let mut converter = Converter::new();
    let mut full = RgbImage::default();
    if converter.to_rgb(&frame, &mut full).is_ok() {
        assert_eq!((full.width, full.height), (width, height), "{format}");
        assert_eq!(
            full.data.len(),
            width as usize * height as usize * 3,
            "{format}"
        );
        let pixels = u64::from(width) * u64::from(height);
        // yuvutils clamps limited-range samples outside their legal range
        // (luma below 16 reads as 16), the reference does not: compare
        // only frames whose samples are all legal, or full range ones.
        let legal = yuv.full_range
            || format == PixelFormat::Rgb24
            || data.iter().all(|b| (16..=240).contains(b));
        if format != PixelFormat::Mjpeg && pixels <= MAX_REFERENCE_PIXELS && legal {
            let slow = reference::to_rgb(&frame)
                .expect("the reference refuses a frame the fast path took");
            let (at, diff) = full
                .data
                .iter()
                .zip(&slow.data)
                .map(|(a, b)| a.abs_diff(*b))
                .enumerate()
                .max_by_key(|&(_, d)| d)
                .unwrap_or((0, 0));
            let (x, y) = (at / 3 % width as usize, at / 3 / width as usize);
            assert!(
                diff <= 4,
                "{format} {width}x{height} stride {stride}: pixel ({x}, {y}) is {:?}, the reference says {:?}",
                &full.data[at / 3 * 3..at / 3 * 3 + 3],
                &slow.data[at / 3 * 3..at / 3 * 3 + 3],
            );
        }
    }
    let mut out = vec![0u8; out_w as usize * out_h as usize * 3];
    let _ = converter.to_rgb_scaled(&frame, out_w, out_h, &mut out);
    // The same converter again: buffers reused from one frame to the next.
    let _ = converter.to_rgb(&frame, &mut full);
});
