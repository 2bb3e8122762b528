//! Frame sources: where pictures come from.
//!
//! Every source, a V4L2 camera or a replayed recording, implements
//! [`FrameSource`]. A source lends each frame to a visitor for the time it
//! takes to use it ([`FrameRef`] borrows the driver's buffer), so a frame is
//! converted straight out of the kernel's memory-mapped buffer without an
//! intermediate copy, and the buffer goes back to the driver afterwards.

pub mod reconnect;
pub mod replay;
pub mod v4l2;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::shutdown::Shutdown;

pub mod fake;

/// Where frames come from and in what shape (the `[camera]` section,
/// validated).
#[derive(Clone, Debug, PartialEq)]
pub struct CameraSettings {
    pub source: SourceSettings,
    /// Frame size: asked of a V4L2 camera (always set for one); a replay is
    /// scaled to it when set and keeps its own size otherwise.
    pub size: Option<(u32, u32)>,
    /// Frames per second asked of the camera; the pace of an image-folder
    /// replay.
    pub fps: u32,
    /// Pixel formats in order of preference.
    pub pixel_formats: Vec<PixelFormat>,
    /// V4L2 buffers to map.
    pub buffers: u32,
    /// How long without a frame before the camera counts as lost.
    pub frame_timeout: Duration,
    /// Delays between attempts to reopen a lost camera.
    pub reconnect: Backoff,
}

impl Default for CameraSettings {
    /// `/dev/video0` at 640x480, 25 fps, any supported format.
    fn default() -> Self {
        Self {
            source: SourceSettings::V4l2 {
                device: PathBuf::from("/dev/video0"),
            },
            size: Some((640, 480)),
            fps: 25,
            pixel_formats: PixelFormat::ALL.to_vec(),
            buffers: 4,
            frame_timeout: Duration::from_secs(2),
            reconnect: Backoff {
                min: Duration::from_millis(250),
                max: Duration::from_secs(10),
            },
        }
    }
}

/// The kind of frame source.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceSettings {
    /// A V4L2 capture device.
    V4l2 { device: PathBuf },
    /// A recording played back as if it were a camera.
    Replay(ReplaySettings),
}

/// A recording to play back.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplaySettings {
    /// The video file or image folder.
    pub path: PathBuf,
    pub kind: ReplayKind,
    pub pace: Pace,
    /// Start again from the beginning at the end.
    pub looping: bool,
}

impl ReplaySettings {
    /// A recording at `path` of `kind`, played in real time, once.
    pub fn new(path: PathBuf, kind: ReplayKind) -> Self {
        Self {
            path,
            kind,
            pace: Pace::Realtime,
            looping: false,
        }
    }
}

/// What a replay path holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayKind {
    /// A video file, decoded by an `ffmpeg` subprocess.
    Video,
    /// A folder of PNG or JPEG images, played in file-name order.
    Images,
}

/// How fast a replay runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// At the recording's frame rate, like a live camera.
    Realtime,
    /// As fast as the consumer takes frames.
    Fast,
}

impl CameraSettings {
    /// Whether every frame must reach the analysis (a recording played as
    /// fast as possible), rather than the freshest one (a camera).
    pub fn lossless(&self) -> bool {
        matches!(&self.source, SourceSettings::Replay(r) if r.pace == Pace::Fast)
    }

    /// One line saying where frames come from, for logs and summaries.
    pub fn describe(&self) -> String {
        let source = match &self.source {
            SourceSettings::V4l2 { device } => format!("v4l2 {}", device.display()),
            SourceSettings::Replay(replay) => format!("replay {}", replay.path.display()),
        };
        let size = self
            .size
            .map(|(w, h)| format!("{w}x{h}"))
            .unwrap_or_else(|| "native size".into());
        let rate = match &self.source {
            SourceSettings::Replay(replay) if replay.kind == ReplayKind::Video => {
                "at the recording's rate".to_string()
            }
            _ => format!("@ {} fps", self.fps),
        };
        let formats: Vec<&str> = self.pixel_formats.iter().map(|f| f.name()).collect();
        format!("{source} {size} {rate} ({})", formats.join(", "))
    }
}

/// Pixel formats Luciole can capture and convert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Packed 4:2:2 YUV, `Y0 U Y1 V` (V4L2 `YUYV`).
    Yuyv,
    /// Motion JPEG, one JPEG image per frame (V4L2 `MJPG`).
    Mjpeg,
    /// Planar Y followed by interleaved UV at half resolution (V4L2 `NV12`).
    Nv12,
    /// Packed 8-bit RGB (V4L2 `RGB3`).
    Rgb24,
    /// 8-bit luma only (V4L2 `GREY`).
    Grey,
}

