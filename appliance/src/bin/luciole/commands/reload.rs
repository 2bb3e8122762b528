//! The daemon's life between start and stop, with SIGHUP meaning "reload
//! the configuration".
//!
//! On SIGHUP the file is checked again with the start-up checks
//! ([`config::load_for_daemon`], the same as `check-config`) while the
//! pipeline keeps running. An invalid file changes nothing: the daemon
//! logs why and sends an `error` event `config_rejected`. A valid one
//! stops the pipeline (`status` `reloading`), restarts the event sink if
//! `[device]`, `[outbox]` or `[mqtt]` changed, and opens the new stages; if
//! they fail to open, the previous configuration is put back
//! (`config_rolled_back`) and runs on. SIGINT and SIGTERM stop the daemon
//! at any point.
//!
//! Under systemd a reload is not a stop: the pipeline's "stopping" is
//! told as `RELOADING=1` with a status, and the reopened stages say
//! `READY=1` again ([`Reloads`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// How often the watcher looks at the signal flags.
const POLL: Duration = Duration::from_millis(50);

/// Where events go: the outbox (and broker), or nowhere without `[outbox]`.
enum Events {
    Reporter(Reporter),
    Discard,
}

impl Events {
    fn start(settings: &Settings) -> anyhow::Result<Events> {
        Ok(match super::reporter(settings)? {
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

/// The event sink shared by the pipeline and the reload watcher.
#[derive(Clone)]
struct Shared(Arc<Mutex<Events>>);

impl Sink for Shared {
    fn event(&mut self, body: Body) {
        lock(&self.0).event(body);
    }
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
        *lock(&self.0) = Events::start(settings)?;
        Ok(())
    }
}

/// Whether the event sink of `a` and `b` differ (who speaks, where events
/// are kept, which broker).
fn sink_changed(a: &Settings, b: &Settings) -> bool {
    a.device != b.device || a.outbox != b.outbox || a.mqtt != b.mqtt
}

/// Runs the daemon on `config` until a stop signal in `signals`, the end of
/// a replay or a failure, reloading on SIGHUP.
pub fn serve(
    config: &Path,
    signals: &Shutdown,
    supervisor: &mut dyn Supervisor,
) -> anyhow::Result<Result<Summary, PipelineError>> {
    let reloading = Arc::new(AtomicBool::new(false));
    let mut supervisor = Reloads {
        inner: supervisor,
        reloading: Arc::clone(&reloading),
    };
    let mut settings = config::load_for_daemon(config)?;
    tracing::info!("{}", super::summary(&settings));
    let mut sink = Shared(Arc::new(Mutex::new(Events::start(&settings)?)));
    // The configuration to go back to if the current one fails to open.
    let mut previous: Option<Settings> = None;
    loop {
        let stop = Shutdown::new();
        reloading.store(false, Ordering::SeqCst);
        let watcher = Watcher::spawn(config, &settings, signals, &stop, &sink, &reloading);
        let stages = match super::run::stages(&settings, &stop, &mut sink) {
            Ok(stages) => stages,
            Err(err) => {
                stop.request();
                watcher.join();
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
        let outcome = pipeline::run_supervised(
            stages,
            &settings.pipeline_options(),
            &mut sink,
            &stop,
            &mut supervisor,
        );
        stop.request();
        let next = watcher.join();
        match next {
            Some(next) if outcome.is_ok() && !signals.requested() => {
                sink.event(super::status(
                    "reloading",
                    format!("applying {} (SIGHUP)", config.display()),
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
                        continue;
                    }
                }
                tracing::info!("{}", super::summary(&next));
                previous = Some(std::mem::replace(&mut settings, next));
            }
            _ => {
                super::finish(&mut sink, &outcome, signals);
                sink.close();
                return Ok(outcome);
            }
        }
    }
}

/// Watches the signal flags while one configuration runs: a stop signal
/// stops the run; SIGHUP checks the file and stops the run when it is
/// valid (its settings are what [`Watcher::join`] returns).
struct Watcher {
    thread: Option<JoinHandle<Option<Settings>>>,
}

impl Watcher {
    fn spawn(
        config: &Path,
        current: &Settings,
        signals: &Shutdown,
        stop: &Shutdown,
        sink: &Shared,
        reloading: &Arc<AtomicBool>,
    ) -> Watcher {
        let (config, current) = (config.to_owned(), current.clone());
        let (signals, stop, sink) = (signals.clone(), stop.clone(), sink.clone());
        let reloading = Arc::clone(reloading);
        let thread = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || watch(&config, &current, &signals, &stop, sink, &reloading));
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

    /// The settings to reload with, if a valid reload stopped the run.
    fn join(self) -> Option<Settings> {
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
) -> Option<Settings> {
    loop {
        if signals.requested() {
            stop.request();
            return None;
        }
        if stop.requested() {
            return None;
        }
        if signals.take_reload() {
            tracing::info!("SIGHUP: checking {}", config.display());
            match config::load_for_daemon(config) {
                Ok(next) => {
                    if &next == current {
                        tracing::info!("the configuration is unchanged; restarting the stages");
                    }
                    reloading.store(true, Ordering::SeqCst);
                    stop.request();
                    return Some(next);
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
        std::thread::sleep(POLL);
    }
}

/// The daemon's supervisor across reloads: a run stopped for a reload
/// tells systemd `RELOADING=1`, not `STOPPING=1`.
struct Reloads<'a> {
    inner: &'a mut dyn Supervisor,
    reloading: Arc<AtomicBool>,
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
    fn stopping(&mut self, status: &str) {
        if self.reloading.load(Ordering::SeqCst) {
            self.inner.reloading("reloading the configuration (SIGHUP)");
        } else {
            self.inner.stopping(status);
        }
    }
}
