//! The daemon's side of remote operations: what each admitted command does,
//! and the answer it gets.
//!
//! Messages arrive from the publisher's subscriptions ([`luciole::publish::Inbox`])
//! and are handled on the reload watcher's thread ([`super::reload`]), one
//! at a time. [`luciole::remote::Gate`] admits or refuses each; every
//! refusal and every step of an admitted command is an `audit` event, and a
//! response goes to the reply topic (MQTT 5 response topic, or the
//! envelope's `reply_to`) at QoS 0: the audit events are the durable record.
//!
//! `config.apply` is the one command that outlives its message: the new
//! file is written atomically (the old one kept in `remote.state_dir`), the
//! stages restart on it, and the command is answered only when the new
//! configuration has analysed a frame (`done`), or rolled back when it has
//! not within `remote.apply_timeout_s` or its stages fail to open
//! (`failed`, code `rolled_back`). A marker in the state folder makes a
//! daemon that dies meanwhile (and is restarted by systemd) finish the job:
//! after [`MAX_ATTEMPTS`] starts without a confirmation the previous file
//! is put back before anything else is read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use luciole::config::{self, Depth, Settings};
use luciole::detect::manifest::sha256_hex;
use luciole::events::{Audit, Body, ErrorCode, Health, Sink};
use luciole::light::runner::LightFeed;
use luciole::pipeline::SnapshotOrder;
use luciole::publish::{Inbound, Inbox};
use luciole::remote::nonces::{write_atomically, Nonces};
use luciole::remote::{
    self, Admitted, Command, Gate, Refusal, Refused, RemoteSettings, Response, ResponseError,
};
use luciole::sync::lock;
use serde_json::json;

/// Starts without a confirmed configuration after which the previous
/// configuration is put back at start.
pub const MAX_ATTEMPTS: u32 = 3;

/// The longest a rollback's answer waits for the restored session.
const DEFER_AT_MOST: Duration = Duration::from_secs(10);

/// Frames a remote snapshot watches for movement; the last is shown.
const SNAPSHOT_FRAMES: u64 = 10;

/// The longest a remote snapshot waits for the pipeline (the command
/// handler waits meanwhile: well under systemd's stop timeout).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

/// A remote snapshot fails once the pipeline has analysed no frame for
/// this long.
const SNAPSHOT_STALL: Duration = Duration::from_secs(3);

/// Messages waiting to be handled.
const QUEUE: usize = 64;

/// What the daemon shares with the command handler and the metrics
/// endpoint: the channel commands arrive on, and what `status`,
/// `light.override` and the metrics look at.
#[derive(Clone)]
pub struct Context {
    pub sender: crossbeam_channel::Sender<Inbound>,
    pub receiver: crossbeam_channel::Receiver<Inbound>,
    /// The last `health` event the pipeline made.
    pub health: Arc<Mutex<Option<Health>>>,
    /// The kind and time (UTC ms) of the last event made, audits aside.
    pub last_event: Arc<Mutex<Option<(&'static str, u64)>>>,
    /// The lamp's target level (0 to 1), from its last `light` event.
    pub lamp_level: Arc<Mutex<Option<f64>>>,
    /// Each inference's time (the metrics endpoint's histogram).
    pub inference: Arc<luciole::metrics::Histogram>,
    /// The running lamp's feed, when there is a lamp.
    pub lamp: Arc<Mutex<Option<LightFeed>>>,
    /// A `light.override` in force (level, until UTC ms), given to each new
    /// run's lamp so that a reload does not end it.
    pub manual: Arc<Mutex<Option<(f64, i64)>>>,
    /// The broker granted the command subscriptions on the current
    /// connection.
    pub subscribed: Arc<std::sync::atomic::AtomicBool>,
    /// The current broker session, to answer through.
    pub session: Arc<Mutex<Option<luciole::publish::session::Session>>>,
    /// Frames analysed by the current run.
    pub analysed: Arc<AtomicU64>,
    pub started: Instant,
    /// The lamp's energy meter, with `lighting.lamp_watts`; kept across
    /// reloads (a night spans them).
    pub energy: Arc<Mutex<Option<luciole::light::energy::EnergyMeter>>>,
    /// The last night's report.
    pub last_energy: Arc<Mutex<Option<luciole::light::energy::EnergyReport>>>,
    /// Snapshot orders to the running pipeline (one at a time).
    pub snapshots: (
        crossbeam_channel::Sender<SnapshotOrder>,
        crossbeam_channel::Receiver<SnapshotOrder>,
    ),
}

impl Context {
    pub fn new() -> Self {
        let (sender, receiver) = crossbeam_channel::bounded(QUEUE);
        Self {
            sender,
            receiver,
            health: Arc::new(Mutex::new(None)),
            last_event: Arc::new(Mutex::new(None)),
            lamp_level: Arc::new(Mutex::new(None)),
            inference: Arc::new(luciole::metrics::Histogram::new(
                &luciole::metrics::INFERENCE_BOUNDS,
            )),
            lamp: Arc::new(Mutex::new(None)),
            manual: Arc::new(Mutex::new(None)),
            subscribed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            session: Arc::new(Mutex::new(None)),
            analysed: Arc::new(AtomicU64::new(0)),
            started: Instant::now(),
            energy: Arc::new(Mutex::new(None)),
            last_energy: Arc::new(Mutex::new(None)),
            snapshots: crossbeam_channel::bounded(1),
        }
    }

