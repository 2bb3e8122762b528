//! V4L2 capture through the `v4l` crate: format negotiation, an explicit
//! frame interval, memory-mapped streaming, and frames lent to the visitor
//! straight from the driver's buffers.
//!
//! The `v4l` crate has no multi-planar capture and slow releases, so it
//! stays behind [`FrameSource`]; nothing outside this file names it.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use v4l::buffer::{Flags as BufferFlags, Type};
use v4l::capability::Flags as CapFlags;
use v4l::format::{Colorspace, Quantization};
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

use super::CameraSettings;
use super::{
    CaptureError, FrameLayout, FrameRef, FrameSource, PixelFormat, SourceInfo, SourceStats,
    YuvEncoding,
};

/// An open, streaming V4L2 capture device.
pub struct V4l2Source {
    path: PathBuf,
    // Field order matters: the stream is dropped (buffers unmapped, stream
    // stopped) before the device handle it refers to.
    stream: Stream<'static>,
    _device: Device,
    info: SourceInfo,
    timeout: Duration,
    last_sequence: Option<u32>,
    stats: SourceStats,
}

impl V4l2Source {
    /// Opens `path`, negotiates size, pixel format and frame interval as the
    /// settings ask, and maps the buffers. Streaming starts at the first
    /// frame.
    pub fn open(path: &Path, camera: &CameraSettings) -> Result<Self, CaptureError> {
        let device_err = |what: &'static str| {
            let path = path.to_owned();
            move |source: io::Error| CaptureError::Device {
                device: path,
                what,
                source,
            }
        };
        let device = Device::with_path(path).map_err(|source| CaptureError::Open {
            device: path.to_owned(),
            source,
        })?;
        let caps = device
            .query_caps()
            .map_err(device_err("query capabilities"))?;
        if !caps.capabilities.contains(CapFlags::VIDEO_CAPTURE)
            || !caps.capabilities.contains(CapFlags::STREAMING)
        {
            return Err(CaptureError::Open {
                device: path.to_owned(),
                source: io::Error::other(format!(
                    "{} ({}) is not a streaming video capture device",
                    caps.card, caps.driver
                )),
            });
        }
        let (width, height) = camera.size.unwrap_or((640, 480));
        let offered: Vec<FourCC> = device
            .enum_formats()
            .map_err(device_err("list formats"))?
            .into_iter()
            .map(|d| d.fourcc)
            .collect();
        let format = negotiate(&device, &offered, &camera.pixel_formats, width, height)
            .map_err(device_err("set format"))?;
        let Some((pixel_format, format)) = format else {
            let names = |codes: Vec<String>| {
                if codes.is_empty() {
                    "none".to_string()
                } else {
                    codes.join(", ")
                }
            };
            return Err(CaptureError::NoUsableFormat {
                device: path.to_owned(),
                width,
                height,
                wanted: names(camera.pixel_formats.iter().map(|f| f.to_string()).collect()),
                offered: names(offered.iter().map(fourcc_name).collect()),
            });
        };
        // Drivers keep the last interval otherwise (vivid defaults to 5 fps
        // after a size change), so always set it.
        let params = device
            .set_params(&Parameters::with_fps(camera.fps))
            .map_err(device_err("set frame interval"))?;
        let interval = params.interval;
        let fps_negotiated = if interval.numerator == 0 {
            0.0
        } else {
            f64::from(interval.denominator) / f64::from(interval.numerator)
        };
        let mut stream = Stream::with_buffers(&device, Type::VideoCapture, camera.buffers)
            .map_err(device_err("map buffers"))?;
        stream.set_timeout(camera.frame_timeout);
        let layout = FrameLayout {
            format: pixel_format,
            width: format.width,
            height: format.height,
            stride: if pixel_format == PixelFormat::Mjpeg {
                0
            } else {
                format.stride
            },
            yuv: YuvEncoding {
                bt709: matches!(format.colorspace, Colorspace::Rec709),
                // V4L2 maps a default quantization to limited range for Y'CbCr,
                // but monochrome sensors (and vivid) deliver full-range GREY,
                // and JPEG is full range by definition.
                full_range: match format.quantization {
                    Quantization::FullRange => true,
                    Quantization::LimitedRange => false,
                    _ => {
                        pixel_format == PixelFormat::Grey
                            || matches!(format.colorspace, Colorspace::JPEG)
                    }
                },
            },
        };
        let info = SourceInfo {
            origin: format!("{} ({}, {})", path.display(), caps.card, caps.driver),
            layout,
            fps_requested: f64::from(camera.fps),
            fps_negotiated,
        };
        tracing::info!(
            device = %path.display(),
            card = %caps.card,
            format = %pixel_format,
            width = format.width,
            height = format.height,
            stride = format.stride,
            fps = fps_negotiated,
            "camera opened"
        );
        Ok(Self {
            path: path.to_owned(),
            stream,
            _device: device,
            info,
            timeout: camera.frame_timeout,
            last_sequence: None,
            stats: SourceStats::default(),
        })
    }
}

