//! The daemon's pipeline: frames in one direction through its threads.
//!
//! ```text
//!  capture thread          inference thread                          main thread
//!  source.next_frame ─q─▶  motion gate ─▶ pacer ─▶ detector ─▶ tracker ─notes─▶ event sink,
//!  (copy into a pooled     (frames without inference only  ─▶ analytics    health, camera
//!   buffer, fill the        advance the tracker: boxes     ─▶ lamp feed ─┐ watch
//!   privacy masks)          held, or predicted)
//!                                                                   ▼
//!                                                 lighting thread: policy, outputs
//! ```
//!
//! [`run`] is handed its stages already opened ([`Stages`]: a frame source,
//! a detector, a lamp) and an [`events::Sink`]; the commands open the
//! devices and choose the sink (the daemon's reporter, the demo's printer,
//! a plain `Vec` in tests). The motion gate, tracker and analytics are
//! pure stages built from [`Options`]; so is the pacer ([`pace`]), which
//! decides on which frames where things move the model runs (the adaptive
//! inference rate, `[detect] adaptive`).
//!
//! The queue `q` holds `pipeline.queue` frames. From a camera, when it is
//! full the oldest frame is dropped and counted (inference slower than the
//! camera must not make the picture stale); from a recording played as
//! fast as possible ([`Options::lossless`]) the capture thread waits
//! instead, so every frame is analysed and a recording always gives the
//! same counts.
//!
//! The main thread never waits on the camera: it emits `health` on time,
//! notices a camera that stopped delivering ([`watch::CameraWatch`]: an
//! `error` event `camera_lost`, then a `status` `camera_back`), and passes
//! the analytics' outputs to the sink as they come.
//!
//! With a lamp, a fourth thread drives it ([`crate::light::runner`]): the
//! inference thread tells it on every frame whether a configured class is
//! in a configured zone or approaching along a configured line; the main
//! thread tells it when the camera is lost; the lamp's safe state is
//! applied when the pipeline stops, and its `light` event is the last one.
//!
//! A camera that could not be opened at start ([`FrameSource::away`], the
//! daemon's [`crate::capture::open_or_wait`]) is reported once (`error`
//! `camera_unavailable`) and the run goes on without frames until it
//! appears (`status` `camera_back`), instead of ending.
//!
//! The privacy masks ([`Options::masks`]) are filled on the capture thread,
//! in the frame's own format ([`crate::privacy::mask`]), before the frame is
//! queued: the motion gate and the detector never see what they cover, and
//! a detection whose foot point falls in a mask is dropped before tracking.
//! A frame that cannot be masked is skipped like a corrupt one.
//!
//! A frame the detector cannot convert (a corrupt or truncated MJPEG frame
//! from the camera) is skipped and counted (`bad_frames` in the log's
//! health line and in [`Summary`]); any other detector error ends the run.
//!
//! A [`supervise::Supervisor`] (systemd) hears when the run is ready, its
//! status, that frames are being analysed (the watchdog) and when it stops;
//! see [`supervise`] for the liveness rule.
//!
//! Ending: the run ends when the source ends, after `max_frames` frames,
//! or when `shutdown` is raised. Frames already queued are still analysed,
//! the tracker's open tracks are closed (`track` events), then the lamp is
//! put in its safe state. A stage that fails (the detector, the capture)
//! ends the run the same way, after an `error` event saying why, and
//! raises `shutdown` so every other loop winds down too (the capture
//! thread may be waiting for a lost camera): [`run`] then returns the
//! error, and the daemon exits non-zero for systemd to restart it.

