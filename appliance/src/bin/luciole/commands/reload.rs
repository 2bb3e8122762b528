//! The daemon's life between start and stop, with SIGHUP meaning "reload
//! the configuration".
//!
//! On SIGHUP the file is checked again with the start-up checks
//! ([`config::load_for_daemon`], the same as `check-config`) while the
//! pipeline keeps running. An invalid file changes nothing: the daemon
//! logs why and sends an `error` event `config_rejected`. A valid one
//! stops the pipeline (`status` `reloading`), restarts the event sink if
//! `[device]`, `[outbox]`, `[mqtt]`, `[remote]` or the data manifest
//! changed, and opens the new stages; if
//! they fail to open, the previous configuration is put back
//! (`config_rolled_back`) and runs on. SIGINT and SIGTERM stop the daemon
//! at any point.
//!
//! Under systemd a reload is not a stop: the pipeline's "stopping" is
//! told as `RELOADING=1` with a status, and the reopened stages say
//! `READY=1` again ([`Reloads`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use luciole::config::{self, Settings};
use luciole::events::{Body, ErrorCode, Sink};
use luciole::pipeline::supervise::Supervisor;
use luciole::pipeline::{self, PipelineError, Summary};
use luciole::publish::reporter::Reporter;
use luciole::shutdown::Shutdown;
use luciole::sync::lock;

use super::remote::{Context, Handler, Next};

/// How often the watcher looks at the signal flags.
const POLL: Duration = Duration::from_millis(50);

/// Time between two sweeps of what is past its retention.
const HOUSEKEEPING: Duration = Duration::from_secs(60);

/// Deletes what is past its retention (images in `privacy.images_dir`,
/// outboxes moved aside after corruption) and publishes the audit records
/// that `snapshot` and `capture` left in the images folder's spool.
fn keep_house(settings: &Settings, sink: &mut dyn Sink) {
    // The folder is made by the commands that write there, not here.
    let images = &settings.privacy.images;
    super::sweep_images(images);
    for (path, audit) in luciole::privacy::retention::spooled(&images.dir) {
        tracing::info!(record = %path.display(), "{}", audit.detail);
        sink.event(Body::Audit(audit));
        if let Err(err) = std::fs::remove_file(&path) {
            tracing::error!(record = %path.display(), "cannot delete a published audit record: {err}");
        }
    }
    if let Some(outbox) = &settings.outbox {
        luciole::outbox::prune_aside(outbox);
    }
}

/// Where events go: the outbox (and broker), or nowhere without `[outbox]`.
enum Events {
    Reporter(Reporter),
    Discard,
}

impl Events {
    fn start(settings: &Settings, remote: &Context) -> anyhow::Result<Events> {
        Ok(match super::reporter(settings, remote.inbox(settings))? {
            Some(reporter) => Events::Reporter(reporter),
            None => Events::Discard,
        })
    }

    fn finish(self) {
        if let Events::Reporter(reporter) = self {
            reporter.finish();
        }
    }
}

impl Sink for Events {
    fn event(&mut self, body: Body) {
        match self {
            Events::Reporter(reporter) => reporter.event(body),
            Events::Discard => {}
        }
    }
}

/// The event sink shared by the pipeline and the reload watcher; it keeps
/// the last `health` event for the `status` command.
#[derive(Clone)]
struct Shared(Arc<Mutex<Events>>, Context);

impl Sink for Shared {
    fn event(&mut self, body: Body) {
        match &body {
            Body::Health(health) => *lock(&self.1.health) = Some(health.clone()),
            Body::Light(light) => {
                let now = luciole::events::now_ms();
                *lock(&self.1.lamp_level) = Some(light.level);
                *lock(&self.1.last_event) = Some(("light", now));
                // The night's energy, reported when the night ends.
                let report = lock(&self.1.energy)
                    .as_mut()
                    .and_then(|meter| meter.observe(now as i64, light.level, light.night));
                if let Some(r) = report {
                    *lock(&self.1.last_energy) = Some(r.clone());
                    let mut events = lock(&self.0);
                    events.event(body);
                    events.event(Body::Energy(luciole::events::Energy {
                        from: luciole::events::rfc3339_ms(r.from_ms.max(0) as u64),
                        to: luciole::events::rfc3339_ms(r.to_ms.max(0) as u64),
                        night_h: round6(r.night_h),
                        used_kwh: round6(r.used_kwh),
                        full_kwh: round6(r.full_kwh),
                        saved_kwh: round6(r.saved_kwh),
                        lamp_watts: r.rated_w,
                    }));
                    return;
                }
            }
            // Commands are not what `status` means by the last event.
            Body::Audit(_) | Body::Update(_) | Body::Energy(_) => {}
            other => {
                *lock(&self.1.last_event) = Some((other.kind(), luciole::events::now_ms()));
            }
        }
        lock(&self.0).event(body);
    }
}