/// Tries the preferred formats in order; the first one the driver accepts
/// at exactly the asked size wins.
fn negotiate(
    device: &Device,
    offered: &[FourCC],
    wanted: &[PixelFormat],
    width: u32,
    height: u32,
) -> io::Result<Option<(PixelFormat, Format)>> {
    for &format in wanted {
        let fourcc = FourCC::new(&format.fourcc());
        if !offered.contains(&fourcc) {
            continue;
        }
        let set = device.set_format(&Format::new(width, height, fourcc))?;
        if set.fourcc == fourcc && set.width == width && set.height == height {
            return Ok(Some((format, set)));
        }
        tracing::debug!(
            format = %format,
            got = %fourcc_name(&set.fourcc),
            width = set.width,
            height = set.height,
            "driver adjusted the format; trying the next preference"
        );
    }
    Ok(None)
}

fn fourcc_name(code: &FourCC) -> String {
    code.str()
        .map(str::to_string)
        .unwrap_or_else(|_| format!("{:?}", code.repr))
}

impl FrameSource for V4l2Source {
    fn info(&self) -> SourceInfo {
        self.info.clone()
    }

    fn next_frame(&mut self, visit: &mut dyn FnMut(FrameRef<'_>)) -> Result<bool, CaptureError> {
        loop {
            let (buffer, meta) = self.stream.next().map_err(|source| {
                if source.kind() == io::ErrorKind::TimedOut {
                    CaptureError::Timeout {
                        device: self.path.clone(),
                        timeout: self.timeout,
                    }
                } else {
                    CaptureError::Device {
                        device: self.path.clone(),
                        what: "dequeue a frame",
                        source,
                    }
                }
            })?;
            let sequence = meta.sequence;
            if let Some(last) = self.last_sequence {
                self.stats.dropped += u64::from(sequence.wrapping_sub(last).saturating_sub(1));
            }
            self.last_sequence = Some(sequence);
            if meta.flags.contains(BufferFlags::ERROR) {
                // The driver says this buffer is corrupt: skip it, count it.
                self.stats.dropped += 1;
                continue;
            }
            let layout = self.info.layout;
            let used = meta.bytesused as usize;
            let data = if used == 0 || used > buffer.len() {
                buffer
            } else {
                &buffer[..used]
            };
            let expected = layout.format.frame_len(layout.stride, layout.height);
            if expected.is_some_and(|n| data.len() < n) {
                self.stats.dropped += 1;
                tracing::warn!(device = %self.path.display(), bytes = data.len(), "short frame skipped");
                continue;
            }
            self.stats.frames += 1;
            let timestamp = Duration::from_secs(meta.timestamp.sec.max(0) as u64)
                + Duration::from_micros(meta.timestamp.usec.max(0) as u64);
            visit(FrameRef {
                data,
                layout,
                sequence: u64::from(sequence),
                timestamp,
                stream: 0,
            });
            return Ok(true);
        }
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}