mod clock;
pub mod health;
pub mod pace;
pub mod supervise;
#[cfg(test)]
mod tests;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::analytics::{Analytics, AnalyticsSettings, Output, Presence};
use crate::capture::{CaptureError, FrameLayout, FrameRef, FrameSource, SourceInfo, SourceStats};
use crate::detect::{Class, DetectError, Detection, Detector};
use crate::events::{self, Body, ErrorCode, ErrorReport, Origin, Sink, Status};
use crate::light::runner::LightFeed;
use crate::light::{LightState, Lighting, PresenceSettings};
use crate::motion::{MotionGate, MotionSettings};
use crate::privacy::mask::{self, Mask, Masker};
use crate::privacy::snapshot::{self, Scene, Shot, Watch};
use crate::privacy::Profile;
use crate::shutdown::Shutdown;
use crate::sync::lock;
use crate::track::{TrackSettings, Tracker};
use clock::FrameClock;
use health::{AnalysedStatus, Counts, Every, HealthMeter};
use pace::{Decision, PaceSettings, Pacer};
use supervise::{Liveness, Supervisor, Unsupervised};
use watch::{CameraWatch, Change};

/// `[pipeline]`, validated: the queues between threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineSettings {
    /// Frames waiting between capture and inference.
    pub queue: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self { queue: 2 }
    }
}

/// How a run goes, besides its stages.
#[derive(Debug, Clone)]
pub struct Options {
    /// Frames waiting between capture and inference.
    pub queue: usize,
    /// Wait for room in the queue instead of dropping the oldest frame (a
    /// recording played as fast as possible).
    pub lossless: bool,
    /// Stop after this many frames.
    pub max_frames: Option<u64>,
    /// No frame for this long: the camera counts as lost.
    pub camera_lost_after: Duration,
    /// Time between two `health` events.
    pub health_interval: Duration,
    pub motion: MotionSettings,
    /// How often the model runs on frames where things move.
    pub pace: PaceSettings,
    pub tracking: TrackSettings,
    pub analytics: AnalyticsSettings,
    /// Which analytics outputs become events (`privacy.publish`).
    pub profile: Profile,
    /// Blanked in every frame as it is captured (`privacy.masks`);
    /// detections standing in them are dropped.
    pub masks: Vec<Mask>,
    /// Who this pole is (FIWARE entity ids).
    pub origin: Origin,
    /// Where each inference's time is recorded, besides the counters.
    pub inference_time: Option<Arc<crate::metrics::Histogram>>,
    /// Orders for snapshots of the frames analysed next (remote snapshots,
    /// `privacy.remote_snapshots`); none: no snapshot is ever taken.
    pub snapshots: Option<Receiver<SnapshotOrder>>,
}

/// An order for a snapshot of the running pipeline's next `frames`
/// analysed frames: the last one shown, pixelated and annotated
/// ([`crate::privacy::snapshot::compose`]), sent back on `reply`.
#[derive(Debug)]
pub struct SnapshotOrder {
    pub frames: u64,
    pub reply: Sender<Result<Shot, String>>,
}

/// The lamp and what counts as presence for it.
pub struct Lamp {
    /// The policy and its opened outputs.
    pub lighting: Lighting,
    pub presence: PresenceSettings,
    /// What the pipeline tells the lighting thread; a clone held elsewhere
    /// can set a manual override.
    pub feed: LightFeed,
}

/// The opened stages a run is handed.
pub struct Stages {
    pub source: Box<dyn FrameSource>,
    /// No detector: frames only keep the lamp's pipeline fresh.
    pub detector: Option<Box<dyn Detector>>,
    pub lamp: Option<Lamp>,
}

/// What can end a run with an error.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
    #[error("capture failed: {0}")]
    Capture(#[from] CaptureError),
    #[error("detection failed on frame {sequence}: {source}")]
    Detect {
        sequence: u64,
        #[source]
        source: DetectError,
    },
}

