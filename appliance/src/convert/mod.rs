//! Pixel conversion: any supported camera format to packed RGB, at the
//! frame's own size or scaled to a model's input size.
//!
//! The fast path uses well-kept crates where they beat plain code
//! (`yuvutils-rs` SIMD colour conversion, `fast_image_resize` SIMD scaling,
//! `jpeg-decoder` with reduced-size IDCT for MJPEG); [`reference`] is plain
//! scalar code kept to check it and to benchmark against. A [`Converter`]
//! owns its scratch memory, so converting a stream allocates nothing per
//! frame once warmed up (MJPEG decoding excepted: the decoder returns a new
//! buffer, which becomes the output rather than being copied).

pub mod reference;

use fast_image_resize as fir;
use yuvutils_rs::{YuvRange, YuvStandardMatrix};

use crate::capture::{FrameRef, PixelFormat, YuvEncoding};

/// A packed 8-bit RGB image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, rows top to bottom.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// A black image.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            data: vec![0; width as usize * height as usize * 3],
        }
    }

    /// The pixel at (x, y).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let at = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[at], self.data[at + 1], self.data[at + 2]]
    }

    fn reshape(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        self.data.resize(width as usize * height as usize * 3, 0);
    }
}

/// Errors of conversion. They name the frame's format and size.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{format} frame {width}x{height} (stride {stride}) has {len} bytes, needs {needed}")]
    Short {
        format: PixelFormat,
        width: u32,
        height: u32,
        stride: u32,
        len: usize,
        needed: usize,
    },
    #[error("MJPEG frame cannot be decoded: {0}")]
    Jpeg(String),
    #[error("cannot convert {format} frame {width}x{height}: {reason}")]
    Other {
        format: PixelFormat,
        width: u32,
        height: u32,
        reason: String,
    },
    #[error("cannot scale to {width}x{height}: {reason}")]
    Scale {
        width: u32,
        height: u32,
        reason: String,
    },
}

/// Converts frames to RGB, reusing its buffers from frame to frame.
pub struct Converter {
    /// Full-size RGB of the current frame when the format is not RGB already.
    full: RgbImage,
    /// Rows of a padded RGB frame, made contiguous.
    unpadded: Vec<u8>,
    resizer: fir::Resizer,
    options: fir::ResizeOptions,
}

impl Default for Converter {
    fn default() -> Self {
        Self::new()
    }
}

impl Converter {
    pub fn new() -> Self {
        Self {
            full: RgbImage::default(),
            unpadded: Vec::new(),
            resizer: fir::Resizer::new(),
            // Bilinear with its support widened on downscale: no aliasing,
            // and cheap enough.
            options: fir::ResizeOptions::new()
                .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear)),
        }
    }

    /// Converts `frame` to RGB at its own size into `out`.
    pub fn to_rgb(&mut self, frame: &FrameRef<'_>, out: &mut RgbImage) -> Result<(), ConvertError> {
        let layout = frame.layout;
        if layout.format == PixelFormat::Mjpeg {
            *out = decode_jpeg(frame.data, (layout.width, layout.height), None)?;
            return Ok(());
        }
        check_len(frame)?;
        out.reshape(layout.width, layout.height);
        convert_raw(frame, &mut out.data, &mut self.unpadded)
    }

    /// Converts `frame` to RGB scaled to `width` x `height` (aspect ratio
    /// not kept) into `out`, which must hold `width * height * 3` bytes.
    pub fn to_rgb_scaled(
        &mut self,
        frame: &FrameRef<'_>,
        width: u32,
        height: u32,
        out: &mut [u8],
    ) -> Result<(), ConvertError> {
        let layout = frame.layout;
        let scale_err = |reason: String| ConvertError::Scale {
            width,
            height,
            reason,
        };
        if out.len() != width as usize * height as usize * 3 {
            return Err(scale_err(format!("output holds {} bytes", out.len())));
        }
        // Find full-size (or, for JPEG, reduced-size) RGB without copying
        // when the frame is RGB already.
        let (src_w, src_h, src): (u32, u32, &[u8]) = match layout.format {
            PixelFormat::Mjpeg => {
                self.full = decode_jpeg(
                    frame.data,
                    (layout.width, layout.height),
                    Some((width, height)),
                )?;
                (self.full.width, self.full.height, &self.full.data)
            }
            PixelFormat::Rgb24 => {
                check_len(frame)?;
                let row = layout.width as usize * 3;
                if layout.stride as usize == row {
                    (
                        layout.width,
                        layout.height,
                        &frame.data[..row * layout.height as usize],
                    )
                } else {
                    self.unpadded.clear();
                    for line in frame
                        .data
                        .chunks(layout.stride as usize)
                        .take(layout.height as usize)
                    {
                        self.unpadded.extend_from_slice(&line[..row]);
                    }
                    (layout.width, layout.height, &self.unpadded)
                }
            }
            _ => {
                check_len(frame)?;
                self.full.reshape(layout.width, layout.height);
                convert_raw(frame, &mut self.full.data, &mut self.unpadded)?;
                (layout.width, layout.height, &self.full.data)
            }
        };
        if (src_w, src_h) == (width, height) {
            out.copy_from_slice(src);
            return Ok(());
        }
        let src = fir::images::ImageRef::new(src_w, src_h, src, fir::PixelType::U8x3)
            .map_err(|e| scale_err(e.to_string()))?;
        let mut dst = fir::images::Image::from_slice_u8(width, height, out, fir::PixelType::U8x3)
            .map_err(|e| scale_err(e.to_string()))?;
        self.resizer
            .resize(&src, &mut dst, &self.options)
            .map_err(|e| scale_err(e.to_string()))
    }
}

