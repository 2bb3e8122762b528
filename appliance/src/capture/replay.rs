//! Replay of recordings as if they were a camera: a video file decoded by an
//! `ffmpeg` subprocess into raw frames, or a folder of PNG/JPEG images.
//! Frames are paced at the recording's rate or delivered as fast as they
//! are consumed, and can loop. Timestamps are presentation times, so the
//! stages downstream see the same clock as with a live camera.
//!
//! ffmpeg's standard error is read all along by a thread of its own
//! ([`StderrDrain`]): a damaged recording makes ffmpeg write a line per
//! decode error, and a pipe nobody reads fills up (64 KiB) and stalls the
//! decoder. The thread keeps the last lines for the error message if ffmpeg
//! fails, and logs at most one line per [`STDERR_LOG_EVERY`] with the count
//! of the lines it left out.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{CameraSettings, Pace, ReplayKind, ReplaySettings};
use super::{
    CaptureError, FrameLayout, FrameRef, FrameSource, PixelFormat, SourceInfo, SourceStats,
    YuvEncoding,
};
use crate::shutdown::Shutdown;
use crate::sync::lock;

/// At most one log line of ffmpeg's messages per this long.
pub const STDERR_LOG_EVERY: Duration = Duration::from_secs(10);
/// ffmpeg's last lines kept for an error message.
const STDERR_TAIL_LINES: usize = 8;
/// Longest ffmpeg line kept (bytes); the rest is cut.
const STDERR_LINE_MAX: usize = 300;

/// What the drain kept of ffmpeg's standard error.
#[derive(Debug, Default)]
struct StderrTail {
    lines: VecDeque<String>,
    total: u64,
}

/// A thread reading ffmpeg's standard error as it comes (see the module
/// documentation).
struct StderrDrain {
    tail: Arc<Mutex<StderrTail>>,
    thread: Option<JoinHandle<()>>,
}

impl StderrDrain {
    fn start(stderr: ChildStderr, path: &Path) -> std::io::Result<Self> {
        let tail = Arc::new(Mutex::new(StderrTail::default()));
        let kept = Arc::clone(&tail);
        let path = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("ffmpeg-stderr".into())
            .spawn(move || {
                let mut last_log: Option<Instant> = None;
                let mut left_out = 0u64;
                let mut reader = BufReader::new(stderr);
                let mut raw = Vec::new();
                loop {
                    raw.clear();
                    match reader.read_until(b'\n', &mut raw) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    raw.truncate(STDERR_LINE_MAX);
                    let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                    if line.is_empty() {
                        continue;
                    }
                    {
                        let mut tail = lock(&kept);
                        tail.total += 1;
                        if tail.lines.len() == STDERR_TAIL_LINES {
                            tail.lines.pop_front();
                        }
                        tail.lines.push_back(line.clone());
                    }
                    if last_log.is_none_or(|t| t.elapsed() >= STDERR_LOG_EVERY) {
                        last_log = Some(Instant::now());
                        tracing::warn!(path = %path, left_out, "ffmpeg: {line}");
                        left_out = 0;
                    } else {
                        left_out += 1;
                    }
                }
                if left_out > 0 {
                    tracing::warn!(path = %path, left_out, "ffmpeg: {left_out} more lines left out of the log");
                }
            })?;
        Ok(Self {
            tail,
            thread: Some(thread),
        })
    }

    /// Waits for the end of ffmpeg's standard error (ffmpeg has exited) and
    /// returns its last lines and how many lines it wrote in all.
    fn finish(mut self) -> (String, u64) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let tail = lock(&self.tail);
        let lines: Vec<&str> = tail.lines.iter().map(String::as_str).collect();
        (lines.join(" | "), tail.total)
    }
}

/// Opens the replay the settings describe.
pub fn open(
    replay: &ReplaySettings,
    camera: &CameraSettings,
    shutdown: Shutdown,
) -> Result<Box<dyn FrameSource>, CaptureError> {
    Ok(match replay.kind {
        ReplayKind::Video => Box::new(VideoReplay::open(replay, camera, shutdown)?),
        ReplayKind::Images => Box::new(ImageReplay::open(replay, camera, shutdown)?),
    })
}

/// Paces frames against a wall clock started at the first frame.
struct Pacer {
    pace: Pace,
    started: Option<Instant>,
    shutdown: Shutdown,
}