/// What a finished run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub frames: u64,
    pub analysed: u64,
    pub inferences: u64,
    pub skipped_by_motion: u64,
    /// Frames where things moved but the tracker only predicted (the
    /// adaptive rate spared the model).
    pub predicted: u64,
    pub queue_dropped: u64,
    /// Frames the detector could not convert (corrupt MJPEG), skipped.
    pub bad_frames: u64,
    /// Crossings per (line, direction, class).
    pub totals: BTreeMap<(String, String, Class), u64>,
    pub source: SourceStats,
    pub elapsed: Duration,
    /// Frame arrival → lamp output write, for the most recent presence
    /// boosts (bounded, see [`crate::light::runner::LATENCIES_KEPT`]).
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

/// A frame copied out of the driver's buffer, with when it arrived.
struct Frame {
    data: Vec<u8>,
    layout: FrameLayout,
    sequence: u64,
    timestamp: Duration,
    stream: u32,
    arrived: Instant,
}

impl Frame {
    fn as_ref(&self) -> FrameRef<'_> {
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
struct Counters {
    captured: AtomicU64,
    queue_dropped: AtomicU64,
    analysed: AtomicU64,
    inferences: AtomicU64,
    skipped_by_motion: AtomicU64,
    predicted: AtomicU64,
    inference_ns: AtomicU64,
    tracks: AtomicU64,
    /// Frames the inference thread is done with (`analysed` counts those
    /// it took): a difference means it is busy with one.
    finished: AtomicU64,
    bad_frames: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            captured: get(&self.captured),
            analysed: get(&self.analysed),
            inferences: get(&self.inferences),
            skipped_by_motion: get(&self.skipped_by_motion),
            predicted: get(&self.predicted),
            queue_dropped: get(&self.queue_dropped),
            inference_ns: get(&self.inference_ns),
            tracks: get(&self.tracks),
        }
    }
}

/// Messages from the inference and lighting threads to the main thread.
enum Note {
    Output(Output),
    /// The lamp's target level or reason changed.
    Light(LightState),
    /// A stage failed; the run is ending.
    Failed(ErrorReport),
}

/// Time between two looks at the camera watch and the timers.
const TICK: Duration = Duration::from_millis(50);
/// At most one log line per this long about skipped corrupt frames.
const BAD_FRAME_LOG_EVERY: Duration = Duration::from_secs(10);
/// Time between two health lines in the log.
const HEALTH_LOG_EVERY: Duration = Duration::from_secs(10);
/// How often the status line's count of analysed frames is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(10);

fn spawn<T: Send + 'static>(
    name: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, PipelineError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|source| PipelineError::Thread { name, source })
}

fn status(state: &str, detail: String) -> Body {
    Body::Status(Status {
        state: state.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        detail,
    })
}

/// Runs the pipeline until the source ends, `options.max_frames` frames
/// were captured, `shutdown` is raised, or a stage fails.
pub fn run(
    stages: Stages,
    options: &Options,
    sink: &mut dyn Sink,
    shutdown: &Shutdown,
) -> Result<Summary, PipelineError> {
    run_supervised(stages, options, sink, shutdown, &mut Unsupervised)
}

/// The status line while frames flow.
fn analysing(info: &SourceInfo) -> String {
    format!("analysing frames from {}", info.origin)
}