/// Bytes an uncompressed frame must hold (and it must have pixels: the
/// copies below split rows by the stride, which is 0 for a width of 0).
/// Whether `frame` has pixels and as many bytes as its layout needs
/// (compressed frames: pixels only).
pub fn check_len(frame: &FrameRef<'_>) -> Result<(), ConvertError> {
    let l = frame.layout;
    if l.width == 0 || l.height == 0 {
        return Err(ConvertError::Other {
            format: l.format,
            width: l.width,
            height: l.height,
            reason: "the frame has no pixels".into(),
        });
    }
    let min_stride = l.format.packed_stride(l.width).unwrap_or(0);
    let needed = l.format.frame_len(l.stride, l.height).unwrap_or(0);
    if l.stride < min_stride || frame.data.len() < needed {
        return Err(ConvertError::Short {
            format: l.format,
            width: l.width,
            height: l.height,
            stride: l.stride,
            len: frame.data.len(),
            needed: needed.max(l.format.frame_len(min_stride, l.height).unwrap_or(0)),
        });
    }
    Ok(())
}

fn matrix(yuv: YuvEncoding) -> (YuvRange, YuvStandardMatrix) {
    let range = if yuv.full_range {
        YuvRange::Full
    } else {
        YuvRange::Limited
    };
    let matrix = if yuv.bt709 {
        YuvStandardMatrix::Bt709
    } else {
        YuvStandardMatrix::Bt601
    };
    (range, matrix)
}

/// A frame whose rows are padded, copied with tight rows into `scratch`:
/// `yuvutils-rs` refuses planes whose stride exceeds their width. Drivers
/// rarely pad at usual sizes, so the common path copies nothing.
fn unpad<'a>(frame: &FrameRef<'a>, scratch: &'a mut Vec<u8>) -> FrameRef<'a> {
    let l = frame.layout;
    let Some(tight) = l.format.packed_stride(l.width) else {
        return *frame;
    };
    if l.stride == tight || l.format == PixelFormat::Rgb24 {
        return *frame;
    }
    scratch.clear();
    let luma_rows = l.height as usize;
    let rows = match l.format {
        PixelFormat::Nv12 => luma_rows + luma_rows.div_ceil(2),
        _ => luma_rows,
    };
    for line in frame.data.chunks(l.stride as usize).take(rows) {
        scratch.extend_from_slice(&line[..tight as usize]);
    }
    FrameRef {
        data: scratch,
        layout: crate::capture::FrameLayout { stride: tight, ..l },
        ..*frame
    }
}