/// Six decimals (a milliwatt-hour in kWh): no binary noise in the event.
fn round6(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

impl Shared {
    /// Finishes the current sink (closing its outbox, so that the next one
    /// can open it), leaving events nowhere until [`Shared::start`].
    fn close(&self) {
        let current = std::mem::replace(&mut *lock(&self.0), Events::Discard);
        current.finish();
    }

    /// Closes the current sink and starts the one `settings` describe.
    fn restart(&self, settings: &Settings) -> anyhow::Result<()> {
        self.close();
        // The new session has not subscribed yet.
        self.1
            .subscribed
            .store(false, std::sync::atomic::Ordering::SeqCst);
        *lock(&self.0) = Events::start(settings, &self.1)?;
        Ok(())
    }
}

/// What the metrics endpoint shows, taken when it is asked.
fn snapshot(sink: Shared) -> impl Fn() -> luciole::metrics::Snapshot + Send + 'static {
    move || {
        let context = &sink.1;
        let (outbox_depth, stats) = match &*lock(&sink.0) {
            Events::Reporter(reporter) => (Some(reporter.depth()), reporter.publish_stats()),
            Events::Discard => (None, None),
        };
        let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        luciole::metrics::Snapshot {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_s: context.started.elapsed().as_secs(),
            health: lock(&context.health).clone(),
            outbox_depth,
            broker_connected: stats.as_ref().map(|s| s.connected.load(Ordering::Relaxed)),
            broker_reconnects: stats.as_ref().map_or(0, |s| count(&s.reconnects)),
            events_acked: stats.as_ref().map_or(0, |s| count(&s.acked)),
            events_set_aside: stats.as_ref().map_or(0, |s| count(&s.set_aside)),
            publish_latency: stats.as_ref().map(|s| s.latency.snapshot()),
            inference: Some(context.inference.snapshot()),
            lamp_level: *lock(&context.lamp_level),
            energy: lock(&context.energy)
                .as_ref()
                .map(|meter| luciole::metrics::EnergyFigures {
                    used_total_kwh: meter.used_total_kwh,
                    last_night: lock(&context.last_energy).clone(),
                }),
        }
    }
}

/// Whether the event sink of `a` and `b` differ (who speaks, where events
/// are kept, which broker).
fn sink_changed(a: &Settings, b: &Settings) -> bool {
    // `[remote]` too: the publisher's subscriptions come from it; and the
    // data manifest, which the publisher publishes on connecting.
    a.device != b.device
        || a.outbox != b.outbox
        || a.mqtt != b.mqtt
        || a.remote != b.remote
        || super::manifest::facts(a) != super::manifest::facts(b)
}