impl PixelFormat {
    /// Every supported format, in the default order of preference.
    pub const ALL: [PixelFormat; 5] = [
        PixelFormat::Yuyv,
        PixelFormat::Mjpeg,
        PixelFormat::Nv12,
        PixelFormat::Rgb24,
        PixelFormat::Grey,
    ];

    /// The V4L2 four-character code.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Mjpeg => *b"MJPG",
            PixelFormat::Nv12 => *b"NV12",
            PixelFormat::Rgb24 => *b"RGB3",
            PixelFormat::Grey => *b"GREY",
        }
    }

    /// The format with this V4L2 four-character code, if supported.
    pub fn from_fourcc(code: [u8; 4]) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.fourcc() == code)
    }

    /// The canonical name (the four-character code as text).
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Mjpeg => "MJPG",
            PixelFormat::Nv12 => "NV12",
            PixelFormat::Rgb24 => "RGB3",
            PixelFormat::Grey => "GREY",
        }
    }

    /// Bytes per line of the first plane for a tightly packed frame, or
    /// `None` for compressed formats.
    pub fn packed_stride(self, width: u32) -> Option<u32> {
        match self {
            PixelFormat::Yuyv => Some(width * 2),
            PixelFormat::Rgb24 => Some(width * 3),
            PixelFormat::Nv12 | PixelFormat::Grey => Some(width),
            PixelFormat::Mjpeg => None,
        }
    }

    /// Bytes a frame of this size needs at the given stride, or `None` for
    /// compressed formats, whose size varies.
    pub fn frame_len(self, stride: u32, height: u32) -> Option<usize> {
        let (stride, height) = (stride as usize, height as usize);
        match self {
            PixelFormat::Yuyv | PixelFormat::Rgb24 | PixelFormat::Grey => Some(stride * height),
            PixelFormat::Nv12 => Some(stride * height + stride * height.div_ceil(2)),
            PixelFormat::Mjpeg => None,
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Serialised as its four-character code, as in `frames.jsonl`.
impl serde::Serialize for PixelFormat {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl FromStr for PixelFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().as_str() {
            "YUYV" | "YUY2" => Ok(PixelFormat::Yuyv),
            "MJPG" | "MJPEG" => Ok(PixelFormat::Mjpeg),
            "NV12" => Ok(PixelFormat::Nv12),
            "RGB3" | "RGB24" => Ok(PixelFormat::Rgb24),
            "GREY" | "GRAY" | "Y8" => Ok(PixelFormat::Grey),
            _ => Err(format!(
                "unknown pixel format {text:?}: expected one of YUYV, MJPG, NV12, RGB3, GREY"
            )),
        }
    }
}

/// How the YUV samples of a frame encode colour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct YuvEncoding {
    /// BT.709 coefficients instead of BT.601.
    pub bt709: bool,
    /// Full-range (0..255) samples instead of limited range (16..235).
    pub full_range: bool,
}

/// Shape and encoding of the frames a source produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    /// Bytes per line of the first plane (0 for compressed formats).
    pub stride: u32,
    pub yuv: YuvEncoding,
}

/// One frame, borrowed from its source for the duration of a visit.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    /// The frame's bytes: exactly the bytes the driver filled.
    pub data: &'a [u8],
    pub layout: FrameLayout,
    /// The driver's sequence number (replay: frame index), increasing within
    /// one stream.
    pub sequence: u64,
    /// The driver's capture time (V4L2: usually `CLOCK_MONOTONIC`; replay:
    /// the frame's presentation time).
    pub timestamp: Duration,
    /// How many times the device was (re)opened before this frame: 0 for the
    /// first stream, 1 after the first reconnection, ...
    pub stream: u32,
}

/// Counters a source keeps about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceStats {
    /// Frames delivered to visitors.
    pub frames: u64,
    /// Frames the driver produced but we never saw (gaps in sequence numbers).
    pub dropped: u64,
    /// Successful reopenings after the device was lost.
    pub reconnects: u64,
    /// Total time without a device, in milliseconds.
    pub outage_ms: u64,
}

/// What a source reports about itself once open.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceInfo {
    /// Human-readable origin: device path and card name, or file path.
    pub origin: String,
    pub layout: FrameLayout,
    /// Frame rate asked for (0 when the source sets its own pace).
    pub fps_requested: f64,
    /// Frame rate the driver or file settled on.
    pub fps_negotiated: f64,
}

/// Errors of capture sources.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("camera {device}: cannot open: {source}")]
    Open {
        device: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("camera {device}: {what}: {source}")]
    Device {
        device: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("camera {device}: no usable pixel format at {width}x{height}: asked for {wanted}, device offers {offered}")]
    NoUsableFormat {
        device: PathBuf,
        width: u32,
        height: u32,
        wanted: String,
        offered: String,
    },
    #[error("camera {device}: no frame for {timeout:?}")]
    Timeout { device: PathBuf, timeout: Duration },
    #[error("replay {path}: {reason}")]
    Replay { path: PathBuf, reason: String },
    #[error("frame from {origin} is malformed: {reason}")]
    BadFrame { origin: String, reason: String },
}