/// Uncompressed formats to full-size packed RGB (`out` is sized already).
fn convert_raw(
    frame: &FrameRef<'_>,
    out: &mut [u8],
    scratch: &mut Vec<u8>,
) -> Result<(), ConvertError> {
    let frame = &unpad(frame, scratch);
    let l = frame.layout;
    let (range, matrix) = matrix(l.yuv);
    let rgb_stride = l.width * 3;
    let fail = |reason: String| ConvertError::Other {
        format: l.format,
        width: l.width,
        height: l.height,
        reason,
    };
    let plane = l.stride as usize * l.height as usize;
    match l.format {
        PixelFormat::Yuyv => {
            let image = yuvutils_rs::YuvPackedImage {
                yuy: &frame.data[..plane],
                yuy_stride: l.stride,
                width: l.width,
                height: l.height,
            };
            yuvutils_rs::yuyv422_to_rgb(&image, out, rgb_stride, range, matrix)
                .map_err(|e| fail(e.to_string()))
        }
        PixelFormat::Nv12 => {
            let chroma = l.stride as usize * l.height.div_ceil(2) as usize;
            let image = yuvutils_rs::YuvBiPlanarImage {
                y_plane: &frame.data[..plane],
                y_stride: l.stride,
                uv_plane: &frame.data[plane..plane + chroma],
                uv_stride: l.stride,
                width: l.width,
                height: l.height,
            };
            yuvutils_rs::yuv_nv12_to_rgb(
                &image,
                out,
                rgb_stride,
                range,
                matrix,
                yuvutils_rs::YuvConversionMode::Balanced,
            )
            .map_err(|e| fail(e.to_string()))
        }
        PixelFormat::Grey => {
            let image = yuvutils_rs::YuvGrayImage {
                y_plane: &frame.data[..plane],
                y_stride: l.stride,
                width: l.width,
                height: l.height,
            };
            yuvutils_rs::yuv400_to_rgb(&image, out, rgb_stride, range, matrix)
                .map_err(|e| fail(e.to_string()))
        }
        PixelFormat::Rgb24 => {
            let row = rgb_stride as usize;
            for (dst, src) in out
                .chunks_exact_mut(row)
                .zip(frame.data.chunks(l.stride as usize))
            {
                dst.copy_from_slice(&src[..row]);
            }
            Ok(())
        }
        PixelFormat::Mjpeg => Err(fail("compressed frames go through decode_jpeg".into())),
    }
}

/// Decodes a JPEG frame to RGB. The frame must be the size the camera
/// negotiated (`expected`): a corrupt header cannot make the decoder
/// allocate for a giant image. With `at_least`, the decoder may use a
/// reduced-size IDCT (1/2, 1/4, 1/8) as long as the result stays at least
/// that large, which is most of the speed-up for scaled output.
fn decode_jpeg(
    data: &[u8],
    expected: (u32, u32),
    at_least: Option<(u32, u32)>,
) -> Result<RgbImage, ConvertError> {
    let mut decoder = jpeg_decoder::Decoder::new(data);
    let jpeg = |e: jpeg_decoder::Error| ConvertError::Jpeg(e.to_string());
    decoder.read_info().map_err(jpeg)?;
    let header = decoder
        .info()
        .map(|i| (u32::from(i.width), u32::from(i.height)))
        .ok_or_else(|| ConvertError::Jpeg("no image header".into()))?;
    if header != expected {
        return Err(ConvertError::Jpeg(format!(
            "frame is {}x{}, the camera negotiated {}x{}",
            header.0, header.1, expected.0, expected.1
        )));
    }
    if let Some((w, h)) = at_least {
        let clamp = |v: u32| v.min(u32::from(u16::MAX)) as u16;
        decoder.scale(clamp(w), clamp(h)).map_err(jpeg)?;
    }
    let pixels = decoder.decode().map_err(jpeg)?;
    let info = decoder
        .info()
        .ok_or_else(|| ConvertError::Jpeg("no image header".into()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    let data = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        other => {
            return Err(ConvertError::Jpeg(format!(
                "unsupported JPEG pixel format {other:?}"
            )))
        }
    };
    if data.len() != width as usize * height as usize * 3 {
        return Err(ConvertError::Jpeg(format!(
            "decoder returned {} bytes for {width}x{height}",
            data.len()
        )));
    }
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

#[cfg(test)]
mod tests;
