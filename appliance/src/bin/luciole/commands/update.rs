//! The daemon's side of `update.install`: one job at a time, run on its own
//! thread (a download takes minutes), its steps handed back to the command
//! handler as `update` and `audit` events.
//!
//! The job's stage is kept in `<remote.state_dir>/update/job.json`
//! ([`luciole::update::Job`]) so that a restart of the daemon picks it up:
//! a download resumes, an installation interrupted is made again, an
//! installed system waits for its window again, and after the reboot the
//! daemon reports the boot (`booted`) and the boot check's verdict (`good`,
//! or `failed` with `rolled_back` when the pole is back on its old slot).
//!
//! The daemon cannot reboot the pole itself (no privileges): it writes
//! `<remote.state_dir>/reboot-requested`, which the image's
//! `luciole-reboot.path` unit acts on.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use luciole::events::{rfc3339_ms, Audit, Body, UpdateStep};
use luciole::update::{self, download::Progress, Installer, Job, Stage, UpdateSettings, Window};

/// The file the image's `luciole-reboot.path` watches, in the state folder.
pub const REBOOT_REQUEST: &str = "reboot-requested";

/// How long the daemon waits for the reboot it asked for before it says
/// nothing acted on the request.
const REBOOT_GRACE: Duration = Duration::from_secs(300);

/// How long after a reboot into a new system the boot check has to give
/// its verdict before the daemon stops waiting.
const VERDICT_WAIT: Duration = Duration::from_secs(1800);

/// What a job's thread sends back.
type Events = crossbeam_channel::Receiver<Body>;

/// The update jobs of one pole.
pub struct Updates {
    settings: UpdateSettings,
    dir: PathBuf,
    reboot_request: PathBuf,
    running: Option<(Events, std::thread::JoinHandle<()>)>,
    /// After a reboot into a new system: waiting for the boot check (since
    /// when, and whether `booted` was reported).
    verdict: Option<(Job, Instant, bool)>,
}

impl Updates {
    /// The jobs kept under `state_dir`; picks up one left by a previous
    /// run (its events come with the next [`Updates::tick`]).
    pub fn start(settings: UpdateSettings, state_dir: &Path) -> Updates {
        let mut updates = Updates {
            settings,
            dir: state_dir.join("update"),
            reboot_request: state_dir.join(REBOOT_REQUEST),
            running: None,
            verdict: None,
        };
        match Job::load(&updates.dir) {
            Ok(Some(job)) if job.stage == Stage::Rebooting && job.boot_id != boot_id() => {
                // The reboot happened: the boot check decides.
                let _ = std::fs::remove_file(&updates.reboot_request);
                updates.verdict = Some((job, Instant::now(), false));
            }
            Ok(Some(job)) => updates.spawn(job),
            Ok(None) => {}
            Err(err) => {
                tracing::error!("update: {err}: the job is dropped");
                Job::clear(&updates.dir);
            }
        }
        updates
    }

    /// The settings changed (a reload): new downloads use them.
    pub fn reconfigure(&mut self, settings: UpdateSettings) {
        self.settings = settings;
    }

    /// The stage of the job in progress, if any.
    pub fn stage(&self) -> Option<Stage> {
        Job::load(&self.dir).ok().flatten().map(|job| job.stage)
    }

    /// Starts a job, unless one is in progress (its stage is the error).
    pub fn order(
        &mut self,
        key: &str,
        url: String,
        sha256: String,
        size: Option<u64>,
        window: Option<String>,
    ) -> Result<serde_json::Value, (&'static str, String)> {
        if let Some(stage) = self.stage() {
            return Err((
                "busy",
                format!("an update is already in progress (stage {stage:?}); it must end first"),
            ));
        }
        let limit = size.unwrap_or(self.settings.max_bytes);
        if limit > self.settings.max_bytes {
            return Err((
                "too_large",
                format!(
                    "size {limit} is more than remote.update.max_mib allows ({} bytes)",
                    self.settings.max_bytes
                ),
            ));
        }
        let window_text = self.window(window.as_deref()).text().to_string();
        let job = Job {
            url,
            sha256,
            size,
            window,
            key: key.to_string(),
            from_slot: super::remote::booted_slot(),
            stage: Stage::Downloading,
            boot_id: None,
        };
        job.save(&self.dir)
            .map_err(|e| ("io_error", e.to_string()))?;
        self.spawn(job);
        Ok(serde_json::json!({
            "accepted": true,
            "window": window_text,
            "steps": "reported as update events",
        }))
    }

