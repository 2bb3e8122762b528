//! The daemon's pipeline: frames in one direction through three threads.
//!
//! ```text
//!  capture thread            inference thread                      main thread
//!  source.next_frame ──q──▶  motion gate ─▶ detector ─▶ tracker ──▶ events, health,
//!  (copy into a pooled      (skipped frames only        ─▶ analytics   camera watch,
//!   buffer)                  advance the tracker)                      lighting
//! ```
//!
//! The queue `q` holds `pipeline.queue` frames. From a camera, when it is
//! full the oldest frame is dropped and counted (inference slower than the
//! camera must not make the picture stale); from a recording played as
//! fast as possible the capture thread waits instead, so every frame is
//! analysed and a recording always gives the same counts.
//!
//! The main thread never waits on the camera: it reports `health` on time,
//! notices a camera that stopped delivering (an `error` event `camera_lost`
//! at once, `status` `camera_back` when frames flow again), and takes the
//! analytics' outputs as they come.
//!
//! With a `[lighting]` section a fourth thread drives the lamp
//! ([`crate::light::runner`]): the inference thread tells it, on every
//! frame, whether a configured class is in a configured zone or approaching
//! along a configured line; the main thread tells it when the camera is
//! lost; it applies the safe state when the pipeline stops.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::analytics::{Analytics, Output, Presence};
use crate::capture::{self, FrameLayout, FrameRef, FrameSource, SourceStats};
use crate::config::{Settings, SourceSettings};
use crate::detect::{self, Class, DetectSettings, Detection};
use crate::events::{self, Body, ErrorReport, Health, Sink};
use crate::light::runner::LightFeed;
use crate::light::{LightState, Lighting, PresenceSettings};
use crate::motion::MotionGate;
use crate::publish::reporter::Reporter;
use crate::shutdown::Shutdown;
use crate::track::Tracker;

/// A frame copied out of the driver's buffer, with when it arrived.
pub struct Frame {
    pub data: Vec<u8>,
    pub layout: FrameLayout,
    pub sequence: u64,
    pub timestamp: Duration,
    pub stream: u32,
    pub arrived: Instant,
}

impl Frame {
    pub fn as_ref(&self) -> FrameRef<'_> {
        FrameRef {
            data: &self.data,
            layout: self.layout,
            sequence: self.sequence,
            timestamp: self.timestamp,
            stream: self.stream,
        }
    }
}

/// Counters shared by the threads.
#[derive(Debug, Default)]
pub struct Counters {
    pub captured: AtomicU64,
    pub queue_dropped: AtomicU64,
    pub analysed: AtomicU64,
    pub inferences: AtomicU64,
    pub skipped_by_motion: AtomicU64,
    pub inference_ns: AtomicU64,
    pub tracks: AtomicU64,
}

/// What the caller wants beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stop after this many frames.
    pub max_frames: Option<u64>,
}

/// Messages from the inference and lighting threads to the main thread.
enum Note {
    Output(Output),
    /// The lamp's target level or reason changed.
    Light(LightState),
}

/// What a finished run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub frames: u64,
    pub analysed: u64,
    pub inferences: u64,
    pub skipped_by_motion: u64,
    pub queue_dropped: u64,
    /// Crossings per (line, direction, class).
    pub totals: BTreeMap<(String, String, Class), u64>,
    pub source: SourceStats,
    pub elapsed: Duration,
    /// Frame arrival → lamp output write, for each presence boost.
    pub boost_latencies: Vec<Duration>,
}

/// Whether what analytics see is presence by the lighting's rule: a
/// configured class in a configured zone, or approaching a configured line.
pub fn presence_matches(rule: &PresenceSettings, presence: &Presence) -> bool {
    let class_ok =
        |class: &Class| rule.classes.is_empty() || rule.classes.iter().any(|c| c == class.name());
    presence
        .zones
        .iter()
        .any(|(zone, class)| rule.zones.contains(zone) && class_ok(class))
        || presence
            .approaching
            .iter()
            .any(|(line, class)| rule.lines.contains(line) && class_ok(class))
}

/// Hooks the main thread calls; the daemon and the demo differ here.
pub trait Observer {
    /// An event was produced (and, with a reporter, committed).
    fn event(&mut self, _body: &Body) {}
}