impl Pacer {
    /// Waits until the frame at `pts` is due; `false` if a stop came first.
    fn wait(&mut self, pts: Duration) -> bool {
        if self.pace == Pace::Fast {
            return !self.shutdown.requested();
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let due = started + pts;
        let now = Instant::now();
        if due > now {
            self.shutdown.sleep(due - now)
        } else {
            !self.shutdown.requested()
        }
    }
}

/// The `ffmpeg` pixel format that produces `format`, if it can.
fn ffmpeg_pix_fmt(format: PixelFormat) -> Option<&'static str> {
    match format {
        PixelFormat::Yuyv => Some("yuyv422"),
        PixelFormat::Nv12 => Some("nv12"),
        PixelFormat::Rgb24 => Some("rgb24"),
        PixelFormat::Grey => Some("gray"),
        PixelFormat::Mjpeg => None,
    }
}

/// Size and rate of a video's first stream, read with `ffprobe`.
fn probe(path: &Path) -> Result<(u32, u32, f64), CaptureError> {
    let fail = |reason: String| CaptureError::Replay {
        path: path.to_owned(),
        reason,
    };
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height,r_frame_rate",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            fail(format!(
                "cannot run ffprobe: {e} (install the ffmpeg package)"
            ))
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || text.trim().is_empty() {
        return Err(fail(format!(
            "not a readable video: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let fields: Vec<&str> = text.trim().split(',').collect();
    let parsed = (|| {
        let (w, h, rate) = (fields.first()?, fields.get(1)?, fields.get(2)?);
        let (num, den) = rate.split_once('/').unwrap_or((rate, "1"));
        let fps = num.parse::<f64>().ok()? / den.parse::<f64>().ok()?;
        Some((w.parse().ok()?, h.parse().ok()?, fps))
    })();
    match parsed {
        Some((w, h, fps)) if w > 0 && h > 0 && fps.is_finite() && fps > 0.0 => Ok((w, h, fps)),
        _ => Err(fail(format!(
            "ffprobe gave no usable size and rate: {:?}",
            text.trim()
        ))),
    }
}

/// A video file decoded by `ffmpeg` into raw frames on a pipe.
pub struct VideoReplay {
    path: PathBuf,
    info: SourceInfo,
    pix_fmt: &'static str,
    looping: bool,
    child: Option<(Child, ChildStdout, StderrDrain)>,
    buffer: Vec<u8>,
    pacer: Pacer,
    /// Frames delivered in earlier passes of a loop.
    offset: u64,
    /// Frames delivered in this pass.
    index: u64,
    stats: SourceStats,
}

impl VideoReplay {
    pub fn open(
        replay: &ReplaySettings,
        camera: &CameraSettings,
        shutdown: Shutdown,
    ) -> Result<Self, CaptureError> {
        let path = replay.path.clone();
        let (native_w, native_h, fps) = probe(&path)?;
        let (width, height) = camera.size.unwrap_or((native_w, native_h));
        let format = camera
            .pixel_formats
            .iter()
            .copied()
            .find(|f| ffmpeg_pix_fmt(*f).is_some())
            .ok_or_else(|| CaptureError::Replay {
                path: path.clone(),
                reason: "a video replay needs YUYV, NV12, RGB3 or GREY in camera.pixel_formats"
                    .into(),
            })?;
        if matches!(format, PixelFormat::Yuyv | PixelFormat::Nv12)
            && (width % 2 != 0 || height % 2 != 0)
        {
            return Err(CaptureError::Replay {
                path,
                reason: format!("{format} needs an even size, the video is {width}x{height}: set camera.width and camera.height"),
            });
        }
        let stride = format.packed_stride(width).unwrap_or(0);
        let layout = FrameLayout {
            format,
            width,
            height,
            stride,
            // ffmpeg's default conversion: BT.601, limited range for YUV;
            // its `gray` output is full range.
            yuv: YuvEncoding {
                bt709: false,
                full_range: format == PixelFormat::Grey,
            },
        };
        let frame_len = format.frame_len(stride, height).unwrap_or(0);
        let mut replay_source = Self {
            info: SourceInfo {
                origin: format!("replay {}", path.display()),
                layout,
                fps_requested: 0.0,
                fps_negotiated: fps,
            },
            pix_fmt: ffmpeg_pix_fmt(format).unwrap_or("rgb24"),
            looping: replay.looping,
            child: None,
            buffer: vec![0; frame_len],
            pacer: Pacer {
                pace: replay.pace,
                started: None,
                shutdown,
            },
            offset: 0,
            index: 0,
            stats: SourceStats::default(),
            path,
        };
        replay_source.spawn()?;
        Ok(replay_source)
    }

    fn spawn(&mut self) -> Result<(), CaptureError> {
        let layout = self.info.layout;
        let mut command = Command::new("ffmpeg");
        command
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
            .arg(&self.path);
        command.args([
            "-an",
            "-sn",
            "-vf",
            &format!("scale={}:{}", layout.width, layout.height),
        ]);
        command.args(["-f", "rawvideo", "-pix_fmt", self.pix_fmt, "-"]);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CaptureError::Replay {
                path: self.path.clone(),
                reason: format!("cannot run ffmpeg: {e} (install the ffmpeg package)"),
            })?;
        let stdout = child.stdout.take().expect("stdout was piped");
        let stderr = child.stderr.take().expect("stderr was piped");
        let drain = match StderrDrain::start(stderr, &self.path) {
            Ok(drain) => drain,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(self.fail(format!("cannot start a thread for ffmpeg's messages: {e}")));
            }
        };
        self.child = Some((child, stdout, drain));
        Ok(())
    }

    /// Reads one whole frame; `Ok(false)` at a clean end of stream.
    fn read_frame(&mut self) -> Result<bool, CaptureError> {
        let Some((_, stdout, _)) = self.child.as_mut() else {
            return Ok(false);
        };
        let mut filled = 0;
        while filled < self.buffer.len() {
            match stdout.read(&mut self.buffer[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail(format!("reading frames from ffmpeg: {e}"))),
            }
        }
        if filled == self.buffer.len() {
            return Ok(true);
        }
        // End of the pipe: ffmpeg finished or failed.
        let (mut child, stdout, drain) = self.child.take().expect("checked above");
        drop(stdout);
        let status = child
            .wait()
            .map_err(|e| self.fail(format!("waiting for ffmpeg: {e}")))?;
        let (stderr, lines) = drain.finish();
        if !status.success() {
            let shown = if lines > STDERR_TAIL_LINES as u64 {
                format!("last {STDERR_TAIL_LINES} of {lines} lines: {stderr}")
            } else {
                stderr
            };
            return Err(self.fail(format!("ffmpeg failed ({status}): {shown}")));
        }
        if filled != 0 {
            tracing::warn!(path = %self.path.display(), bytes = filled, "replay ended with a partial frame");
        }
        if self.index == 0 {
            return Err(self.fail("the video has no frames".into()));
        }
        Ok(false)
    }

    fn fail(&self, reason: String) -> CaptureError {
        CaptureError::Replay {
            path: self.path.clone(),
            reason,
        }
    }
}

impl Drop for VideoReplay {
    fn drop(&mut self) {
        if let Some((mut child, stdout, drain)) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            drop(stdout);
            drain.finish();
        }
    }
}