    fn window(&self, text: Option<&str>) -> Window {
        let zone = self.settings.window.zone();
        text.and_then(|t| Window::parse(t, zone).ok())
            .unwrap_or_else(|| self.settings.window.clone())
    }

    fn spawn(&mut self, job: Job) {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let worker = Worker {
            window: self.window(job.window.as_deref()),
            limit: job
                .size
                .unwrap_or(self.settings.max_bytes)
                .min(self.settings.max_bytes),
            ca: self.settings.ca.clone(),
            dir: self.dir.clone(),
            reboot_request: self.reboot_request.clone(),
            sender,
        };
        match std::thread::Builder::new()
            .name("update".into())
            .spawn(move || worker.run(job, &mut update::rauc::Rauc::default()))
        {
            Ok(handle) => self.running = Some((receiver, handle)),
            Err(err) => tracing::error!("update: cannot start its thread: {err}"),
        }
    }

    /// Events the job made since the last call, and the boot check's
    /// verdict after a reboot.
    pub fn tick(&mut self) -> Vec<Body> {
        let mut out = Vec::new();
        if let Some((events, handle)) = &self.running {
            out.extend(events.try_iter());
            if handle.is_finished() {
                out.extend(events.try_iter());
                self.running = None;
            }
        }
        if let Some((job, since, announced)) = self.verdict.take() {
            let slot = super::remote::booted_slot();
            let record = std::fs::read_to_string(&self.settings.boot_record).ok();
            let step = |step: &str, code: Option<&str>, detail: String| {
                body(&job, step, |s| {
                    s.slot = slot.clone();
                    s.code = code.map(str::to_string);
                    s.detail = detail;
                })
            };
            if !announced {
                out.push(step(
                    "booted",
                    None,
                    format!(
                        "booted slot {} after the update",
                        slot.as_deref().unwrap_or("?")
                    ),
                ));
            }
            let back_on_old = slot.is_some() && slot == job.from_slot;
            match record {
                _ if back_on_old => {
                    let detail = format!(
                        "the pole is back on slot {} (the new system was refused by the boot check or did not boot)",
                        slot.as_deref().unwrap_or("?")
                    );
                    out.push(step("failed", Some("rolled_back"), detail.clone()));
                    out.push(audit(&job, "failed", Some("rolled_back"), detail));
                    Job::clear(&self.dir);
                }
                Some(record) if record.starts_with("good") => {
                    let detail = record.trim().to_string();
                    out.push(step("good", None, detail.clone()));
                    out.push(audit(&job, "done", None, detail));
                    Job::clear(&self.dir);
                }
                _ if since.elapsed() > VERDICT_WAIT => {
                    let detail = format!(
                        "{}: no verdict from the boot check {} s after boot",
                        self.settings.boot_record.display(),
                        VERDICT_WAIT.as_secs()
                    );
                    out.push(step("failed", Some("no_verdict"), detail.clone()));
                    out.push(audit(&job, "failed", Some("no_verdict"), detail));
                    Job::clear(&self.dir);
                }
                _ => self.verdict = Some((job, since, true)),
            }
        }
        out
    }
}

/// This boot's id (changes at each boot).
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

fn body(job: &Job, step: &str, fill: impl FnOnce(&mut UpdateStep)) -> Body {
    let mut s = UpdateStep {
        step: step.into(),
        url: update::shown_url(&job.url),
        sha256: job.sha256.clone(),
        bytes: None,
        percent: None,
        slot: None,
        at: None,
        code: None,
        detail: String::new(),
    };
    fill(&mut s);
    Body::Update(s)
}

fn audit(job: &Job, outcome: &str, code: Option<&str>, detail: String) -> Body {
    Body::Audit(Audit {
        key: Some(job.key.clone()),
        role: Some("integrator".into()),
        command: Some("update.install".into()),
        outcome: outcome.into(),
        code: code.map(str::to_string),
        detail,
    })
}

/// One job's thread.
struct Worker {
    window: Window,
    limit: u64,
    ca: PathBuf,
    dir: PathBuf,
    reboot_request: PathBuf,
    sender: crossbeam_channel::Sender<Body>,
}

impl Worker {
    fn send(&self, body: Body) {
        let _ = self.sender.send(body);
    }

    /// The job failed: its `failed` step and audit.
    fn report_failure(&self, job: &Job, code: &str, detail: String) {
        tracing::error!("update: {detail}");
        self.send(body(job, "failed", |s| {
            s.code = Some(code.into());
            s.detail = detail.clone();
        }));
        self.send(audit(job, "failed", Some(code), detail));
    }

    /// The job failed and is over: reported, and its files removed.
    fn fail(&self, job: &Job, code: &str, detail: String) {
        self.report_failure(job, code, detail);
        Job::clear(&self.dir);
    }