    /// Meters the lamp at `watts` (none: no meter); a meter at the same
    /// power goes on.
    pub fn meter_lamp(&self, watts: Option<f64>) {
        let mut meter = lock(&self.energy);
        if meter.as_ref().map(|m| m.rated_w()) != watts {
            *meter = watts.map(luciole::light::energy::EnergyMeter::new);
        }
    }

    /// Where the publisher sends messages received, if `settings` listen.
    pub fn inbox(&self, settings: &Settings) -> Option<Inbox> {
        let (remote, mqtt) = (settings.remote.as_ref()?, settings.mqtt.as_ref()?);
        Some(Inbox {
            filters: remote.filters(&mqtt.topic_prefix, &settings.device),
            sender: self.sender.clone(),
            subscribed: Arc::clone(&self.subscribed),
            session: Arc::clone(&self.session),
        })
    }

    /// The override in force now, if any.
    pub fn manual_in_force(&self) -> Option<(f64, i64)> {
        lock(&self.manual).filter(|(_, until)| *until > luciole::events::now_ms() as i64)
    }
}

/// A configuration applied and not yet confirmed.
#[derive(Clone, Debug)]
pub struct Pending {
    deadline: Instant,
    /// The folder holding the previous file and the marker.
    state_dir: PathBuf,
    /// The reply to send when it is confirmed or rolled back (none after a
    /// restart: the sender has given up by then).
    answer: Option<Answer>,
    key: Option<String>,
}

impl Pending {
    /// Ends the apply as failed with `code`: its audit event, and its
    /// answer (if the sender waits) with the error, for the caller to send
    /// now or later.
    fn failed(
        self,
        sink: &mut dyn Sink,
        code: &str,
        message: String,
    ) -> Option<(Answer, ResponseError, Instant)> {
        audit(
            sink,
            self.key.clone(),
            self.key.as_ref().map(|_| "integrator"),
            Some("config.apply"),
            "failed",
            Some(code),
            message.clone(),
        );
        let error = ResponseError {
            code: code.into(),
            message,
            problems: Vec::new(),
        };
        self.answer.map(|answer| (answer, error, Instant::now()))
    }
}

/// Where one command's response goes.
#[derive(Clone)]
struct Answer {
    /// The current session (the publisher may have restarted since the
    /// command came).
    replies: Arc<Mutex<Option<luciole::publish::session::Session>>>,
    topic: String,
    correlation: Option<Vec<u8>>,
    /// The envelope's correlation (MQTT 3.1.1), echoed in the payload.
    echo: Option<String>,
    command: Option<String>,
    origin: luciole::events::Origin,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Answer({})", self.topic)
    }
}

/// What handling a message asks of the daemon.
pub enum Next {
    /// Keep running.
    Stay,
    /// Restart the stages on these settings (a configuration applied or
    /// rolled back).
    Reload(Box<Settings>),
    /// Stop cleanly; systemd starts the daemon again.
    Restart,
}

/// The command handler's state across configurations.
pub struct Handler {
    pub context: Context,
    config: PathBuf,
    gate: Option<Gate>,
    state_dir: Option<PathBuf>,
    pending: Option<Pending>,
    /// `(prefix, site)`: where answers may go.
    replies_under: Option<(String, String)>,
    /// Audits of refusals before a signature was checked, this minute.
    flood: Flood,
    /// A rollback's answer, sent once the restored configuration's session
    /// is up (the one the command came on may be gone).
    deferred: Option<(Answer, ResponseError, Instant)>,
    /// `update.install` jobs, when `[remote.update]` is set.
    updates: Option<super::update::Updates>,
}

/// At most [`FLOOD_AUDITS`] audit events a minute for messages refused
/// before their signature was checked (anyone with write access to a
/// command topic can send them): the rest are counted and told in one
/// audit when the minute is over, so junk cannot fill the outbox.
#[derive(Default)]
struct Flood {
    since: Option<Instant>,
    audited: u32,
    suppressed: u32,
}

const FLOOD_AUDITS: u32 = 10;

impl Flood {
    /// Whether this refusal gets its own audit; a summary of the last
    /// minute's suppressed ones, when one is due.
    fn admit(&mut self, now: Instant) -> (bool, Option<u32>) {
        let mut summary = None;
        if self
            .since
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
        {
            if self.suppressed > 0 {
                summary = Some(self.suppressed);
            }
            *self = Flood {
                since: Some(now),
                ..Flood::default()
            };
        }
        if self.audited < FLOOD_AUDITS {
            self.audited += 1;
            (true, summary)
        } else {
            self.suppressed += 1;
            (false, summary)
        }
    }
}