impl FrameSource for VideoReplay {
    fn info(&self) -> SourceInfo {
        self.info.clone()
    }

    fn next_frame(&mut self, visit: &mut dyn FnMut(FrameRef<'_>)) -> Result<bool, CaptureError> {
        if !self.read_frame()? {
            if !self.looping {
                return Ok(false);
            }
            self.offset += self.index;
            self.index = 0;
            self.spawn()?;
            if !self.read_frame()? {
                return Ok(false);
            }
        }
        let sequence = self.offset + self.index;
        let pts = Duration::from_secs_f64(sequence as f64 / self.info.fps_negotiated);
        if !self.pacer.wait(pts) {
            return Ok(false);
        }
        self.index += 1;
        self.stats.frames += 1;
        visit(FrameRef {
            data: &self.buffer,
            layout: self.info.layout,
            sequence,
            timestamp: pts,
            stream: 0,
        });
        Ok(true)
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

/// A folder of PNG or JPEG images played in file-name order. With `MJPG`
/// first in `camera.pixel_formats` and only JPEG files, the files' bytes are
/// delivered as they are, as MJPEG frames, like a camera's: the frames are
/// decoded (or found corrupt) downstream, as a camera's would be.
pub struct ImageReplay {
    files: Vec<PathBuf>,
    size: Option<(u32, u32)>,
    fps: f64,
    looping: bool,
    pacer: Pacer,
    next: u64,
    current: Vec<u8>,
    stats: SourceStats,
    info: SourceInfo,
    /// Files go out as MJPEG frames, undecoded.
    mjpeg: bool,
}

impl ImageReplay {
    pub fn open(
        replay: &ReplaySettings,
        camera: &CameraSettings,
        shutdown: Shutdown,
    ) -> Result<Self, CaptureError> {
        let path = replay.path.clone();
        let fail = |reason: String| CaptureError::Replay {
            path: path.clone(),
            reason,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(|e| fail(format!("cannot list: {e}")))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg")
                })
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(fail("holds no .png, .jpg or .jpeg images".into()));
        }
        let mut source = Self {
            files,
            size: camera.size,
            fps: f64::from(camera.fps),
            looping: replay.looping,
            pacer: Pacer {
                pace: replay.pace,
                started: None,
                shutdown,
            },
            next: 0,
            current: Vec::new(),
            stats: SourceStats::default(),
            mjpeg: false,
            info: SourceInfo {
                origin: format!("replay {}", path.display()),
                layout: FrameLayout {
                    format: PixelFormat::Rgb24,
                    width: 0,
                    height: 0,
                    stride: 0,
                    yuv: YuvEncoding::default(),
                },
                fps_requested: f64::from(camera.fps),
                fps_negotiated: f64::from(camera.fps),
            },
        };
        if camera.pixel_formats.first() == Some(&PixelFormat::Mjpeg) {
            source.info.layout = mjpeg_layout(&source.files, camera.size)?;
            source.mjpeg = true;
            return Ok(source);
        }
        // Decode the first image now: a bad file is an error at start.
        let first = source.load(0)?;
        source.info.layout = first;
        Ok(source)
    }

    /// Decodes image `index` into `current` and returns its layout (MJPEG:
    /// reads its bytes, the layout is the first file's).
    fn load(&mut self, index: usize) -> Result<FrameLayout, CaptureError> {
        let file = &self.files[index];
        if self.mjpeg {
            self.current = std::fs::read(file).map_err(|e| CaptureError::Replay {
                path: file.clone(),
                reason: format!("cannot read: {e}"),
            })?;
            return Ok(self.info.layout);
        }
        let image = image::open(file).map_err(|e| CaptureError::Replay {
            path: file.clone(),
            reason: format!("cannot decode: {e}"),
        })?;
        let image = match self.size {
            Some((w, h)) if (w, h) != (image.width(), image.height()) => {
                image.resize_exact(w, h, image::imageops::FilterType::Triangle)
            }
            _ => image,
        };
        let rgb = image.into_rgb8();
        let (width, height) = rgb.dimensions();
        self.current = rgb.into_raw();
        Ok(FrameLayout {
            format: PixelFormat::Rgb24,
            width,
            height,
            stride: width * 3,
            yuv: YuvEncoding::default(),
        })
    }
}

/// The layout of MJPEG frames replayed from `files`: all JPEG, sized as
/// the first one (the camera's negotiated size), which `size` may not
/// change (frames are not re-encoded).
fn mjpeg_layout(files: &[PathBuf], size: Option<(u32, u32)>) -> Result<FrameLayout, CaptureError> {
    let fail = |path: &Path, reason: String| CaptureError::Replay {
        path: path.to_owned(),
        reason,
    };
    if let Some(png) = files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
    {
        return Err(fail(
            png,
            "an MJPG replay (MJPG first in camera.pixel_formats) plays JPEG files only".into(),
        ));
    }
    let first = &files[0];
    let (width, height) = image::ImageReader::open(first)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| fail(first, format!("cannot read: {e}")))?
        .into_dimensions()
        .map_err(|e| fail(first, format!("cannot read the JPEG header: {e}")))?;
    if size.is_some_and(|s| s != (width, height)) {
        return Err(fail(
            first,
            format!("an MJPG replay plays frames at their own size ({width}x{height}): remove camera.width and camera.height"),
        ));
    }
    Ok(FrameLayout {
        format: PixelFormat::Mjpeg,
        width,
        height,
        stride: 0,
        yuv: YuvEncoding::default(),
    })
}

