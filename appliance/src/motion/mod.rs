//! Motion gating: decides, cheaply, whether a frame is worth running the
//! model on.
//!
//! Each frame is scaled down to a small grey image (the converter's fast
//! path, about 160x120) and compared with a slowly updated background.
//! Pixels whose brightness differs by more than `threshold` are "changed";
//! when at least `min_area` of the picture changed, there is motion. The
//! gate then lets the frame through, and keeps letting frames through for
//! `hold` afterwards (so an object that stops is still seen on a few
//! frames); otherwise only one frame every `refresh` goes to the model, so
//! tracks are confirmed or ended even in a still scene. Frames the gate
//! holds back are not lost: the tracker coasts through them.

use std::time::Duration;

use crate::capture::FrameRef;
use crate::convert::{ConvertError, Converter};

/// The `[motion]` section, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionSettings {
    /// Off: every frame goes to the model.
    pub enabled: bool,
    /// Width of the grey image compared (height follows the aspect ratio).
    pub width: u32,
    /// Brightness difference (0-255) that counts as change.
    pub threshold: u8,
    /// Fraction of the picture that must change, 0-1.
    pub min_area: f32,
    /// How long frames keep going to the model after the last motion.
    pub hold: Duration,
    /// Longest time between two inferences, motion or not.
    pub refresh: Duration,
    /// How fast the background follows the scene (per frame, 0-1).
    pub learn_rate: f32,
}

impl Default for MotionSettings {
    fn default() -> Self {
        MotionSettings {
            enabled: true,
            width: 160,
            threshold: 20,
            min_area: 0.002,
            hold: Duration::from_millis(500),
            refresh: Duration::from_secs(1),
            learn_rate: 0.5,
        }
    }
}

/// Why the gate decided as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Something moved (or moved less than `hold` ago).
    Motion,
    /// Nothing moved but `refresh` has passed.
    Refresh,
    /// Gating is off.
    Always,
    /// Still scene: the model is spared.
    Skip,
}

impl Verdict {
    /// Whether the model runs on this frame.
    pub fn runs(self) -> bool {
        self != Verdict::Skip
    }
}

/// The gate's state across frames.
pub struct MotionGate {
    settings: MotionSettings,
    converter: Converter,
    small: Vec<u8>,
    background: Vec<f32>,
    last_motion: Option<Duration>,
    last_run: Option<Duration>,
    /// Fraction of the picture changed on the last frame.
    pub changed: f32,
    /// Which pixels of the small grey image changed on the last frame;
    /// kept only when asked for ([`MotionGate::keeping_moving`]).
    moving: Option<Vec<bool>>,
    small_size: (u32, u32),
}

impl MotionGate {
    pub fn new(settings: MotionSettings) -> Self {
        MotionGate {
            settings,
            converter: Converter::new(),
            small: Vec::new(),
            background: Vec::new(),
            last_motion: None,
            last_run: None,
            changed: 0.0,
            moving: None,
            small_size: (0, 0),
        }
    }

    /// A gate that also keeps where each frame changed, for
    /// [`MotionGate::moving`] (the daemon's gate does not: nothing reads it).
    pub fn keeping_moving(settings: MotionSettings) -> Self {
        MotionGate {
            moving: Some(Vec::new()),
            ..MotionGate::new(settings)
        }
    }

    /// Where the last frame changed: the small grey image's size and, row
    /// by row, whether each of its pixels changed (all `false` until the
    /// background is known; empty unless made by
    /// [`MotionGate::keeping_moving`]). Installer snapshots pixelate these
    /// regions.
    pub fn moving(&self) -> (u32, u32, &[bool]) {
        let moving = self.moving.as_deref().unwrap_or_default();
        (self.small_size.0, self.small_size.1, moving)
    }

    /// Looks at a frame taken at `time` (frame time) and decides. A frame
    /// that cannot be converted is let through: the detector will report
    /// the problem.
    pub fn check(&mut self, frame: &FrameRef<'_>, time: Duration) -> Verdict {
        if !self.settings.enabled {
            return Verdict::Always;
        }
        let moved = match self.measure(frame) {
            Ok(changed) => {
                self.changed = changed;
                changed >= self.settings.min_area
            }
            Err(_) => true,
        };
        if moved {
            self.last_motion = Some(time);
        }
        let recent = |at: Option<Duration>, within: Duration| {
            at.is_some_and(|at| time.saturating_sub(at) < within)
        };
        let verdict = if recent(
            self.last_motion,
            self.settings.hold.max(Duration::from_nanos(1)),
        ) {
            Verdict::Motion
        } else if !recent(self.last_run, self.settings.refresh) {
            Verdict::Refresh
        } else {
            Verdict::Skip
        };
        if verdict.runs() {
            self.last_run = Some(time);
        }
        verdict
    }