impl Handler {
    /// A handler for the daemon running `config`. If a previous
    /// `config.apply` was never confirmed, it is pending again (with a new
    /// deadline), or, after [`MAX_ATTEMPTS`] starts, rolled back now.
    pub fn start(config: &Path, context: Context) -> anyhow::Result<Handler> {
        let mut handler = Handler {
            context,
            config: config.to_owned(),
            gate: None,
            state_dir: None,
            pending: None,
            replies_under: None,
            flood: Flood::default(),
            deferred: None,
            updates: None,
        };
        // The state folder comes from the file as it is now; a file that
        // does not load is for the normal start-up path to report.
        if let Ok(settings) = config::load(config) {
            if let Some(remote) = &settings.remote {
                handler.recover(remote)?;
            }
        }
        Ok(handler)
    }

    fn recover(&mut self, remote: &RemoteSettings) -> anyhow::Result<()> {
        let marker = remote.state_dir.join(MARKER);
        let Ok(text) = std::fs::read_to_string(&marker) else {
            return Ok(());
        };
        let attempts = text.trim().parse::<u32>().unwrap_or(MAX_ATTEMPTS) + 1;
        let previous = remote.state_dir.join(PREVIOUS);
        if !previous.is_file() {
            // Nothing to go back to: keep the file as it is.
            tracing::error!(
                "{}: marker without {}: the configuration as it is stays",
                marker.display(),
                previous.display()
            );
            let _ = std::fs::remove_file(&marker);
            return Ok(());
        }
        if attempts >= MAX_ATTEMPTS {
            let text = std::fs::read(&previous).map_err(|e| {
                anyhow::anyhow!("{}: cannot read to roll back: {e}", previous.display())
            })?;
            write_atomically(&self.config, &text)
                .map_err(|e| anyhow::anyhow!("{}: cannot roll back: {e}", self.config.display()))?;
            std::fs::remove_file(&marker)?;
            tracing::error!(
                "{}: a configuration applied remotely was never confirmed after {attempts} starts: the previous one is back",
                self.config.display()
            );
            return Ok(());
        }
        write_atomically(&marker, attempts.to_string().as_bytes())?;
        tracing::warn!(
            "{}: a configuration applied remotely is not confirmed yet (start {attempts} of {MAX_ATTEMPTS})",
            self.config.display()
        );
        self.pending = Some(Pending {
            deadline: Instant::now() + remote.apply_timeout,
            state_dir: remote.state_dir.clone(),
            answer: None,
            key: None,
        });
        Ok(())
    }

    /// Whether a configuration applied remotely waits for confirmation.
    pub fn applying(&self) -> bool {
        self.pending.is_some()
    }

    /// Takes in the settings a run starts with: the keys and state folder.
    pub fn configure(&mut self, settings: &Settings) {
        self.gate = None;
        self.state_dir = None;
        self.replies_under = None;
        let Some(remote) = &settings.remote else {
            return;
        };
        let nonces_path = remote.state_dir.join(NONCES);
        let nonces = match std::fs::create_dir_all(&remote.state_dir)
            .map_err(|e| format!("{}: cannot create: {e}", remote.state_dir.display()))
            .and_then(|_| Nonces::load(&nonces_path).map_err(|e| e.to_string()))
        {
            Ok(nonces) => nonces,
            Err(err) => {
                // Refusing every command would leave the pole unreachable;
                // replays stay refused while the daemon runs.
                tracing::error!("remote: {err}; starting with no nonces remembered");
                Nonces::default()
            }
        };
        let prefix = settings
            .mqtt
            .as_ref()
            .map_or("luciole", |m| m.topic_prefix.as_str());
        self.gate = Some(Gate::new(settings.device.clone(), prefix, remote, nonces));
        match (&mut self.updates, &remote.update) {
            (Some(updates), Some(update)) => updates.reconfigure(update.clone()),
            (None, Some(update)) => {
                self.updates = Some(super::update::Updates::start(
                    update.clone(),
                    &remote.state_dir,
                ))
            }
            // A job in progress goes on; new orders are refused.
            (_, None) => {}
        }
        self.state_dir = Some(remote.state_dir.clone());
        self.replies_under = Some((prefix.to_string(), settings.device.site.clone()));
    }