impl FrameSource for ImageReplay {
    fn info(&self) -> SourceInfo {
        self.info.clone()
    }

    fn next_frame(&mut self, visit: &mut dyn FnMut(FrameRef<'_>)) -> Result<bool, CaptureError> {
        let count = self.files.len() as u64;
        if self.next >= count && !self.looping {
            return Ok(false);
        }
        let sequence = self.next;
        let layout = self.load((sequence % count) as usize)?;
        let pts = Duration::from_secs_f64(sequence as f64 / self.fps);
        if !self.pacer.wait(pts) {
            return Ok(false);
        }
        self.next += 1;
        self.stats.frames += 1;
        visit(FrameRef {
            data: &self.current,
            layout,
            sequence,
            timestamp: pts,
            stream: 0,
        });
        Ok(true)
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_pace_never_waits_and_realtime_pace_does() {
        let mut fast = Pacer {
            pace: Pace::Fast,
            started: None,
            shutdown: Shutdown::new(),
        };
        let t = Instant::now();
        assert!(fast.wait(Duration::from_secs(3600)));
        assert!(t.elapsed() < Duration::from_millis(100));

        let mut real = Pacer {
            pace: Pace::Realtime,
            started: None,
            shutdown: Shutdown::new(),
        };
        assert!(real.wait(Duration::ZERO));
        let t = Instant::now();
        assert!(real.wait(Duration::from_millis(120)));
        assert!(t.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn a_stop_interrupts_pacing() {
        let shutdown = Shutdown::new();
        shutdown.request();
        let mut real = Pacer {
            pace: Pace::Realtime,
            started: None,
            shutdown,
        };
        assert!(!real.wait(Duration::from_secs(3600)));
    }
}