/// Runs the daemon on `config` until a stop signal in `signals`, the end of
/// a replay or a failure, reloading on SIGHUP.
pub fn serve(
    config: &Path,
    signals: &Shutdown,
    supervisor: &mut dyn Supervisor,
) -> anyhow::Result<Result<Summary, PipelineError>> {
    let reloading = Arc::new(AtomicBool::new(false));
    let context = Context::new();
    let mut supervisor = Reloads {
        inner: supervisor,
        reloading: Arc::clone(&reloading),
        analysed: Arc::clone(&context.analysed),
    };
    // Before the file is read: an unconfirmed remote change may be rolled
    // back first.
    let handler = Arc::new(Mutex::new(Handler::start(config, context.clone())?));
    let mut settings = config::load_for_daemon(config)?;
    tracing::info!("{}", super::summary(&settings));
    for warning in super::manifest::warnings(&settings) {
        tracing::warn!("{warning}");
    }
    let mut sink = Shared(
        Arc::new(Mutex::new(Events::start(&settings, &context)?)),
        context.clone(),
    );
    // Started once, with the settings the daemon starts with.
    // A port taken is logged, not fatal: the pole keeps counting and
    // lighting without its metrics.
    let _metrics = settings.metrics.as_ref().and_then(|metrics| {
        super::metrics::Server::start(metrics, snapshot(sink.clone()))
            .inspect_err(|err| tracing::error!("{err:#}; running without metrics"))
            .ok()
    });
    // The configuration to go back to if the current one fails to open.
    let mut previous: Option<Settings> = None;
    loop {
        let stop = Shutdown::new();
        reloading.store(false, Ordering::SeqCst);
        context.analysed.store(0, Ordering::SeqCst);
        lock(&handler).configure(&settings);
        context.meter_lamp(settings.lighting.as_ref().and_then(|l| l.lamp_watts));
        let watcher = Watcher::spawn(
            config, &settings, signals, &stop, &sink, &reloading, &handler,
        );
        let stages = match super::run::stages(&settings, &stop, &mut sink) {
            Ok(stages) => stages,
            Err(err) => {
                stop.request();
                watcher.join();
                lock(&handler).failed_to_open(&mut sink, &format!("{err:#}"));
                let Some(old) = previous.take().filter(|_| !signals.requested()) else {
                    sink.close();
                    return Err(err);
                };
                let message = format!(
                    "{}: the new configuration failed to start ({err:#}); back to the previous one",
                    config.display()
                );
                tracing::error!("{message}");
                if sink_changed(&settings, &old) {
                    sink.restart(&old)?;
                }
                settings = old;
                super::error(&mut sink, ErrorCode::ConfigRolledBack, message);
                continue;
            }
        };
        // These settings opened: they are the ones to go back to from now.
        previous = None;
        *lock(&context.lamp) = stages.lamp.as_ref().map(|lamp| lamp.feed.clone());
        if let (Some(lamp), Some(manual)) = (&stages.lamp, context.manual_in_force()) {
            lamp.feed.set_manual(Some(manual));
        }
        let mut options = settings.pipeline_options();
        options.inference_time = Some(Arc::clone(&context.inference));
        options.snapshots = settings
            .privacy
            .remote_snapshots
            .then(|| context.snapshots.1.clone());
        let outcome = pipeline::run_supervised(stages, &options, &mut sink, &stop, &mut supervisor);
        stop.request();
        *lock(&context.lamp) = None;
        let next = watcher.join();
        match next {
            Some(End::Reload { next, why }) if outcome.is_ok() && !signals.requested() => {
                let rollback = why == Why::RolledBack;
                sink.event(super::status(
                    "reloading",
                    format!("applying {} ({})", config.display(), why.describe()),
                ));
                if sink_changed(&settings, &next) {
                    if let Err(err) = sink.restart(&next) {
                        sink.restart(&settings)?;
                        let message = format!(
                            "{}: the new configuration failed to start ({err:#}); back to the previous one",
                            config.display()
                        );
                        tracing::error!("{message}");
                        super::error(&mut sink, ErrorCode::ConfigRolledBack, message);
                        // A remote apply's file goes back too.
                        lock(&handler).failed_to_open(&mut sink, &format!("{err:#}"));
                        continue;
                    }
                }
                tracing::info!("{}", super::summary(&next));
                previous = Some(std::mem::replace(&mut settings, *next));
                if rollback {
                    // Never back to the configuration just rolled back.
                    previous = None;
                }
            }
            Some(End::Restart) if outcome.is_ok() && !signals.requested() => {
                sink.event(super::status(
                    "stopping",
                    "restarting on a remote command".into(),
                ));
                tracing::info!(
                    "stopping to restart (a remote command); systemd starts the daemon again"
                );
                sink.close();
                return Ok(outcome);
            }
            _ => {
                super::finish(&mut sink, &outcome, signals);
                sink.close();
                return Ok(outcome);
            }
        }
    }
}

/// Why a run was stopped to start again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    Sighup,
    Applied,
    RolledBack,
}

impl Why {
    fn describe(self) -> &'static str {
        match self {
            Why::Sighup => "SIGHUP",
            Why::Applied => "remote config.apply",
            Why::RolledBack => "rolling back a remote config.apply",
        }
    }
}

/// How a watcher ended a run (none: a stop signal, or the run ended).
enum End {
    Reload { next: Box<Settings>, why: Why },
    Restart,
}

/// Watches the signal flags and the command inbox while one configuration
/// runs: a stop signal stops the run; SIGHUP checks the file and stops the
/// run when it is valid; a command is handled ([`Handler`]) and may stop
/// the run to apply or roll back a configuration, or to restart. What
/// [`Watcher::join`] returns says which.
struct Watcher {
    thread: Option<JoinHandle<Option<End>>>,
}