    /// Looks at a pending configuration: confirmed once the run analysed a
    /// frame, rolled back at its deadline.
    pub fn tick(&mut self, sink: &mut dyn Sink) -> Next {
        if let Some(updates) = &mut self.updates {
            for body in updates.tick() {
                sink.event(body);
            }
        }
        let session_up = self.context.subscribed.load(Ordering::SeqCst);
        if let Some((_, _, since)) = &self.deferred {
            if session_up || since.elapsed() > DEFER_AT_MOST {
                let (answer, error, _) = self.deferred.take().expect("checked above");
                answer.send(Err(error));
            }
        }
        let Some(pending) = &self.pending else {
            return Next::Stay;
        };
        // Frames analysed, and the command channel works on the new
        // settings: the pole can still be reached to fix it.
        let reachable = self.context.subscribed.load(Ordering::SeqCst);
        if self.context.analysed.load(Ordering::Relaxed) > 0 && reachable {
            let pending = self.pending.take().expect("checked above");
            let _ = std::fs::remove_file(pending.state_dir.join(MARKER));
            let hash = file_hash(&self.config);
            audit(
                sink,
                pending.key.clone(),
                pending.key.as_ref().map(|_| "integrator"),
                Some("config.apply"),
                "done",
                None,
                format!("the new configuration analyses frames and takes commands (sha256 {hash})"),
            );
            if let Some(answer) = &pending.answer {
                answer.send(Ok(json!({"applied": true, "sha256": hash})));
            }
            return Next::Stay;
        }
        if Instant::now() >= pending.deadline {
            let message = if reachable {
                "no frame analysed before remote.apply_timeout_s"
            } else {
                "the command channel did not come back before remote.apply_timeout_s (broker, credentials or [remote] keys)"
            }
            .to_string();
            return self.roll_back(sink, &message);
        }
        Next::Stay
    }

    /// The stages of a configuration applied remotely failed to open (the
    /// daemon went back to the previous settings in memory): puts the
    /// previous file back and answers.
    pub fn failed_to_open(&mut self, sink: &mut dyn Sink, reason: &str) {
        if self.pending.is_some() {
            let _ = self.roll_back(sink, reason);
        }
    }

    fn roll_back(&mut self, sink: &mut dyn Sink, reason: &str) -> Next {
        let Some(pending) = self.pending.take() else {
            return Next::Stay;
        };
        let dir = &pending.state_dir;
        // The previous file is checked before it replaces the current one.
        let restored = std::fs::read_to_string(dir.join(PREVIOUS))
            .map_err(|e| format!("{}: {e}", dir.join(PREVIOUS).display()))
            .and_then(|text| {
                let settings = config::parse_to(&self.config, &text, Depth::Startup)
                    .map_err(|e| e.to_string())?;
                write_atomically(&self.config, text.as_bytes())
                    .map_err(|e| format!("{}: {e}", self.config.display()))?;
                Ok(settings)
            });
        let _ = std::fs::remove_file(dir.join(MARKER));
        let message = match &restored {
            Ok(_) => format!(
                "{}: the configuration applied remotely was rolled back: {reason}",
                self.config.display()
            ),
            Err(err) => format!(
                "{}: the configuration applied remotely failed ({reason}) and the previous one could not be restored: {err}",
                self.config.display()
            ),
        };
        tracing::error!("{message}");
        sink.event(Body::Error(luciole::events::ErrorReport {
            code: ErrorCode::ConfigRolledBack,
            message: message.clone(),
        }));
        if let Some(answer) = pending.failed(sink, "rolled_back", message) {
            self.deferred = Some(answer);
        }
        match restored {
            Ok(settings) => Next::Reload(Box::new(settings)),
            Err(_) => Next::Stay,
        }
    }

