//! Software updates ordered remotely (`update.install`): the bundle's
//! download, its check and its installation, one step at a time.
//!
//! The steps, each reported by the daemon as an `update` event:
//!
//! 1. [`download`]: the bundle is fetched over HTTPS, trusting only the
//!    city's CA (`remote.update.ca`), into `<remote.state_dir>/update/` on
//!    the data partition. A download that breaks (link down, daemon
//!    restarted) resumes where it stopped with an HTTP range request. It is
//!    bounded in size (`remote.update.max_mib`, or the size the command
//!    gives) and checked against the command's sha256 before anything else
//!    reads it.
//! 2. [`rauc`]: the bundle goes to RAUC over its D-Bus API (RAUC checks its
//!    signature against the image's keyring and writes the other slot); the
//!    [`Installer`] trait keeps the daemon's logic testable without it.
//! 3. The reboot waits for the maintenance [`Window`] (the command's or
//!    the configuration's), then is asked of systemd through a request file
//!    (the daemon has no privilege to reboot; `luciole-reboot.path` acts on
//!    the file).
//! 4. After the reboot, the image's boot check marks the new slot good once
//!    the daemon analyses frames (or rolls back); the daemon reports which.
//!
//! The job's state is a small JSON file ([`Job`]) so that each step
//! survives a restart of the daemon or of the pole.

pub mod download;
pub mod rauc;
pub mod window;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use download::{download, Fetch};
pub use window::Window;

/// `[remote.update]`: where bundles may come from and when the pole may
/// reboot for them.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateSettings {
    /// The city's CA certificates (PEM): the only roots a bundle server's
    /// certificate is checked against.
    pub ca: PathBuf,
    /// The largest bundle accepted, in bytes.
    pub max_bytes: u64,
    /// When the pole may reboot into a new system, unless the command says.
    pub window: Window,
    /// The boot check's record for this boot (`good ...` once the booted
    /// slot is marked good).
    pub boot_record: PathBuf,
}

impl UpdateSettings {
    /// The defaults with the CA at `ca`.
    pub fn new(ca: PathBuf) -> Self {
        Self {
            ca,
            max_bytes: 1024 * 1024 * 1024,
            window: Window::parse("02:00-05:00", "UTC").expect("a valid default window"),
            boot_record: PathBuf::from("/run/luciole-boot-check"),
        }
    }
}

/// What went wrong in an update; [`UpdateError::code`] is the stable part
/// events and answers carry.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{0}")]
    BadUrl(String),
    #[error("{path}: cannot read the update CA: {reason}")]
    Ca { path: String, reason: String },
    #[error("the bundle is larger than the {limit} bytes allowed ({detail})")]
    TooLarge { limit: u64, detail: String },
    #[error("download failed: {0}")]
    Download(String),
    #[error("the bundle's sha256 is {got}, the command said {want}")]
    Sha256Mismatch { want: String, got: String },
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("RAUC refused or failed the installation: {0}")]
    Install(String),
    #[error("cannot reach RAUC on the system bus: {0}")]
    Bus(String),
}

impl UpdateError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            UpdateError::BadUrl(_) => "bad_url",
            UpdateError::Ca { .. } => "no_update_ca",
            UpdateError::TooLarge { .. } => "too_large",
            UpdateError::Download(_) => "download_failed",
            UpdateError::Sha256Mismatch { .. } => "sha256_mismatch",
            UpdateError::Io { .. } => "io_error",
            UpdateError::Install(_) => "install_failed",
            UpdateError::Bus(_) => "install_failed",
        }
    }

    pub(crate) fn io(path: &Path, err: impl std::fmt::Display) -> Self {
        UpdateError::Io {
            path: path.display().to_string(),
            reason: err.to_string(),
        }
    }
}

/// Installs a checked bundle into the slot not booted.
pub trait Installer: Send {
    /// Installs `bundle`, calling `progress` with RAUC's percentage and
    /// message as it goes; returns once the slot is written.
    fn install(
        &mut self,
        bundle: &Path,
        progress: &mut dyn FnMut(u8, &str),
    ) -> Result<(), UpdateError>;
}

/// Where an update job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Downloading (or about to resume).
    Downloading,
    /// Handed to RAUC.
    Installing,
    /// The other slot holds the new system; waiting for the window.
    Installed,
    /// The reboot was asked for.
    Rebooting,
}

