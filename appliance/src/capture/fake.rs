//! A scripted frame source: the test double beside the V4L2 camera and the
//! replay. It plays a script of frames, silences and failures, optionally
//! at a camera's pace, so pipeline tests run in milliseconds without a
//! device, a model or footage.

use std::collections::VecDeque;
use std::time::Duration;

use super::{
    CaptureError, FrameLayout, FrameRef, FrameSource, PixelFormat, SourceInfo, SourceStats,
    YuvEncoding,
};
use crate::shutdown::Shutdown;

/// One step of the script.
#[derive(Debug)]
enum Step {
    /// A frame filled with this byte.
    Frame(u8),
    /// The camera says nothing for this long (the source blocks).
    Silence(Duration),
    /// The source fails with this error.
    Fail(CaptureError),
}

/// Frames from a script, in order; the source ends after the last step.
#[derive(Debug)]
pub struct ScriptedSource {
    layout: FrameLayout,
    script: VecDeque<Step>,
    /// Time between two frames, on the frames' clock; also slept between
    /// frames when `paced`.
    interval: Duration,
    paced: bool,
    shutdown: Shutdown,
    sequence: u64,
    stats: SourceStats,
    data: Vec<u8>,
}

impl ScriptedSource {
    /// An empty script of 64x48 GREY frames, 25 per second of frame time,
    /// delivered as fast as they are asked for.
    pub fn new() -> Self {
        let layout = FrameLayout {
            format: PixelFormat::Grey,
            width: 64,
            height: 48,
            stride: 64,
            yuv: YuvEncoding {
                bt709: false,
                full_range: true,
            },
        };
        Self {
            layout,
            script: VecDeque::new(),
            interval: Duration::from_millis(40),
            paced: false,
            shutdown: Shutdown::new(),
            sequence: 0,
            stats: SourceStats::default(),
            data: Vec::new(),
        }
    }

    /// `n` frames filled with `value`.
    pub fn frames(mut self, n: usize, value: u8) -> Self {
        self.script.extend((0..n).map(|_| Step::Frame(value)));
        self
    }

    /// A silence of `duration` (a stalled or unplugged camera) before the
    /// next step.
    pub fn silence(mut self, duration: Duration) -> Self {
        self.script.push_back(Step::Silence(duration));
        self
    }

    /// The source fails with `error` at this point.
    pub fn fail(mut self, error: CaptureError) -> Self {
        self.script.push_back(Step::Fail(error));
        self
    }

    /// Delivers frames at `fps` in real time, like a camera.
    pub fn paced(mut self, fps: u32) -> Self {
        self.interval = Duration::from_secs(1) / fps.max(1);
        self.paced = true;
        self
    }

    /// Ends silences, pacing and the script early when `shutdown` is
    /// raised, as the real sources do.
    pub fn stopped_by(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = shutdown.clone();
        self
    }
}

impl Default for ScriptedSource {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameSource for ScriptedSource {
    fn info(&self) -> SourceInfo {
        let fps = 1.0 / self.interval.as_secs_f64();
        SourceInfo {
            origin: "scripted source".into(),
            layout: self.layout,
            fps_requested: fps,
            fps_negotiated: fps,
        }
    }

    fn next_frame(&mut self, visit: &mut dyn FnMut(FrameRef<'_>)) -> Result<bool, CaptureError> {
        loop {
            if self.shutdown.requested() {
                return Ok(false);
            }
            match self.script.pop_front() {
                None => return Ok(false),
                Some(Step::Silence(duration)) => {
                    if !self.shutdown.sleep(duration) {
                        return Ok(false);
                    }
                }
                Some(Step::Fail(error)) => return Err(error),
                Some(Step::Frame(value)) => {
                    if self.paced && !self.shutdown.sleep(self.interval) {
                        return Ok(false);
                    }
                    let len = (self.layout.stride * self.layout.height) as usize;
                    self.data.clear();
                    self.data.resize(len, value);
                    let timestamp = self.interval * self.sequence as u32;
                    self.sequence += 1;
                    self.stats.frames += 1;
                    visit(FrameRef {
                        data: &self.data,
                        layout: self.layout,
                        sequence: self.sequence,
                        timestamp,
                        stream: 0,
                    });
                    return Ok(true);
                }
            }
        }
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_plays_in_order_then_ends() {
        let mut source = ScriptedSource::new()
            .frames(2, 7)
            .fail(CaptureError::Replay {
                path: "x".into(),
                reason: "broken".into(),
            });
        let mut seen = Vec::new();
        for _ in 0..2 {
            assert!(source
                .next_frame(&mut |f| seen.push((f.sequence, f.timestamp, f.data[0])))
                .unwrap());
        }
        assert_eq!(
            seen,
            [(1, Duration::ZERO, 7), (2, Duration::from_millis(40), 7)]
        );
        assert!(source.next_frame(&mut |_| {}).is_err());
        assert!(!source.next_frame(&mut |_| {}).unwrap());
        assert_eq!(source.stats().frames, 2);
    }
}