    /// SIGHUP while a configuration applied remotely waits: the person on
    /// the pole decides; the apply is over (its file stays as it is now).
    pub fn superseded(&mut self, sink: &mut dyn Sink) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let _ = std::fs::remove_file(pending.state_dir.join(MARKER));
        let message = "a SIGHUP reload took over before it was confirmed".to_string();
        if let Some((answer, error, _)) = pending.failed(sink, "superseded", message) {
            answer.send(Err(error));
        }
    }

    /// Handles one message received on a command topic.
    pub fn handle(&mut self, inbound: Inbound, current: &Settings, sink: &mut dyn Sink) -> Next {
        let message = &inbound.message;
        let envelope = remote::parse_envelope(&message.payload).ok();
        let topic = message
            .response_topic
            .clone()
            .or_else(|| envelope.as_ref().and_then(|e| e.reply_to.clone()))
            .filter(|t| {
                self.replies_under
                    .as_ref()
                    .is_some_and(|(prefix, site)| remote::reply_allowed(prefix, site, t))
            });
        *lock(&self.context.session) = Some(inbound.replies.clone());
        let answer = topic.map(|topic| Answer {
            replies: Arc::clone(&self.context.session),
            topic,
            correlation: message.correlation.clone(),
            echo: envelope.as_ref().and_then(|e| e.correlation.clone()),
            command: None,
            origin: current.device.clone(),
        });
        let Some(gate) = &mut self.gate else {
            return Next::Stay;
        };
        let admitted = gate.admit(
            &message.topic,
            &message.payload,
            luciole::events::now_ms() as i64,
        );
        let admitted = match admitted {
            Ok(admitted) => admitted,
            Err(refused) => {
                let Refused { refusal, name, key } = *refused;
                // Before the signature is checked anyone may have sent it.
                let unsigned = matches!(
                    refusal,
                    Refusal::Oversized(_)
                        | Refusal::Malformed(_)
                        | Refusal::UnknownKey(_)
                        | Refusal::BadSignature
                );
                let (own_audit, summary) = if unsigned {
                    self.flood.admit(Instant::now())
                } else {
                    (true, None)
                };
                if let Some(count) = summary {
                    audit(
                        sink,
                        None,
                        None,
                        None,
                        "refused",
                        Some("flood"),
                        format!("{count} more unsigned messages were refused in a minute, without an audit each"),
                    );
                }
                if own_audit {
                    tracing::warn!(
                        command = name.as_deref().unwrap_or("?"),
                        key = key.as_deref().unwrap_or("?"),
                        "remote command refused: {refusal}"
                    );
                    // The arguments' values stay out of the audit.
                    let detail = match &refusal {
                        Refusal::BadArguments(_) => "bad arguments (the answer says which)".into(),
                        other => other.to_string(),
                    };
                    audit(
                        sink,
                        key,
                        None,
                        name.as_deref(),
                        "refused",
                        Some(refusal.code()),
                        detail,
                    );
                }
                if let Some(mut answer) = answer {
                    answer.command = name;
                    answer.send(Err(error(&refusal)));
                }
                return Next::Stay;
            }
        };
        if let Some(dir) = &self.state_dir {
            // A nonce that is not kept could be replayed after a restart:
            // nothing runs until it is.
            if let Err(err) = gate.nonces().save(&dir.join(NONCES)) {
                tracing::error!("remote: {err}: the command is not run");
                let message = format!("cannot keep the command's nonce: {err}");
                audit(
                    sink,
                    Some(admitted.key.clone()),
                    Some(admitted.role.as_str()),
                    Some(&admitted.name),
                    "failed",
                    Some("io_error"),
                    message.clone(),
                );
                if let Some(mut answer) = answer {
                    answer.command = Some(admitted.name.clone());
                    answer.send(Err(ResponseError {
                        code: "io_error".into(),
                        message,
                        problems: Vec::new(),
                    }));
                }
                return Next::Stay;
            }
        }
        tracing::info!(
            command = admitted.name,
            key = admitted.key,
            role = admitted.role.as_str(),
            "remote command accepted"
        );
        let answer = answer.map(|mut a| {
            a.command = Some(admitted.name.clone());
            a
        });
        self.run(admitted, answer, current, sink)
    }

    fn run(
        &mut self,
        admitted: Admitted,
        answer: Option<Answer>,
        current: &Settings,
        sink: &mut dyn Sink,
    ) -> Next {
        let key = Some(admitted.key.clone());
        let name = admitted.name.clone();
        let role = admitted.role.as_str();
        let reply = answer.clone();
        let done = move |sink: &mut dyn Sink, result: Result<serde_json::Value, ResponseError>| {
            match &result {
                Ok(_) => audit(
                    sink,
                    key.clone(),
                    Some(role),
                    Some(&name),
                    "done",
                    None,
                    String::new(),
                ),
                Err(e) => audit(
                    sink,
                    key.clone(),
                    Some(role),
                    Some(&name),
                    "failed",
                    Some(&e.code),
                    e.message.clone(),
                ),
            }
            if let Some(answer) = &reply {
                answer.send(result);
            }
        };
        match admitted.command {
            Command::Status => {
                done(sink, Ok(self.status(current)));
                Next::Stay
            }
            Command::ConfigGet => {
                let result = std::fs::read_to_string(&self.config)
                    .map(|text| {
                        json!({
                            "path": self.config.display().to_string(),
                            "sha256": sha256_hex(text.as_bytes()),
                            "config": text,
                        })
                    })
                    .map_err(|e| ResponseError {
                        code: "io_error".into(),
                        message: format!("{}: {e}", self.config.display()),
                        problems: Vec::new(),
                    });
                done(sink, result);
                Next::Stay
            }
            Command::LightOverride { level, duration } => {
                let feed = lock(&self.context.lamp).clone();
                let result = match feed {
                    None => Err(ResponseError {
                        code: "no_lighting".into(),
                        message: "this pole drives no lamp (no [lighting], or its outputs failed to open)".into(),
                        problems: Vec::new(),
                    }),
                    Some(feed) => {
                        let until = luciole::events::now_ms() as i64 + duration.as_millis() as i64;
                        let manual = level.map(|level| (level, until));
                        // Kept for the next run's lamp too (a reload).
                        *lock(&self.context.manual) = manual;
                        feed.set_manual(manual);
                        Ok(match level {
                            Some(level) => json!({"level_percent": level * 100.0, "until": luciole::events::rfc3339_ms(until as u64)}),
                            None => json!({"cancelled": true}),
                        })
                    }
                };
                done(sink, result);
                Next::Stay
            }
            Command::Restart => {
                done(sink, Ok(json!({"restarting": true})));
                tracing::warn!(key = admitted.key, role, "restarting on a remote command");
                Next::Restart
            }
            Command::UpdateInstall {
                url,
                sha256,
                size,
                window,
            } => {
                let configured = current
                    .remote
                    .as_ref()
                    .and_then(|r| r.update.as_ref())
                    .is_some();
                let result = match &mut self.updates {
                    Some(updates) if configured => updates
                        .order(&admitted.key, url, sha256, size, window)
                        .map_err(|(code, message)| ResponseError {
                            code: code.into(),
                            message,
                            problems: Vec::new(),
                        }),
                    _ => Err(ResponseError {
                        code: "no_update".into(),
                        message: "this pole has no [remote.update] (the CA its bundle servers' certificates must chain to)".into(),
                        problems: Vec::new(),
                    }),
                };
                match result {
                    // Accepted: the job's steps follow as update events, and
                    // its end as a done or failed audit.
                    Ok(value) => {
                        audit(
                            sink,
                            Some(admitted.key.clone()),
                            Some(role),
                            Some("update.install"),
                            "accepted",
                            None,
                            "the download starts; the steps follow as update events".into(),
                        );
                        if let Some(answer) = &answer {
                            answer.send(Ok(value));
                        }
                    }
                    Err(error) => done(sink, Err(error)),
                }
                Next::Stay
            }
            Command::Snapshot => {
                match self.snapshot(current) {
                    // Where it went and what it was, for the record.
                    Ok(value) => {
                        audit(
                            sink,
                            Some(admitted.key.clone()),
                            Some(role),
                            Some("snapshot"),
                            "done",
                            None,
                            format!(
                                "published once on {} ({} bytes, sha256 {}, {} blocks pixelated)",
                                value["topic"].as_str().unwrap_or_default(),
                                value["bytes"],
                                value["sha256"].as_str().unwrap_or_default(),
                                value["pixelated_blocks"]
                            ),
                        );
                        if let Some(answer) = &answer {
                            answer.send(Ok(value));
                        }
                    }
                    Err(error) => done(sink, Err(error)),
                }
                Next::Stay
            }
            Command::ConfigApply {
                config,
                partial,
                dry_run,
            } => self.apply(
                &admitted.key,
                &config,
                partial,
                dry_run,
                current,
                answer,
                sink,
                done,
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        key: &str,
        text: &str,
        partial: bool,
        dry_run: bool,
        running: &Settings,
        answer: Option<Answer>,
        sink: &mut dyn Sink,
        done: impl Fn(&mut dyn Sink, Result<serde_json::Value, ResponseError>),
    ) -> Next {
        let invalid = |message: String, problems: Vec<String>| ResponseError {
            code: "invalid_config".into(),
            message,
            problems,
        };
        if self.pending.is_some() {
            done(
                sink,
                Err(ResponseError {
                    code: "busy".into(),
                    message: "another configuration is being applied".into(),
                    problems: Vec::new(),
                }),
            );
            return Next::Stay;
        }
        let current = match std::fs::read_to_string(&self.config) {
            Ok(current) => current,
            Err(e) => {
                done(
                    sink,
                    Err(ResponseError {
                        code: "io_error".into(),
                        message: format!("{}: {e}", self.config.display()),
                        problems: Vec::new(),
                    }),
                );
                return Next::Stay;
            }
        };
        let text = if partial {
            match merge(&current, text) {
                Ok(text) => text,
                Err(e) => {
                    done(sink, Err(invalid(e, Vec::new())));
                    return Next::Stay;
                }
            }
        } else {
            text.to_string()
        };
        let next = match config::parse_to(&self.config, &text, Depth::Startup) {
            Ok(next) => next,
            Err(err) => {
                // One line per problem: `file:line key = value: reason`.
                let problems = err.to_string().lines().map(str::to_string).collect();
                done(
                    sink,
                    Err(invalid("the configuration is not valid".into(), problems)),
                );
                return Next::Stay;
            }
        };
        // The key applying it must still be able to fix it: the same name,
        // public key and role.
        let signer = running
            .remote
            .as_ref()
            .and_then(|r| r.keys.iter().find(|k| k.name == key));
        let keeps_key = next.remote.as_ref().is_some_and(|r| {
            r.keys
                .iter()
                .any(|k| Some(k) == signer && k.role == remote::Role::Integrator)
        });
        if !keeps_key {
            done(
                sink,
                Err(invalid(
                    format!("the new configuration must keep key {key:?} as an integrator in [[remote.keys]], or the pole could not be managed remotely any more"),
                    Vec::new(),
                )),
            );
            return Next::Stay;
        }
        // The rollback's files live there: it is changed on the pole only.
        let same_state = next.remote.as_ref().map(|r| &r.state_dir)
            == running.remote.as_ref().map(|r| &r.state_dir);
        if !same_state {
            done(
                sink,
                Err(invalid(
                    "remote.state_dir cannot be changed remotely (the rollback and the nonces live there)".into(),
                    Vec::new(),
                )),
            );
            return Next::Stay;
        }
        let hash = sha256_hex(text.as_bytes());
        if dry_run {
            done(
                sink,
                Ok(
                    json!({"valid": true, "applied": false, "sha256": hash, "summary": super::summary(&next)}),
                ),
            );
            return Next::Stay;
        }
        let Some(dir) = self.state_dir.clone() else {
            return Next::Stay;
        };
        let written = write_atomically(&dir.join(PREVIOUS), current.as_bytes())
            .and_then(|_| write_atomically(&dir.join(MARKER), b"0"))
            .and_then(|_| write_atomically(&self.config, text.as_bytes()));
        if let Err(e) = written {
            let _ = std::fs::remove_file(dir.join(MARKER));
            done(
                sink,
                Err(ResponseError {
                    code: "io_error".into(),
                    message: format!("cannot write the new configuration: {e}"),
                    problems: Vec::new(),
                }),
            );
            return Next::Stay;
        }
        audit(
            sink,
            Some(key.to_string()),
            Some("integrator"),
            Some("config.apply"),
            "accepted",
            None,
            format!("written (sha256 {hash}); restarting the stages on it"),
        );
        let timeout = next
            .remote
            .as_ref()
            .map_or(Duration::from_secs(60), |r| r.apply_timeout);
        self.pending = Some(Pending {
            deadline: Instant::now() + timeout,
            state_dir: dir,
            answer,
            key: Some(key.to_string()),
        });
        Next::Reload(Box::new(next))
    }

    /// Takes a snapshot of the running pipeline's next frames and publishes
    /// it once (QoS 0, not retained) on its own topic; the answer and the
    /// audit say where, how large, and its hash.
    fn snapshot(&self, current: &Settings) -> Result<serde_json::Value, ResponseError> {
        let fail = |code: &str, message: String| ResponseError {
            code: code.into(),
            message,
            problems: Vec::new(),
        };
        if !current.privacy.remote_snapshots {
            return Err(fail(
                "remote_snapshots_off",
                "privacy.remote_snapshots is not true on this pole: no picture leaves it".into(),
            ));
        }
        if current.detect.is_none() {
            return Err(fail(
                "no_detector",
                "this pole has no [detect]: a snapshot pixelates the people and vehicles the model finds".into(),
            ));
        }
        let Some(mqtt) = &current.mqtt else {
            return Err(fail("no_broker", "this pole has no [mqtt]".into()));
        };
        // Published at once or never: a pole without its broker keeps
        // nothing to send later.
        if !self
            .context
            .subscribed
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(fail(
                "not_connected",
                "the pole is not connected to its broker: no snapshot is taken".into(),
            ));
        }
        let (reply, answer) = crossbeam_channel::bounded(1);
        let order = SnapshotOrder {
            frames: SNAPSHOT_FRAMES,
            reply,
        };
        // An order left by a run that ended is replaced.
        let _ = self.context.snapshots.1.try_recv();
        if self.context.snapshots.0.try_send(order).is_err() {
            return Err(fail("busy", "a snapshot is already being taken".into()));
        }
        // Waited for in short steps: a pipeline that analyses nothing (a
        // camera away) fails the order at once rather than at the deadline.
        let started = Instant::now();
        let (mut analysed, mut progress) = (
            self.context.analysed.load(Ordering::Relaxed),
            Instant::now(),
        );
        let shot = loop {
            match answer.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(shot)) => break shot,
                Ok(Err(reason)) => return Err(fail("snapshot_failed", reason)),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(fail(
                        "snapshot_failed",
                        "the pipeline stopped before the snapshot was taken".into(),
                    ))
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
            let now = self.context.analysed.load(Ordering::Relaxed);
            if now != analysed {
                (analysed, progress) = (now, Instant::now());
            }
            let stalled = progress.elapsed() >= SNAPSHOT_STALL;
            if stalled || started.elapsed() >= SNAPSHOT_WAIT {
                let _ = self.context.snapshots.1.try_recv();
                return Err(fail(
                    "snapshot_failed",
                    if stalled {
                        format!(
                            "the pipeline analysed no frame for {} s (is the camera away?)",
                            SNAPSHOT_STALL.as_secs()
                        )
                    } else {
                        format!(
                            "the pipeline analysed no {SNAPSHOT_FRAMES} frames within {} s",
                            SNAPSHOT_WAIT.as_secs()
                        )
                    },
                ));
            }
        };
        let jpeg = super::jpeg_bytes(&shot.image).map_err(|e| fail("snapshot_failed", e))?;
        // Topic and payload within the pole's packet limit, with room for
        // the header.
        if jpeg.len() + 1024 > mqtt.max_packet_bytes as usize {
            return Err(fail(
                "too_large",
                format!(
                    "the snapshot is {} bytes, more than mqtt.max_packet_bytes ({}) allows",
                    jpeg.len(),
                    mqtt.max_packet_bytes
                ),
            ));
        }
        let topic = format!(
            "{}/{}/{}/snapshot",
            mqtt.topic_prefix, current.device.site, current.device.device
        );
        let sha256 = sha256_hex(&jpeg);
        let bytes = jpeg.len();
        let session = lock(&self.context.session).clone();
        let queued = session.is_some_and(|s| s.reply(&topic, jpeg, None));
        if !queued {
            return Err(fail(
                "not_connected",
                "the snapshot was taken but could not be queued for the broker; it is not kept"
                    .into(),
            ));
        }
        tracing::warn!(
            topic,
            bytes,
            "published a remote snapshot (pixelated), once, not retained"
        );
        Ok(json!({
            "topic": topic,
            "format": "jpeg",
            "bytes": bytes,
            "sha256": sha256,
            "width": shot.image.width,
            "height": shot.image.height,
            "detections": shot.found.len(),
            "pixelated_blocks": shot.pixelated_blocks,
        }))
    }

    fn status(&self, current: &Settings) -> serde_json::Value {
        let health = lock(&self.context.health).clone();
        let last_event = lock(&self.context.last_event)
            .map(|(kind, ms)| json!({"kind": kind, "time": luciole::events::rfc3339_ms(ms)}));
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "slot": booted_slot(),
            "uptime_s": self.context.started.elapsed().as_secs(),
            "system_uptime_s": system_uptime_s(),
            "config_sha256": file_hash(&self.config),
            "health": health,
            "last_event": last_event,
            "lamp": lock(&self.context.lamp).is_some(),
            "camera": current.camera.describe(),
            "applying": self.pending.is_some(),
            "update": self.updates.as_ref().and_then(|u| u.stage()),
        })
    }
}