/// [`run`], reporting to `supervisor`: ready once the threads run (the
/// camera open or waited for), the status as the camera comes and goes,
/// liveness every watchdog period, stopping when the run winds down.
pub fn run_supervised(
    stages: Stages,
    options: &Options,
    sink: &mut dyn Sink,
    shutdown: &Shutdown,
    supervisor: &mut dyn Supervisor,
) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let Stages {
        source,
        detector,
        lamp,
    } = stages;
    let info = source.info();
    let away = source.away();
    let ready_status = match &away {
        None => {
            tracing::info!(origin = %info.origin, format = %info.layout.format, width = info.layout.width, height = info.layout.height, fps = info.fps_negotiated, "capturing");
            sink.event(status("started", format!("capturing from {}", info.origin)));
            analysing(&info)
        }
        Some(reason) => {
            tracing::warn!(origin = %info.origin, "camera unavailable, waiting for it: {reason}");
            sink.event(status(
                "started",
                format!("waiting for camera {}", info.origin),
            ));
            sink.event(Body::Error(ErrorReport {
                code: ErrorCode::CameraUnavailable,
                message: format!("{reason}; waiting for it, retrying with backoff"),
            }));
            format!("waiting for camera {}: {reason}", info.origin)
        }
    };

    let (note_tx, note_rx) = crossbeam_channel::unbounded::<Note>();
    let light_stop = Shutdown::new();
    let (feed, mut lighting_thread) = match lamp {
        Some(Lamp {
            lighting,
            presence,
            feed,
        }) => {
            if away.is_some() {
                feed.camera(false);
            }
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
            .map_err(|source| PipelineError::Thread {
                name: "lighting",
                source,
            })?;
            (Some((feed, presence)), Some(thread))
        }
        None => (None, None),
    };

    let counters = Arc::new(Counters::default());
    let stats = Arc::new(Mutex::new(SourceStats::default()));
    // Raised by the main thread once the inference thread is done, so the
    // capture thread stops even when nobody takes its frames any more.
    let halt = Shutdown::new();
    let (frame_tx, frame_rx) = crossbeam_channel::bounded::<Frame>(options.queue.max(1));
    let (pool_tx, pool_rx) = crossbeam_channel::bounded::<Vec<u8>>(options.queue + 2);
    let capture = {
        let capture = CaptureLoop {
            tx: frame_tx,
            // Only a camera drops its oldest frame; a lossless replay holds
            // no receiver, so its sends fail once inference is gone.
            oldest: (!options.lossless).then(|| frame_rx.clone()),
            pool: pool_rx,
            max_frames: options.max_frames,
            stops: [shutdown.clone(), halt.clone()],
            counters: Arc::clone(&counters),
            stats: Arc::clone(&stats),
            masker: Masker::new(&options.masks),
        };
        spawn("capture", move || capture.run(source))?
    };
    let worker = {
        let analysis = Analysis {
            detector,
            gate: MotionGate::new(options.motion.clone()),
            pacer: Pacer::new(options.pace),
            masks: options.masks.clone(),
            tracker: Tracker::new(options.tracking.clone()),
            analytics: Analytics::new(options.analytics.clone()),
            feed: feed.clone(),
            counters: Arc::clone(&counters),
            inference_time: options.inference_time.clone(),
            snapshots: options.snapshots.clone(),
            taking: None,
            motion: options.motion.clone(),
            scene: options.analytics.clone(),
            origin: options.origin.clone(),
            shutdown: shutdown.clone(),
            bad_frame_log: Every::new(
                BAD_FRAME_LOG_EVERY,
                Instant::now()
                    .checked_sub(BAD_FRAME_LOG_EVERY)
                    .unwrap_or_else(Instant::now),
            ),
        };
        spawn("inference", move || {
            analysis.run(frame_rx, pool_tx, note_tx)
        })
        .inspect_err(|_| halt.request())?
    };

    // The main thread: events, health, camera watch.
    let mut fiware = options
        .analytics
        .fiware
        .then(|| crate::fiware::Mapper::new(options.origin.clone()));
    let now = Instant::now();
    // Frames flow (the camera is open and not lost): the status line then
    // carries the count of frames analysed.
    let mut flowing = away.is_none();
    let mut watch = match away {
        None => CameraWatch::new(options.camera_lost_after, now),
        Some(_) => CameraWatch::away(options.camera_lost_after, now),
    };
    supervisor.ready(&ready_status);
    let mut liveness = supervisor
        .watchdog_period()
        .map(|period| Liveness::new(period, now));
    let mut stopping_told = false;
    let mut health = HealthMeter::new(counters.snapshot(), now);
    let mut health_due = Every::new(options.health_interval, now);
    let mut log_meter = HealthMeter::new(counters.snapshot(), now);
    let mut log_due = Every::new(HEALTH_LOG_EVERY, now);
    let mut captured_seen = 0;
    let mut finishing = false;
    let mut analysed_status = AnalysedStatus::new(STATUS_EVERY, now);
    loop {
        if (worker.is_finished() || shutdown.requested()) && !stopping_told {
            stopping_told = true;
            supervisor.stopping(if shutdown.requested() {
                "stopping on signal"
            } else {
                "stopping: the analysis ended"
            });
        }
        if worker.is_finished() && !finishing {
            // Drain what the worker sent, then stop the lamp (safe state,
            // the last event).
            finishing = true;
            halt.request();
            light_stop.request();
            if let Some(thread) = lighting_thread.take() {
                if thread.join().is_err() {
                    tracing::error!("the lighting thread panicked");
                }
            }
        }
        let received = if finishing {
            note_rx
                .try_recv()
                .map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            note_rx.recv_timeout(TICK)
        };
        match received {
            Ok(Note::Output(output)) => emit(
                output,
                options.profile,
                &options.analytics,
                &mut fiware,
                sink,
            ),
            Ok(Note::Light(change)) => sink.event(Body::Light(change)),
            Ok(Note::Failed(report)) => sink.event(Body::Error(report)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        let counts = counters.snapshot();
        supervisor.analysed(counts.analysed);
        if let Some(liveness) = &mut liveness {
            let finished = counters.finished.load(Ordering::Relaxed);
            match liveness.check(now, finished, counts.analysed != finished) {
                Some(true) => supervisor.alive(),
                Some(false) => tracing::warn!(
                    "no frame finished analysis for a watchdog period: not feeding the watchdog"
                ),
                _ => {}
            }
        }
        if flowing && !finishing {
            if let Some(line) = analysed_status.check(&analysing(&info), counts.analysed, now) {
                supervisor.status(&line);
            }
        }
        if counts.captured != captured_seen {
            captured_seen = counts.captured;
            watch.frame(now);
        }
        if !finishing && !shutdown.requested() {
            match watch.check(now) {
                Some(Change::Lost { waited }) => {
                    if let Some((feed, _)) = &feed {
                        feed.camera(false);
                    }
                    flowing = false;
                    tracing::warn!("no frame for {} ms: camera lost", waited.as_millis());
                    supervisor.status(&format!(
                        "camera {} lost: no frame for {} ms; reopening with backoff",
                        info.origin,
                        waited.as_millis()
                    ));
                    sink.event(Body::Error(ErrorReport {
                        code: ErrorCode::CameraLost,
                        message: format!(
                            "no frame from {} for {} ms; reopening with backoff",
                            info.origin,
                            waited.as_millis()
                        ),
                    }));
                }
                Some(Change::Back { after }) => {
                    if let Some((feed, _)) = &feed {
                        feed.camera(true);
                    }
                    flowing = true;
                    tracing::info!("frames are flowing again");
                    supervisor.status(&analysing(&info));
                    sink.event(status(
                        "camera_back",
                        format!("frames are flowing again after {} ms", after.as_millis()),
                    ));
                }
                None => {}
            }
        }
        if health_due.due(now) {
            let source_stats = *lock(&stats);
            sink.event(Body::Health(health.sample(counts, &source_stats, now)));
        }
        if log_due.due(now) {
            let source_stats = *lock(&stats);
            log_health(&log_meter.sample(counts, &source_stats, now));
        }
    }
    let analysed = worker
        .join()
        .map_err(|_| PipelineError::Panicked("inference"));
    if analysed.as_ref().is_ok_and(Result::is_err) || analysed.is_err() {
        // The capture thread may be waiting for a lost camera.
        shutdown.request();
    }
    let captured = capture
        .join()
        .map_err(|_| PipelineError::Panicked("capture"));
    let now = Instant::now();
    let source_stats = *lock(&stats);
    let counts = counters.snapshot();
    log_health(&log_meter.sample(counts, &source_stats, now));
    let bad_frames = counters.bad_frames.load(Ordering::Relaxed);
    if bad_frames > 0 {
        tracing::warn!(
            bad_frames,
            "skipped {bad_frames} frames that could not be converted"
        );
    }
    let mut failure = None;
    if let Ok(Err(err)) | Err(err) = captured {
        sink.event(Body::Error(ErrorReport {
            code: ErrorCode::CaptureFailed,
            message: err.to_string(),
        }));
        failure = Some(err);
    }
    sink.event(Body::Health(health.sample(counts, &source_stats, now)));
    let totals = match analysed {
        Ok(Ok(totals)) => totals,
        Ok(Err(err)) | Err(err) => return Err(err),
    };
    if let Some(err) = failure {
        return Err(err);
    }
    Ok(Summary {
        boost_latencies: feed
            .map(|(feed, _)| feed.boost_latencies())
            .unwrap_or_default(),
        frames: counts.captured,
        analysed: counts.analysed,
        inferences: counts.inferences,
        skipped_by_motion: counts.skipped_by_motion,
        predicted: counts.predicted,
        queue_dropped: counts.queue_dropped,
        bad_frames,
        totals,
        source: source_stats,
        elapsed: started.elapsed(),
    })
}

/// An analytics output as events, as the data profile allows: a flow is
/// followed by its FIWARE entities when they are asked for (counts per
/// line and direction, published with every profile).
fn emit(
    output: Output,
    profile: Profile,
    analytics: &AnalyticsSettings,
    fiware: &mut Option<crate::fiware::Mapper>,
    sink: &mut dyn Sink,
) {
    if let Output::Crossing(c) = &output {
        sink.seen(c);
    }
    let entities = match &output {
        Output::Flow(f) => fiware
            .as_mut()
            .map(|mapper| mapper.entities(f, analytics))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    // The one place analytics become events: the profile decides.
    if let Some(body) = profile.event(output) {
        sink.event(body);
    }
    for entity in entities {
        sink.event(Body::Fiware(entity));
    }
}

/// The capture thread: frames from the source into the queue.
struct CaptureLoop {
    tx: Sender<Frame>,
    /// The queue's other end, to drop the oldest frame when it is full;
    /// `None` for a lossless run.
    oldest: Option<Receiver<Frame>>,
    /// Buffers the inference thread is done with.
    pool: Receiver<Vec<u8>>,
    max_frames: Option<u64>,
    /// The caller's stop and the pipeline's own.
    stops: [Shutdown; 2],
    counters: Arc<Counters>,
    stats: Arc<Mutex<SourceStats>>,
    /// Fills the privacy masks before the frame goes anywhere.
    masker: Option<Masker>,
}

impl CaptureLoop {
    fn stopping(&self) -> bool {
        self.stops.iter().any(Shutdown::requested)
    }

    fn run(mut self, mut source: Box<dyn FrameSource>) -> Result<(), PipelineError> {
        let mut count = 0u64;
        while !self.stopping() && self.max_frames.is_none_or(|max| count < max) {
            let mut frame = None;
            let mut buffer = self.pool.try_recv().unwrap_or_default();
            let more = source.next_frame(&mut |f| {
                buffer.clear();
                buffer.extend_from_slice(f.data);
                frame = Some((f.layout, f.sequence, f.timestamp, f.stream));
            });
            *lock(&self.stats) = source.stats();
            if !more? {
                break;
            }
            let Some((mut layout, sequence, timestamp, stream)) = frame else {
                continue;
            };
            count += 1;
            self.counters.captured.fetch_add(1, Ordering::Relaxed);
            if let Some(masker) = &mut self.masker {
                if let Err(err) = masker.apply(&mut buffer, &mut layout) {
                    // Never passed on unmasked: skipped like a corrupt frame.
                    let n = self.counters.bad_frames.fetch_add(1, Ordering::Relaxed) + 1;
                    self.counters.finished.fetch_add(1, Ordering::Relaxed);
                    if n == 1 || n % 100 == 0 {
                        tracing::warn!(sequence, bad_frames = n, "skipping a frame: {err}");
                    }
                    continue;
                }
            }
            let mut frame = Frame {
                data: buffer,
                layout,
                sequence,
                timestamp,
                stream,
                arrived: Instant::now(),
            };
            let Some(oldest) = &self.oldest else {
                if self.tx.send(frame).is_err() {
                    break; // inference is gone
                }
                continue;
            };
            loop {
                match self.tx.try_send(frame) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        frame = back;
                        if oldest.try_recv().is_ok() {
                            self.counters.queue_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(TrySendError::Disconnected(_)) => return Ok(()),
                }
            }
        }
        Ok(())
    }
}

/// The inference thread's stages.
struct Analysis {
    detector: Option<Box<dyn Detector>>,
    gate: MotionGate,
    pacer: Pacer,
    /// Detections whose foot point is in one of these are dropped.
    masks: Vec<Mask>,
    tracker: Tracker,
    analytics: Analytics,
    /// The lamp's feed and what counts as presence for it.
    feed: Option<(LightFeed, PresenceSettings)>,
    counters: Arc<Counters>,
    inference_time: Option<Arc<crate::metrics::Histogram>>,
    /// Snapshot orders, the one being taken, and what it shows.
    snapshots: Option<Receiver<SnapshotOrder>>,
    taking: Option<(SnapshotOrder, Watch)>,
    motion: MotionSettings,
    scene: AnalyticsSettings,
    origin: Origin,
    shutdown: Shutdown,
    /// Paces the log line of skipped frames.
    bad_frame_log: Every,
}

impl Analysis {
    fn run(
        mut self,
        frames: Receiver<Frame>,
        pool: Sender<Vec<u8>>,
        notes: Sender<Note>,
    ) -> Result<BTreeMap<(String, String, Class), u64>, PipelineError> {
        let mut clock = FrameClock::new(events::now_ms());
        let mut detections: Vec<Detection> = Vec::new();
        let mut outputs = Vec::new();
        for frame in frames.iter() {
            self.counters.analysed.fetch_add(1, Ordering::Relaxed);
            let time = clock.time(frame.stream, frame.timestamp);
            let Some(detector) = &mut self.detector else {
                // No model: frames still keep the lamp's pipeline fresh.
                if let Some((feed, _)) = &self.feed {
                    feed.frame_arrived(false, frame.arrived);
                }
                let _ = pool.try_send(frame.data);
                self.counters.finished.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let verdict = self.gate.check(&frame.as_ref(), time);
            if self.taking.is_none() {
                if let Some(order) = self.snapshots.as_ref().and_then(|o| o.try_recv().ok()) {
                    self.taking = Some((order, Watch::new(&self.motion)));
                }
            }
            let shoot = match &mut self.taking {
                Some((order, watch)) => {
                    watch.see(&frame.as_ref(), time);
                    watch.seen() >= order.frames
                }
                None => false,
            };
            let decision = self
                .pacer
                .decide(time, verdict, self.tracker.has_tentative());
            let ran = decision == Decision::Run;
            // A snapshot pixelates everyone found, also those in a mask.
            let mut unmasked = None;
            if ran {
                match detector.detect(&frame.as_ref(), &mut detections) {
                    Err(DetectError::Convert(err)) => {
                        // A corrupt frame (truncated MJPEG): skip it, as
                        // a camera's glitch, not a broken detector.
                        let n = self.counters.bad_frames.fetch_add(1, Ordering::Relaxed) + 1;
                        if self.bad_frame_log.due(Instant::now()) {
                            tracing::warn!(
                                sequence = frame.sequence,
                                bad_frames = n,
                                "skipping a frame that cannot be converted: {err}"
                            );
                        }
                        let _ = pool.try_send(frame.data);
                        self.counters.finished.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(source) => {
                        let err = PipelineError::Detect {
                            sequence: frame.sequence,
                            source,
                        };
                        tracing::error!("{err}");
                        if let Some((feed, _)) = &self.feed {
                            feed.detector(false);
                        }
                        let _ = notes.send(Note::Failed(ErrorReport {
                            code: ErrorCode::DetectorFailed,
                            message: format!("{err}; the daemon stops"),
                        }));
                        // Wind everything down: the capture thread may be
                        // waiting for a camera that is away.
                        self.shutdown.request();
                        return Err(err);
                    }
                    Ok(()) => {}
                }
                if shoot {
                    unmasked = Some(detections.clone());
                }
                if !self.masks.is_empty() {
                    detections.retain(|d| !mask::covers(&self.masks, d.foot()));
                }
                let t = detector.timings();
                let spent = t.preprocess + t.inference + t.postprocess;
                self.counters.inferences.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .inference_ns
                    .fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
                if let Some(histogram) = &self.inference_time {
                    histogram.observe(spent);
                }
            } else if decision == Decision::Predict {
                self.counters.predicted.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counters
                    .skipped_by_motion
                    .fetch_add(1, Ordering::Relaxed);
            }
            if shoot {
                if let Some((order, watch)) = self.taking.take() {
                    let shot = take_snapshot(
                        detector.as_mut(),
                        &frame.as_ref(),
                        unmasked,
                        &watch,
                        &self.scene,
                        &self.masks,
                        &self.origin,
                    );
                    let _ = order.reply.send(shot);
                }
            }
            let update = match decision {
                Decision::Run => self.tracker.update(time, Some(&detections)),
                Decision::Predict => self.tracker.predict(time),
                Decision::Still => self.tracker.update(time, None),
            };
            if ran {
                self.pacer.plan(&update.live);
            }
            self.counters
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
            self.counters.finished.fetch_add(1, Ordering::Relaxed);
        }
        let ended = self.tracker.finish();
        self.analytics.finish(&ended, &mut outputs);
        for output in outputs.drain(..) {
            let _ = notes.send(Note::Output(output));
        }
        Ok(self.analytics.totals().clone())
    }
}

/// A remote snapshot of `frame`: the detections found on it before the
/// masks dropped any (`unmasked`; the detector runs again when the frame
/// was not analysed), pixelated with what `watch` saw move.
fn take_snapshot(
    detector: &mut dyn Detector,
    frame: &FrameRef<'_>,
    unmasked: Option<Vec<Detection>>,
    watch: &Watch,
    scene: &AnalyticsSettings,
    masks: &[Mask],
    origin: &Origin,
) -> Result<Shot, String> {
    let detections = match unmasked {
        Some(found) => found,
        None => {
            let mut found = Vec::new();
            detector
                .detect(frame, &mut found)
                .map_err(|e| format!("detecting on the snapshot's frame: {e}"))?;
            found
        }
    };
    snapshot::compose(
        frame,
        &detections,
        watch.maps(),
        Scene {
            lines: &scene.lines,
            zones: &scene.zones,
            calibration: &scene.calibration_points,
            masks,
            caption: snapshot::caption(&origin.site, &origin.device, events::now_ms()),
        },
    )
    .map_err(|e| format!("converting the snapshot's frame: {e}"))
}

fn log_health(h: &events::Health) {
    tracing::info!(
        fps = h.fps,
        frames = h.frames,
        dropped = h.dropped_frames,
        queue_dropped = h.queue_dropped,
        inferences = h.inferences,
        skipped_by_motion = h.skipped_by_motion,
        predicted = h.predicted,
        inference_fps = h.inference_fps,
        inference_ms = h.inference_ms,
        tracks = h.tracks,
        reconnects = h.reconnects,
        outage_ms = h.outage_ms,
        "health"
    );
}