impl CaptureError {
    /// Whether reopening the device may cure this error (the device went
    /// away, stalled or was reloaded), as opposed to a setup mistake.
    pub fn is_device_loss(&self) -> bool {
        matches!(
            self,
            CaptureError::Device { .. } | CaptureError::Timeout { .. }
        )
    }
}

/// A source of frames.
pub trait FrameSource: Send {
    /// What this source is and the frames it produces.
    fn info(&self) -> SourceInfo;

    /// Waits for the next frame and lends it to `visit`. Returns `Ok(false)`
    /// at the end of a finite source (or when a stop was asked for while
    /// waiting); `visit` is called at most once.
    fn next_frame(&mut self, visit: &mut dyn FnMut(FrameRef<'_>)) -> Result<bool, CaptureError>;

    /// Counters so far.
    fn stats(&self) -> SourceStats;

    /// Why the source is not open yet, while it waits for its device (see
    /// [`open_or_wait`]); `None` for a source that is open.
    fn away(&self) -> Option<String> {
        None
    }
}

impl FrameSource for Box<dyn FrameSource> {
    fn info(&self) -> SourceInfo {
        (**self).info()
    }

    fn next_frame(&mut self, visit: &mut dyn FnMut(FrameRef<'_>)) -> Result<bool, CaptureError> {
        (**self).next_frame(visit)
    }

    fn stats(&self) -> SourceStats {
        (**self).stats()
    }

    fn away(&self) -> Option<String> {
        (**self).away()
    }
}

/// Opens the source the camera settings describe. A V4L2 camera is wrapped
/// so that it reopens with backoff when it disappears; the first opening
/// must succeed, so a missing device or one without a usable format is an
/// error here rather than a silent retry loop.
pub fn open(
    settings: &CameraSettings,
    shutdown: &Shutdown,
) -> Result<Box<dyn FrameSource>, CaptureError> {
    match &settings.source {
        SourceSettings::V4l2 { device } => {
            let device = device.clone();
            let camera = settings.clone();
            let opener = move || v4l2::V4l2Source::open(&device, &camera);
            let source =
                reconnect::Reconnecting::open(opener, settings.reconnect, shutdown.clone())?;
            Ok(Box::new(source))
        }
        SourceSettings::Replay(replay) => replay::open(replay, settings, shutdown.clone()),
    }
}

/// Opens the source the camera settings describe, for the daemon: a source
/// that cannot be opened now (camera unplugged, recording not there yet) is
/// not an error but a source that keeps trying with the camera's reconnect
/// backoff ([`reconnect::Reconnecting::waiting`]) and says why through
/// [`FrameSource::away`]. Everything is retried, a device without a usable
/// format included: a pole cannot fix its camera by restarting, and each
/// restart costs an outbox and broker reopening.
pub fn open_or_wait(settings: &CameraSettings, shutdown: &Shutdown) -> Box<dyn FrameSource> {
    let placeholder = placeholder_info(settings);
    match &settings.source {
        SourceSettings::V4l2 { device } => {
            let device = device.clone();
            let camera = settings.clone();
            let opener = move || v4l2::V4l2Source::open(&device, &camera);
            Box::new(reconnect::Reconnecting::waiting(
                opener,
                settings.reconnect,
                shutdown.clone(),
                placeholder,
            ))
        }
        SourceSettings::Replay(replay) => {
            let (replay, camera, stop) = (replay.clone(), settings.clone(), shutdown.clone());
            let opener = move || replay::open(&replay, &camera, stop.clone());
            Box::new(reconnect::Reconnecting::waiting(
                opener,
                settings.reconnect,
                shutdown.clone(),
                placeholder,
            ))
        }
    }
}

/// What a source that is not open yet says about itself: its device or
/// file and the first format and size asked for.
fn placeholder_info(settings: &CameraSettings) -> SourceInfo {
    let origin = match &settings.source {
        SourceSettings::V4l2 { device } => device.display().to_string(),
        SourceSettings::Replay(replay) => format!("replay {}", replay.path.display()),
    };
    let format = settings
        .pixel_formats
        .first()
        .copied()
        .unwrap_or(PixelFormat::Yuyv);
    let (width, height) = settings.size.unwrap_or((0, 0));
    SourceInfo {
        origin,
        layout: FrameLayout {
            format,
            width,
            height,
            stride: format.packed_stride(width).unwrap_or(0),
            yuv: YuvEncoding::default(),
        },
        fps_requested: f64::from(settings.fps),
        fps_negotiated: 0.0,
    }
}