impl Answer {
    fn send(&self, result: Result<serde_json::Value, ResponseError>) {
        let (ok, result, error) = match result {
            Ok(value) => (true, Some(value), None),
            Err(error) => (false, None, Some(error)),
        };
        let response = Response {
            site: self.origin.site.clone(),
            device: self.origin.device.clone(),
            command: self.command.clone(),
            correlation: self.echo.clone(),
            ok,
            result,
            error,
        };
        let payload = serde_json::to_vec(&response).expect("a response always serialises");
        // The client's queue may be full for a moment (a replay after a
        // reconnection): try for up to a second, then give up (the audit
        // event stays).
        for _ in 0..20 {
            let session = lock(&self.replies).clone();
            let Some(session) = session else {
                break;
            };
            if session.reply(&self.topic, payload.clone(), self.correlation.clone()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(topic = self.topic, "cannot queue a command's response");
    }
}

/// The files kept in `remote.state_dir`.
const NONCES: &str = "nonces";
const PREVIOUS: &str = "config.previous.toml";
const MARKER: &str = "apply.pending";

fn error(refusal: &Refusal) -> ResponseError {
    ResponseError {
        code: refusal.code().into(),
        message: refusal.to_string(),
        problems: Vec::new(),
    }
}

fn audit(
    sink: &mut dyn Sink,
    key: Option<String>,
    role: Option<&str>,
    command: Option<&str>,
    outcome: &str,
    code: Option<&str>,
    detail: String,
) {
    sink.event(Body::Audit(Audit {
        key,
        role: role.map(str::to_string),
        command: command.map(str::to_string),
        outcome: outcome.into(),
        code: code.map(str::to_string),
        detail,
    }));
}

/// Sets `patch`'s keys into `base` (tables merged key by key, anything else,
/// arrays of tables included, replaced), keeping `base`'s comments.
pub fn merge(base: &str, patch: &str) -> Result<String, String> {
    let mut base: toml_edit::DocumentMut = base
        .parse()
        .map_err(|e| format!("the current configuration is not valid TOML: {e}"))?;
    let patch: toml_edit::DocumentMut = patch
        .parse()
        .map_err(|e| format!("the partial configuration is not valid TOML: {e}"))?;
    fn into(base: &mut toml_edit::Table, patch: &toml_edit::Table) {
        for (key, item) in patch.iter() {
            match (base.get_mut(key), item) {
                (Some(toml_edit::Item::Table(b)), toml_edit::Item::Table(p)) => into(b, p),
                _ => {
                    base.insert(key, item.clone());
                }
            }
        }
    }
    into(base.as_table_mut(), patch.as_table());
    Ok(base.to_string())
}

fn file_hash(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| sha256_hex(&bytes))
        .unwrap_or_default()
}

/// The RAUC slot booted (`rauc.slot=` on the kernel command line), if any.
pub fn booted_slot() -> Option<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    cmdline
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("rauc.slot="))
        .map(str::to_string)
}

fn system_uptime_s() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(secs as u64)
}

#[cfg(test)]
mod tests {
    use super::merge;

    #[test]
    fn a_partial_configuration_changes_only_its_keys_and_keeps_comments() {
        let base = "# the pole\n[device]\nsite = \"lyon\" # city\nid = \"p1\"\n\n[events]\nhealth_interval_ms = 1000\n\n[[analytics.lines]]\nname = \"a\"\n";
        let merged = merge(
            base,
            "[events]\nhealth_interval_ms = 5000\n[[analytics.lines]]\nname = \"b\"\n",
        )
        .unwrap();
        assert!(
            merged.contains("# the pole") && merged.contains("# city"),
            "{merged}"
        );
        assert!(merged.contains("health_interval_ms = 5000"), "{merged}");
        assert!(merged.contains("id = \"p1\""), "{merged}");
        // Arrays of tables are replaced whole.
        assert!(
            merged.contains("name = \"b\"") && !merged.contains("name = \"a\""),
            "{merged}"
        );
        let err = merge(base, "[events\n").unwrap_err();
        assert!(
            err.contains("partial configuration is not valid TOML"),
            "{err}"
        );
    }
}