    fn save(&self, job: &mut Job, stage: Stage) -> bool {
        job.stage = stage;
        if let Err(err) = job.save(&self.dir) {
            self.fail(job, "io_error", err.to_string());
            return false;
        }
        true
    }

    fn run(self, mut job: Job, installer: &mut dyn Installer) {
        if matches!(job.stage, Stage::Downloading | Stage::Installing) {
            let fetch = update::Fetch {
                url: &job.url,
                sha256: &job.sha256,
                limit: self.limit,
                ca: &self.ca,
                dir: &self.dir,
                retry: Duration::from_secs(5),
            };
            let mut report = |p: Progress| match p {
                Progress::Started { from, total } => self.send(body(&job, "downloading", |s| {
                    s.bytes = Some(from);
                    s.detail = match (from, total) {
                        (0, Some(t)) => format!("downloading {t} bytes"),
                        (0, None) => "downloading".into(),
                        (f, _) => format!("resuming from byte {f}"),
                    };
                })),
                Progress::Received { bytes, total } => self.send(body(&job, "downloading", |s| {
                    s.bytes = Some(bytes);
                    s.detail = total.map_or(String::new(), |t| format!("{bytes} of {t} bytes"));
                })),
                Progress::Retrying { attempt, wait } => self.send(body(&job, "downloading", |s| {
                    s.detail = format!(
                        "attempt {attempt} broke off; resuming in {} s",
                        wait.as_secs()
                    );
                })),
            };
            let bundle = match update::download(&fetch, &mut report, &|| false) {
                Ok(bundle) => bundle,
                Err(err) => return self.fail(&job, err.code(), err.to_string()),
            };
            let bytes = bundle.metadata().map(|m| m.len()).ok();
            self.send(body(&job, "downloaded", |s| {
                s.bytes = bytes;
                s.detail = "the sha256 matches".into();
            }));
            if !self.save(&mut job, Stage::Installing) {
                return;
            }
            self.send(body(&job, "installing", |s| {
                s.percent = Some(0);
                s.detail = "handed to RAUC".into();
            }));
            let mut quarter = 0u8;
            let result = installer.install(&bundle, &mut |percent, message| {
                // A step at each quarter: RAUC reports many more.
                if percent / 25 > quarter && percent < 100 {
                    quarter = percent / 25;
                    self.send(body(&job, "installing", |s| {
                        s.percent = Some(percent);
                        s.detail = message.to_string();
                    }));
                }
            });
            // The slot is written (or not): the bundle is no longer needed.
            let _ = std::fs::remove_file(&bundle);
            if let Err(err) = result {
                return self.fail(&job, err.code(), err.to_string());
            }
            if !self.save(&mut job, Stage::Installed) {
                return;
            }
            self.send(body(&job, "installed", |s| {
                s.percent = Some(100);
                s.detail = "the other slot holds the new system; it boots next".into();
            }));
        }
        if job.stage == Stage::Installed {
            let wait = self.window.wait_ms(luciole::events::now_ms() as i64);
            if wait > 0 {
                let at = luciole::events::now_ms() + wait as u64;
                self.send(body(&job, "scheduled", |s| {
                    s.at = Some(rfc3339_ms(at));
                    s.detail = format!("reboot in the maintenance window {}", self.window.text());
                }));
                // The clock is read again each minute (it may be set meanwhile).
                while self.window.wait_ms(luciole::events::now_ms() as i64) > 0 {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            job.boot_id = boot_id();
            if !self.save(&mut job, Stage::Rebooting) {
                return;
            }
        }
        // Rebooting (again, if the daemon restarted before the reboot came).
        if let Err(err) = std::fs::write(&self.reboot_request, b"update.install\n") {
            return self.fail(
                &job,
                "io_error",
                format!(
                    "{}: cannot ask for the reboot: {err}",
                    self.reboot_request.display()
                ),
            );
        }
        self.send(body(&job, "rebooting", |s| {
            s.detail = format!(
                "reboot asked for ({}), in the window {}",
                self.reboot_request.display(),
                self.window.text()
            );
        }));
        std::thread::sleep(REBOOT_GRACE);
        if self.reboot_request.exists() {
            let detail = format!(
                "{}: nothing acted on the reboot request in {} s (is luciole-reboot.path enabled?); the new system boots at the next reboot",
                self.reboot_request.display(),
                REBOOT_GRACE.as_secs()
            );
            // The job stays: the new system boots at the next reboot, and
            // the daemon then reports it.
            self.report_failure(&job, "reboot_not_done", detail);
        }
    }
}