/// An observer that does nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// Runs the pipeline until the source ends, `options.max_frames` frames
/// were captured, or a stop is requested.
pub fn run(
    settings: &Settings,
    options: &Options,
    shutdown: &Shutdown,
    mut reporter: Option<&mut Reporter>,
    observer: &mut dyn Observer,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let source = match capture::open(&settings.camera, shutdown) {
        Ok(source) => source,
        Err(err) => {
            if let Some(reporter) = &mut reporter {
                reporter.event(Body::Error(ErrorReport {
                    code: "camera_unavailable".into(),
                    message: format!("{err:#}"),
                }));
            }
            return Err(err.into());
        }
    };
    let info = source.info();
    tracing::info!(origin = %info.origin, format = %info.layout.format, width = info.layout.width, height = info.layout.height, fps = info.fps_negotiated, "capturing");
    let detector = match &settings.detect {
        Some(detect) => {
            let detector = detect::open(&detector_settings(detect, settings.tracking.low_score))
                .inspect_err(|err| {
                    if let Some(reporter) = &mut reporter {
                        reporter.event(Body::Error(ErrorReport {
                            code: "detector_unavailable".into(),
                            message: err.to_string(),
                        }));
                    }
                })?;
            let status = detector.status();
            tracing::info!(model = %status.model, backend = status.backend.name(), accelerator = %status.accelerator, threads = status.threads, fallback = status.fallback.as_deref().unwrap_or("none"), "detector ready");
            Some(detector)
        }
        None => None,
    };
    if let Some(reporter) = &reporter {
        reporter.status("started", format!("capturing from {}", info.origin));
    }

    let (note_tx, note_rx) = crossbeam_channel::unbounded::<Note>();
    let light_stop = Shutdown::new();
    let mut lighting_thread = None;
    let feed = match &settings.lighting {
        Some(light) => match Lighting::open_with_sysfs(light, &crate::light::sysfs_root()) {
            Ok(lighting) => {
                let feed = LightFeed::new();
                let notes = note_tx.clone();
                let thread = crate::light::runner::spawn(
                    lighting,
                    feed.clone(),
                    light_stop.clone(),
                    || events::now_ms() as i64,
                    move |change| {
                        let _ = notes.send(Note::Light(change));
                    },
                )
                .context("starting the lighting thread")?;
                lighting_thread = Some(thread);
                Some((feed, light.presence.clone()))
            }
            Err(err) => {
                tracing::error!("lighting: {err}");
                let body = Body::Error(ErrorReport {
                    code: "lighting_unavailable".into(),
                    message: err.to_string(),
                });
                if let Some(reporter) = &mut reporter {
                    reporter.event(body.clone());
                }
                observer.event(&body);
                None
            }
        },
        None => None,
    };

    // A recording played as fast as possible must not lose frames.
    let lossless = matches!(
        &settings.camera.source,
        SourceSettings::Replay(replay) if replay.pace == crate::config::Pace::Fast
    );
    let counters = Arc::new(Counters::default());
    let stats = Arc::new(Mutex::new(SourceStats::default()));
    let stop = shutdown.clone();
    let (frame_tx, frame_rx) = crossbeam_channel::bounded::<Frame>(settings.pipeline.queue);
    let (pool_tx, pool_rx) = crossbeam_channel::bounded::<Vec<u8>>(settings.pipeline.queue + 2);
    let capture = {
        let counters = Arc::clone(&counters);
        let stats = Arc::clone(&stats);
        let oldest = frame_rx.clone();
        let max_frames = options.max_frames;
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                capture_loop(
                    source, frame_tx, oldest, pool_rx, lossless, max_frames, &stop, &counters,
                    &stats,
                )
            })
            .context("starting the capture thread")?
    };
    let worker = {
        let feed = feed.clone();
        let counters = Arc::clone(&counters);
        let analytics = Analytics::new(settings.analytics.clone());
        let tracker = Tracker::new(settings.tracking.clone());
        let gate = MotionGate::new(settings.motion.clone());
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || {
                let stages = Stages {
                    detector,
                    gate,
                    tracker,
                    analytics,
                    feed,
                };
                stages.run(frame_rx, pool_tx, note_tx, &counters)
            })
            .context("starting the inference thread")?
    };

    // The main thread: events, health, camera watch.
    let origin = events::Origin {
        site: settings.device.site.clone(),
        device: settings.device.id.clone(),
    };
    let mut health = HealthMeter::new(&counters);
    let mut last_health = Instant::now();
    let mut log_meter = HealthMeter::new(&counters);
    let mut last_log = Instant::now();
    let mut last_frame: Option<Instant> = None;
    let mut captured_seen = 0;
    let mut camera_lost_since: Option<Instant> = None;
    let lost_after = settings.camera.frame_timeout + Duration::from_secs(1);
    let mut fiware = settings
        .fiware
        .then(|| crate::fiware::Mapper::new(origin.clone()));
    let mut finishing = false;
    loop {
        if worker.is_finished() && !finishing {
            // Drain what the worker sent, then stop the lamp (safe state).
            finishing = true;
            light_stop.request();
            if let Some(thread) = lighting_thread.take() {
                let _ = thread.join();
            }
        }
        let received = if finishing {
            note_rx
                .try_recv()
                .map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            note_rx.recv_timeout(Duration::from_millis(50))
        };
        match received {
            Ok(Note::Output(output)) => {
                let bodies = match output {
                    Output::Crossing(c) => vec![Body::Crossing(c)],
                    Output::Track(t) => vec![Body::Track(t)],
                    Output::Flow(f) => {
                        let mut bodies = Vec::new();
                        if let Some(mapper) = &mut fiware {
                            bodies.extend(
                                mapper
                                    .entities(&f, &settings.analytics)
                                    .into_iter()
                                    .map(Body::Fiware),
                            );
                        }
                        bodies.insert(0, Body::Flow(f));
                        bodies
                    }
                };
                for body in bodies {
                    if let Some(reporter) = &mut reporter {
                        reporter.event(body.clone());
                    }
                    observer.event(&body);
                }
            }
            Ok(Note::Light(change)) => {
                let body = Body::Light(change);
                if let Some(reporter) = &mut reporter {
                    reporter.event(body.clone());
                }
                observer.event(&body);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let captured = counters.captured.load(Ordering::Relaxed);
        if captured != captured_seen {
            captured_seen = captured;
            last_frame = Some(Instant::now());
        }
        let waited = last_frame.map_or_else(|| started.elapsed(), |at| at.elapsed());
        match camera_lost_since {
            None if waited >= lost_after && !shutdown.requested() && !finishing => {
                camera_lost_since = Some(Instant::now());
                if let Some((feed, _)) = &feed {
                    feed.camera(false);
                }
                tracing::warn!("no frame for {} ms: camera lost", waited.as_millis());
                let body = Body::Error(ErrorReport {
                    code: "camera_lost".into(),
                    message: format!(
                        "no frame from {} for {} ms; reopening with backoff",
                        info.origin,
                        waited.as_millis()
                    ),
                });
                if let Some(reporter) = &mut reporter {
                    reporter.event(body.clone());
                }
                observer.event(&body);
            }
            Some(since) if waited < lost_after => {
                camera_lost_since = None;
                if let Some((feed, _)) = &feed {
                    feed.camera(true);
                }
                tracing::info!("frames are flowing again");
                if let Some(reporter) = &reporter {
                    reporter.status(
                        "camera_back",
                        format!(
                            "frames are flowing again after {} ms",
                            since.elapsed().as_millis()
                        ),
                    );
                }
            }
            _ => {}
        }
        if let Some(reporter) = &mut reporter {
            if last_health.elapsed() >= settings.events.health_interval {
                last_health = Instant::now();
                let source_stats = *stats.lock().expect("stats lock");
                reporter.event(Body::Health(health.sample(&counters, &source_stats)));
            }
        }
        if last_log.elapsed() >= HEALTH_LOG_EVERY {
            last_log = Instant::now();
            let source_stats = *stats.lock().expect("stats lock");
            log_health(&log_meter.sample(&counters, &source_stats));
        }
    }
    let outcome = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the inference thread panicked"))?;
    let captured = capture
        .join()
        .map_err(|_| anyhow::anyhow!("the capture thread panicked"))?;
    let source_stats = *stats.lock().expect("stats lock");
    log_health(&log_meter.sample(&counters, &source_stats));
    if let Some(reporter) = &mut reporter {
        reporter.event(Body::Health(health.sample(&counters, &source_stats)));
    }
    let totals = outcome?;
    captured?;
    let boost_latencies = feed
        .map(|(feed, _)| feed.boost_latencies())
        .unwrap_or_default();
    Ok(Summary {
        boost_latencies,
        frames: counters.captured.load(Ordering::Relaxed),
        analysed: counters.analysed.load(Ordering::Relaxed),
        inferences: counters.inferences.load(Ordering::Relaxed),
        skipped_by_motion: counters.skipped_by_motion.load(Ordering::Relaxed),
        queue_dropped: counters.queue_dropped.load(Ordering::Relaxed),
        totals,
        source: source_stats,
        elapsed: started.elapsed(),
    })
}

/// The detector reports down to the tracker's low score; the tracker splits
/// confident from weak with the configured thresholds.
pub fn detector_settings(detect: &DetectSettings, low_score: f32) -> DetectSettings {
    let mut settings = detect.clone();
    for score in settings.min_scores.values_mut() {
        *score = score.min(low_score);
    }
    settings
}

#[allow(clippy::too_many_arguments)]
fn capture_loop(
    mut source: Box<dyn FrameSource>,
    tx: Sender<Frame>,
    oldest: Receiver<Frame>,
    pool: Receiver<Vec<u8>>,
    lossless: bool,
    max_frames: Option<u64>,
    stop: &Shutdown,
    counters: &Counters,
    stats: &Mutex<SourceStats>,
) -> anyhow::Result<()> {
    let mut count = 0u64;
    while !stop.requested() && max_frames.is_none_or(|max| count < max) {
        let mut frame = None;
        let mut buffer = pool.try_recv().unwrap_or_default();
        let more = source.next_frame(&mut |f| {
            buffer.clear();
            buffer.extend_from_slice(f.data);
            frame = Some((f.layout, f.sequence, f.timestamp, f.stream));
        });
        *stats.lock().expect("stats lock") = source.stats();
        let more = more.context("capture failed")?;
        if !more {
            break;
        }
        let Some((layout, sequence, timestamp, stream)) = frame else {
            continue;
        };
        count += 1;
        counters.captured.fetch_add(1, Ordering::Relaxed);
        let mut frame = Frame {
            data: buffer,
            layout,
            sequence,
            timestamp,
            stream,
            arrived: Instant::now(),
        };
        if lossless {
            if tx.send(frame).is_err() {
                break;
            }
            continue;
        }
        loop {
            match tx.try_send(frame) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    frame = back;
                    if oldest.try_recv().is_ok() {
                        counters.queue_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(TrySendError::Disconnected(_)) => return Ok(()),
            }
        }
    }
    Ok(())
}

/// The inference thread's stages.
struct Stages {
    detector: Option<Box<dyn detect::Detector>>,
    gate: MotionGate,
    tracker: Tracker,
    analytics: Analytics,
    /// The lamp's feed and what counts as presence for it.
    feed: Option<(LightFeed, PresenceSettings)>,
}

/// Frame times made continuous across reconnections and replay loops, and
/// mapped to UTC from the first frame.
struct Clock {
    offset: Option<(u32, Duration, Duration)>,
    last: Duration,
    wall_at_start: u64,
}

impl Clock {
    fn time(&mut self, frame: &Frame) -> Duration {
        let time = match self.offset {
            Some((stream, base, start)) if stream == frame.stream && frame.timestamp >= base => {
                start + (frame.timestamp - base)
            }
            _ => {
                // A new stream, or time went backwards: continue one
                // typical frame interval after the last frame.
                let start = if self.offset.is_some() {
                    self.last + Duration::from_millis(40)
                } else {
                    Duration::ZERO
                };
                self.offset = Some((frame.stream, frame.timestamp, start));
                start
            }
        };
        self.last = time;
        time
    }

    fn wall_ms(&self, time: Duration) -> u64 {
        self.wall_at_start + time.as_millis() as u64
    }
}

impl Stages {
    fn run(
        mut self,
        frames: Receiver<Frame>,
        pool: Sender<Vec<u8>>,
        notes: Sender<Note>,
        counters: &Counters,
    ) -> anyhow::Result<BTreeMap<(String, String, Class), u64>> {
        let mut clock = Clock {
            offset: None,
            last: Duration::ZERO,
            wall_at_start: events::now_ms(),
        };
        let mut detections: Vec<Detection> = Vec::new();
        let mut outputs = Vec::new();
        for frame in frames {
            counters.analysed.fetch_add(1, Ordering::Relaxed);
            let time = clock.time(&frame);
            let Some(detector) = &mut self.detector else {
                // No model: frames still keep the lamp's pipeline fresh.
                if let Some((feed, _)) = &self.feed {
                    feed.frame_arrived(false, frame.arrived);
                }
                let _ = pool.try_send(frame.data);
                continue;
            };
            let verdict = self.gate.check(&frame.as_ref(), time);
            let ran = verdict.runs() || self.tracker.has_tentative();
            if ran {
                if let Err(err) = detector.detect(&frame.as_ref(), &mut detections) {
                    if let Some((feed, _)) = &self.feed {
                        feed.detector(false);
                    }
                    return Err(err)
                        .with_context(|| format!("detection failed on frame {}", frame.sequence));
                }
                let t = detector.timings();
                let spent = t.preprocess + t.inference + t.postprocess;
                counters.inferences.fetch_add(1, Ordering::Relaxed);
                counters
                    .inference_ns
                    .fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
            } else {
                counters.skipped_by_motion.fetch_add(1, Ordering::Relaxed);
            }
            let update = self
                .tracker
                .update(time, ran.then_some(detections.as_slice()));
            counters
                .tracks
                .store(update.live.len() as u64, Ordering::Relaxed);
            self.analytics
                .frame(time, clock.wall_ms(time), &update, &mut outputs);
            for output in outputs.drain(..) {
                let _ = notes.send(Note::Output(output));
            }
            if let Some((feed, rule)) = &self.feed {
                let present = presence_matches(rule, self.analytics.presence());
                feed.frame_arrived(present, frame.arrived);
            }
            let _ = pool.try_send(frame.data);
        }
        let ended = self.tracker.finish();
        self.analytics.finish(&ended, &mut outputs);
        for output in outputs.drain(..) {
            let _ = notes.send(Note::Output(output));
        }
        Ok(self.analytics.totals().clone())
    }
}

/// Time between two health lines in the log.
const HEALTH_LOG_EVERY: Duration = Duration::from_secs(10);

fn log_health(h: &Health) {
    tracing::info!(
        fps = (h.fps * 10.0).round() / 10.0,
        frames = h.frames,
        dropped = h.dropped_frames,
        queue_dropped = h.queue_dropped,
        inferences = h.inferences,
        skipped_by_motion = h.skipped_by_motion,
        inference_ms = (h.inference_ms * 10.0).round() / 10.0,
        tracks = h.tracks,
        reconnects = h.reconnects,
        outage_ms = h.outage_ms,
        "health"
    );
}

/// Turns the counters into `health` figures over each interval.
struct HealthMeter {
    at: Instant,
    captured: u64,
    inferences: u64,
    inference_ns: u64,
}

impl HealthMeter {
    fn new(counters: &Counters) -> Self {
        HealthMeter {
            at: Instant::now(),
            captured: counters.captured.load(Ordering::Relaxed),
            inferences: counters.inferences.load(Ordering::Relaxed),
            inference_ns: counters.inference_ns.load(Ordering::Relaxed),
        }
    }

    /// The figures the pipeline measures; the reporter fills in its own.
    fn sample(&mut self, counters: &Counters, source: &SourceStats) -> Health {
        let now = HealthMeter::new(counters);
        let secs = now.at.duration_since(self.at).as_secs_f64();
        let frames = now.captured - self.captured;
        let runs = now.inferences - self.inferences;
        let fps = if secs > 0.0 {
            frames as f64 / secs
        } else {
            0.0
        };
        let inference_ms = if runs > 0 {
            (now.inference_ns - self.inference_ns) as f64 / runs as f64 / 1e6
        } else {
            0.0
        };
        let health = Health {
            fps: (fps * 10.0).round() / 10.0,
            frames: now.captured,
            dropped_frames: source.dropped + counters.queue_dropped.load(Ordering::Relaxed),
            reconnects: source.reconnects,
            outage_ms: source.outage_ms,
            inferences: now.inferences,
            skipped_by_motion: counters.skipped_by_motion.load(Ordering::Relaxed),
            queue_dropped: counters.queue_dropped.load(Ordering::Relaxed),
            inference_ms: (inference_ms * 100.0).round() / 100.0,
            tracks: counters.tracks.load(Ordering::Relaxed),
            outbox_depth: 0,
            broker_reconnects: 0,
        };
        *self = now;
        health
    }
}