/// One update ordered remotely, kept in `<dir>/job.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub url: String,
    pub sha256: String,
    /// The size the command gave, if any (a tighter bound).
    #[serde(default)]
    pub size: Option<u64>,
    /// The command's window, if it gave one (else the configuration's).
    #[serde(default)]
    pub window: Option<String>,
    /// The key that ordered it.
    pub key: String,
    /// The slot booted when it was ordered.
    #[serde(default)]
    pub from_slot: Option<String>,
    pub stage: Stage,
    /// The boot the reboot was asked in (`Rebooting`): another boot id
    /// means the reboot happened.
    #[serde(default)]
    pub boot_id: Option<String>,
}

impl Job {
    const FILE: &'static str = "job.json";

    /// The job in `dir`, if one is there.
    pub fn load(dir: &Path) -> Result<Option<Job>, UpdateError> {
        let path = dir.join(Self::FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| UpdateError::io(&path, format!("not a job: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(UpdateError::io(&path, e)),
        }
    }

    /// Writes the job atomically.
    pub fn save(&self, dir: &Path) -> Result<(), UpdateError> {
        std::fs::create_dir_all(dir).map_err(|e| UpdateError::io(dir, e))?;
        let path = dir.join(Self::FILE);
        let bytes = serde_json::to_vec_pretty(self).expect("a job always serialises");
        let tmp = dir.join("job.json.tmp");
        std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| UpdateError::io(&path, e))
    }

    /// Removes the job and whatever its download left.
    pub fn clear(dir: &Path) {
        for name in [Self::FILE, download::PART, download::WANT, download::BUNDLE] {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
}

/// `url` as events may show it: scheme, host, port and path, without the
/// user, password or query (which may hold a token).
pub fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}://{host}{path}")
}

/// Checks an `update.install` URL: `https://`, a host, no spaces.
pub fn check_url(url: &str) -> Result<(), UpdateError> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(UpdateError::BadUrl(format!(
            "{:?}: the bundle's URL must start with https:// (bundles come over TLS, checked against the city's CA)",
            shown_url(url)
        )));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty()
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
        || url.len() > 2048
    {
        return Err(UpdateError::BadUrl(format!(
            "{:?}: not a URL with a host (and no spaces, at most 2048 characters)",
            shown_url(url)
        )));
    }
    Ok(())
}

/// Checks a sha256 given in hex: 64 hex digits, returned in lower case.
pub fn check_sha256(text: &str) -> Option<String> {
    (text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        assert_eq!(
            shown_url("https://user:secret@updates.city.example:8443/b/v2.raucb?token=abc#x"),
            "https://updates.city.example:8443/b/v2.raucb"
        );
        assert_eq!(shown_url("https://h"), "https://h");
    }

    #[test]
    fn only_https_urls_with_a_host_are_accepted() {
        assert!(check_url("https://10.0.2.101/update.raucb").is_ok());
        assert_eq!(check_url("http://h/x").unwrap_err().code(), "bad_url");
        assert_eq!(check_url("https:///x").unwrap_err().code(), "bad_url");
        assert_eq!(check_url("https://h/a b").unwrap_err().code(), "bad_url");
        assert_eq!(
            check_url("file:///etc/shadow").unwrap_err().code(),
            "bad_url"
        );
    }

    #[test]
    fn sha256_must_be_64_hex_digits() {
        let upper = "A".repeat(64);
        assert_eq!(check_sha256(&upper), Some("a".repeat(64)));
        assert_eq!(check_sha256(&"a".repeat(63)), None);
        assert_eq!(check_sha256(&"g".repeat(64)), None);
    }

    #[test]
    fn a_job_survives_a_round_trip_and_clear_removes_it() {
        let dir = std::env::temp_dir().join(format!("luciole-job-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(Job::load(&dir).unwrap(), None);
        let job = Job {
            url: "https://h/b.raucb".into(),
            sha256: "0".repeat(64),
            size: Some(10),
            window: Some("now".into()),
            key: "k".into(),
            from_slot: Some("A".into()),
            stage: Stage::Installed,
            boot_id: None,
        };
        job.save(&dir).unwrap();
        assert_eq!(Job::load(&dir).unwrap(), Some(job));
        std::fs::write(dir.join(download::PART), b"x").unwrap();
        Job::clear(&dir);
        assert_eq!(Job::load(&dir).unwrap(), None);
        assert!(!dir.join(download::PART).exists());
        std::fs::write(dir.join("job.json"), b"{").unwrap();
        let err = Job::load(&dir).unwrap_err();
        assert!(err.to_string().contains("job.json"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