    /// Fraction of pixels that changed against the background, which is
    /// then updated.
    fn measure(&mut self, frame: &FrameRef<'_>) -> Result<f32, ConvertError> {
        let width = self.settings.width.min(frame.layout.width).max(8);
        let height = (u64::from(width) * u64::from(frame.layout.height)
            / u64::from(frame.layout.width.max(1)))
        .max(6) as u32;
        self.small.resize(width as usize * height as usize * 3, 0);
        self.converter
            .to_rgb_scaled(frame, width, height, &mut self.small)?;
        let pixels = self.small.chunks_exact(3);
        let n = pixels.len();
        self.small_size = (width, height);
        if let Some(moving) = &mut self.moving {
            moving.clear();
            moving.resize(n, false);
        }
        if self.background.len() != n {
            self.background = pixels.map(luma).collect();
            return Ok(0.0);
        }
        let threshold = f32::from(self.settings.threshold);
        let rate = self.settings.learn_rate;
        let mut changed = 0usize;
        let mut moving = self.moving.as_deref_mut();
        for (i, (bg, p)) in self.background.iter_mut().zip(pixels).enumerate() {
            let y = luma(p);
            let moved = (y - *bg).abs() > threshold;
            if moved {
                changed += 1;
            }
            if let Some(moving) = moving.as_deref_mut() {
                moving[i] = moved;
            }
            *bg += rate * (y - *bg);
        }
        Ok(changed as f32 / n as f32)
    }
}

fn luma(p: &[u8]) -> f32 {
    (77.0 * f32::from(p[0]) + 150.0 * f32::from(p[1]) + 29.0 * f32::from(p[2])) / 256.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{FrameLayout, PixelFormat, YuvEncoding};

    fn grey_frame(data: &[u8]) -> FrameRef<'_> {
        FrameRef {
            data,
            layout: FrameLayout {
                format: PixelFormat::Grey,
                width: 64,
                height: 48,
                stride: 64,
                yuv: YuvEncoding::default(),
            },
            sequence: 0,
            timestamp: Duration::ZERO,
            stream: 0,
        }
    }

    fn settings() -> MotionSettings {
        MotionSettings {
            width: 64,
            ..MotionSettings::default()
        }
    }

    #[test]
    fn a_still_scene_is_skipped_except_for_refreshes() {
        let mut gate = MotionGate::new(settings());
        let still = vec![100u8; 64 * 48];
        let mut runs = Vec::new();
        for i in 0..30u64 {
            let verdict = gate.check(&grey_frame(&still), Duration::from_millis(100 * i));
            runs.push(verdict);
        }
        // First frame (no background yet, no run yet) refreshes; then one
        // refresh per second.
        let ran: Vec<usize> = (0..30).filter(|&i| runs[i].runs()).collect();
        assert_eq!(ran, vec![0, 10, 20]);
        assert!(runs.iter().all(|v| *v != Verdict::Motion));
    }

    #[test]
    fn a_moving_square_opens_the_gate_until_the_background_absorbs_it() {
        let mut gate = MotionGate::new(settings());
        let mut verdicts = Vec::new();
        for i in 0..120u64 {
            let mut frame = vec![100u8; 64 * 48];
            // A bright 8x8 square moving right until frame 10, then still.
            let x0 = 4 * i.min(10) as usize;
            for y in 20..28 {
                for x in x0..x0 + 8 {
                    frame[y * 64 + x] = 250;
                }
            }
            verdicts.push(gate.check(&grey_frame(&frame), Duration::from_millis(100 * i)));
        }
        for (i, v) in verdicts.iter().enumerate().take(11).skip(1) {
            assert_eq!(*v, Verdict::Motion, "frame {i}");
        }
        // Once the stopped square is part of the background, only the
        // once-a-second refreshes reach the model.
        let late: Vec<Verdict> = verdicts[100..].to_vec();
        assert!(!late.contains(&Verdict::Motion), "{late:?}");
        let runs = late.iter().filter(|v| v.runs()).count();
        assert_eq!(runs, 2, "{late:?}");
    }

    #[test]
    fn the_moving_pixels_are_where_something_moved() {
        let mut gate = MotionGate::keeping_moving(settings());
        let still = vec![100u8; 64 * 48];
        gate.check(&grey_frame(&still), Duration::ZERO);
        assert!(gate.moving().2.iter().all(|m| !m), "no background yet");
        let mut frame = still.clone();
        for y in 20..28 {
            frame[y * 64 + 30..y * 64 + 38].fill(250);
        }
        gate.check(&grey_frame(&frame), Duration::from_millis(100));
        let (width, height, moving) = gate.moving();
        assert_eq!((width, height), (64, 48));
        for y in 0..48 {
            for x in 0..64 {
                let square = (30..38).contains(&x) && (20..28).contains(&y);
                assert_eq!(moving[y * 64 + x], square, "({x}, {y})");
            }
        }
    }

    #[test]
    fn gating_off_runs_every_frame() {
        let mut gate = MotionGate::new(MotionSettings {
            enabled: false,
            ..settings()
        });
        let still = vec![0u8; 64 * 48];
        for i in 0..5 {
            assert_eq!(
                gate.check(&grey_frame(&still), Duration::from_millis(i)),
                Verdict::Always
            );
        }
    }
}