impl Watcher {
    fn spawn(
        config: &Path,
        current: &Settings,
        signals: &Shutdown,
        stop: &Shutdown,
        sink: &Shared,
        reloading: &Arc<AtomicBool>,
        handler: &Arc<Mutex<Handler>>,
    ) -> Watcher {
        let (config, current) = (config.to_owned(), current.clone());
        let (signals, stop, sink) = (signals.clone(), stop.clone(), sink.clone());
        let reloading = Arc::clone(reloading);
        let handler = Arc::clone(handler);
        let thread = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                watch(
                    &config, &current, &signals, &stop, sink, &reloading, &handler,
                )
            });
        match thread {
            Ok(thread) => Watcher {
                thread: Some(thread),
            },
            Err(err) => {
                // Without it SIGHUP does nothing; the daemon still runs.
                tracing::error!("cannot start the reload thread: {err}");
                Watcher { thread: None }
            }
        }
    }

    /// How the watcher ended the run, if it did.
    fn join(self) -> Option<End> {
        self.thread?.join().ok().flatten()
    }
}

fn watch(
    config: &Path,
    current: &Settings,
    signals: &Shutdown,
    stop: &Shutdown,
    mut sink: Shared,
    reloading: &AtomicBool,
    handler: &Mutex<Handler>,
) -> Option<End> {
    let inbox = lock(handler).context.receiver.clone();
    let restart = |next: Next| match next {
        Next::Stay => None,
        Next::Reload(next) => {
            reloading.store(true, Ordering::SeqCst);
            stop.request();
            let why = if lock(handler).applying() {
                Why::Applied
            } else {
                Why::RolledBack
            };
            Some(End::Reload { next, why })
        }
        Next::Restart => {
            stop.request();
            Some(End::Restart)
        }
    };
    let mut housekeeping = std::time::Instant::now();
    loop {
        if signals.requested() {
            stop.request();
            return None;
        }
        if stop.requested() {
            return None;
        }
        if std::time::Instant::now() >= housekeeping {
            keep_house(current, &mut sink);
            housekeeping = std::time::Instant::now() + HOUSEKEEPING;
        }
        if signals.take_reload() {
            tracing::info!("SIGHUP: checking {}", config.display());
            match config::load_for_daemon(config) {
                Ok(next) => {
                    if &next == current {
                        tracing::info!("the configuration is unchanged; restarting the stages");
                    }
                    lock(handler).superseded(&mut sink);
                    reloading.store(true, Ordering::SeqCst);
                    stop.request();
                    return Some(End::Reload {
                        next: Box::new(next),
                        why: Why::Sighup,
                    });
                }
                Err(err) => {
                    tracing::error!(
                        "configuration not applied, running on the previous one: {err}"
                    );
                    super::error(
                        &mut sink,
                        ErrorCode::ConfigRejected,
                        format!("not applied, running on the previous configuration: {err}"),
                    );
                }
            }
        }
        // The lock is released before `restart` takes it again.
        let next = lock(handler).tick(&mut sink);
        if let Some(end) = restart(next) {
            return Some(end);
        }
        if let Ok(inbound) = inbox.recv_timeout(POLL) {
            let next = lock(handler).handle(inbound, current, &mut sink);
            if let Some(end) = restart(next) {
                return Some(end);
            }
        }
    }
}

/// The daemon's supervisor across reloads: a run stopped for a reload
/// tells systemd `RELOADING=1`, not `STOPPING=1`.
struct Reloads<'a> {
    inner: &'a mut dyn Supervisor,
    reloading: Arc<AtomicBool>,
    /// Frames analysed by the current run, for the command handler.
    analysed: Arc<AtomicU64>,
}

impl Supervisor for Reloads<'_> {
    fn watchdog_period(&self) -> Option<Duration> {
        self.inner.watchdog_period()
    }
    fn ready(&mut self, status: &str) {
        self.inner.ready(status);
    }
    fn status(&mut self, status: &str) {
        self.inner.status(status);
    }
    fn alive(&mut self) {
        self.inner.alive();
    }
    fn analysed(&mut self, total: u64) {
        self.analysed.store(total, Ordering::Relaxed);
    }
    fn stopping(&mut self, status: &str) {
        if self.reloading.load(Ordering::SeqCst) {
            self.inner.reloading("reloading the configuration (SIGHUP)");
        } else {
            self.inner.stopping(status);
        }
    }
}
