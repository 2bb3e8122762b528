//! Plain scalar conversion, written for clarity rather than speed: the
//! oracle the fast path is tested against and the baseline it is
//! benchmarked against. JPEG goes through the `image` crate's decoder, a
//! different implementation from the fast path's.

use super::{ConvertError, RgbImage};
use crate::capture::{FrameRef, PixelFormat, YuvEncoding};

/// One YUV sample to RGB with the textbook equations.
pub fn yuv_to_rgb(y: u8, u: u8, v: u8, yuv: YuvEncoding) -> [u8; 3] {
    let (kr, kb) = if yuv.bt709 {
        (0.2126, 0.0722)
    } else {
        (0.299, 0.114)
    };
    let kg = 1.0 - kr - kb;
    let (y, u, v) = if yuv.full_range {
        (f32::from(y), f32::from(u) - 128.0, f32::from(v) - 128.0)
    } else {
        (
            (f32::from(y) - 16.0) * 255.0 / 219.0,
            (f32::from(u) - 128.0) * 255.0 / 224.0,
            (f32::from(v) - 128.0) * 255.0 / 224.0,
        )
    };
    let r = y + 2.0 * (1.0 - kr) * v;
    let b = y + 2.0 * (1.0 - kb) * u;
    let g = (y - kr * r - kb * b) / kg;
    let q = |c: f32| c.round().clamp(0.0, 255.0) as u8;
    [q(r), q(g), q(b)]
}

/// Converts any supported frame to full-size RGB, one pixel at a time.
pub fn to_rgb(frame: &FrameRef<'_>) -> Result<RgbImage, ConvertError> {
    let l = frame.layout;
    let (w, h, s) = (l.width as usize, l.height as usize, l.stride as usize);
    if l.format == PixelFormat::Mjpeg {
        let decoded = image::load_from_memory_with_format(frame.data, image::ImageFormat::Jpeg)
            .map_err(|e| ConvertError::Jpeg(e.to_string()))?
            .to_rgb8();
        return Ok(RgbImage {
            width: decoded.width(),
            height: decoded.height(),
            data: decoded.into_raw(),
        });
    }
    super::check_len(frame)?;
    let d = frame.data;
    let mut out = RgbImage::new(l.width, l.height);
    for y in 0..h {
        for x in 0..w {
            let px = match l.format {
                PixelFormat::Yuyv => {
                    let pair = y * s + (x / 2) * 4;
                    let luma = d[pair + if x % 2 == 0 { 0 } else { 2 }];
                    yuv_to_rgb(luma, d[pair + 1], d[pair + 3], l.yuv)
                }
                PixelFormat::Nv12 => {
                    let uv = s * h + (y / 2) * s + (x / 2) * 2;
                    yuv_to_rgb(d[y * s + x], d[uv], d[uv + 1], l.yuv)
                }
                PixelFormat::Grey => yuv_to_rgb(d[y * s + x], 128, 128, l.yuv),
                PixelFormat::Rgb24 => {
                    [d[y * s + x * 3], d[y * s + x * 3 + 1], d[y * s + x * 3 + 2]]
                }
                PixelFormat::Mjpeg => unreachable!("handled above"),
            };
            let at = (y * w + x) * 3;
            out.data[at..at + 3].copy_from_slice(&px);
        }
    }
    Ok(out)
}

/// Area-averaging resize: each output pixel is the mean of the source
/// pixels its footprint covers (weighted at the edges). Slow and exact.
pub fn resize(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    let mut out = RgbImage::new(width, height);
    let sx = f64::from(src.width) / f64::from(width);
    let sy = f64::from(src.height) / f64::from(height);
    for oy in 0..height {
        let (y0, y1) = (f64::from(oy) * sy, f64::from(oy + 1) * sy);
        for ox in 0..width {
            let (x0, x1) = (f64::from(ox) * sx, f64::from(ox + 1) * sx);
            let mut acc = [0.0f64; 3];
            let mut total = 0.0;
            let mut iy = y0.floor() as u32;
            while f64::from(iy) < y1 && iy < src.height {
                let wy = (y1.min(f64::from(iy + 1)) - y0.max(f64::from(iy))).max(0.0);
                let mut ix = x0.floor() as u32;
                while f64::from(ix) < x1 && ix < src.width {
                    let wx = (x1.min(f64::from(ix + 1)) - x0.max(f64::from(ix))).max(0.0);
                    let p = src.pixel(ix, iy);
                    for (sum, value) in acc.iter_mut().zip(p) {
                        *sum += f64::from(value) * wx * wy;
                    }
                    total += wx * wy;
                    ix += 1;
                }
                iy += 1;
            }
            let at = (oy as usize * width as usize + ox as usize) * 3;
            for (dst, sum) in out.data[at..at + 3].iter_mut().zip(acc) {
                *dst = (sum / total).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}
