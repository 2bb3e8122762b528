//! A scripted detector: the test double beside the LiteRT and classic
//! TFLite backends. It answers each frame (by sequence number) from a
//! script, can be slow like a small board's inference, and can fail at a
//! given frame, so pipeline tests need neither a runtime nor a model.

use std::time::{Duration, Instant};

use super::{Accelerator, Backend, DetectError, Detection, Detector, DetectorStatus, Timings};
use crate::capture::FrameRef;

/// The detections for a frame's sequence number.
type Script = Box<dyn FnMut(u64) -> Vec<Detection> + Send>;

/// Detections from a script.
pub struct ScriptedDetector {
    script: Script,
    /// Time each call takes (slept), as inference would.
    cost: Duration,
    /// The frame (sequence number) at which `detect` fails, and from then on.
    fail_from: Option<u64>,
    /// The call after which `detect` never returns (a hung inference).
    hang_after: Option<u64>,
    calls: u64,
    timings: Timings,
}

impl ScriptedDetector {
    /// A detector answering frame `sequence` with `script(sequence)`.
    pub fn new(script: impl FnMut(u64) -> Vec<Detection> + Send + 'static) -> Self {
        Self {
            script: Box::new(script),
            cost: Duration::ZERO,
            fail_from: None,
            hang_after: None,
            calls: 0,
            timings: Timings::default(),
        }
    }

    /// A detector that never finds anything.
    pub fn empty() -> Self {
        Self::new(|_| Vec::new())
    }

    /// Each call takes `cost` (a slow board).
    pub fn costing(mut self, cost: Duration) -> Self {
        self.cost = cost;
        self
    }

    /// Fails on the frame with this sequence number and every later one,
    /// as a runtime that broke would.
    pub fn failing_from(mut self, sequence: u64) -> Self {
        self.fail_from = Some(sequence);
        self
    }
}

impl ScriptedDetector {
    /// Answers `calls` frames, then blocks for good in the next call, as a
    /// hung runtime would (the systemd watchdog test).
    pub fn hanging_after(mut self, calls: u64) -> Self {
        self.hang_after = Some(calls);
        self
    }
}

impl Detector for ScriptedDetector {
    fn detect(
        &mut self,
        frame: &FrameRef<'_>,
        out: &mut Vec<Detection>,
    ) -> Result<(), DetectError> {
        let start = Instant::now();
        self.calls += 1;
        if self.hang_after.is_some_and(|after| self.calls > after) {
            tracing::warn!(
                frame = frame.sequence,
                "scripted detector: hanging for good"
            );
            loop {
                std::thread::park();
            }
        }
        if self.fail_from.is_some_and(|from| frame.sequence >= from) {
            return Err(DetectError::Inference(format!(
                "scripted failure on frame {}",
                frame.sequence
            )));
        }
        if !self.cost.is_zero() {
            std::thread::sleep(self.cost);
        }
        out.clear();
        out.extend((self.script)(frame.sequence));
        self.timings = Timings {
            preprocess: Duration::ZERO,
            inference: start.elapsed(),
            postprocess: Duration::ZERO,
        };
        Ok(())
    }

    fn status(&self) -> DetectorStatus {
        DetectorStatus {
            backend: Backend::Litert,
            runtime: "scripted".into(),
            model: "scripted".into(),
            requested: Accelerator::Cpu,
            accelerator: Accelerator::Cpu,
            fallback: None,
            threads: 1,
        }
    }

    fn timings(&self) -> Timings {
        self.timings
    }
}
