//! The bundle's download: HTTPS with the city's CA only, resumable, bounded
//! in size, checked against the sha256 the command gave.
//!
//! Files in the job's folder: `bundle.want` (the URL and sha256 the partial
//! file belongs to), `bundle.part` (what has arrived), and `bundle.raucb`
//! once it is complete and its sha256 matched. A new order for another
//! bundle starts from nothing; the same order resumes with
//! `Range: bytes=<have>-`. A server that ignores the range (200) is read
//! from the start again.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::UpdateError;

pub(crate) const PART: &str = "bundle.part";
pub(crate) const WANT: &str = "bundle.want";
pub(crate) const BUNDLE: &str = "bundle.raucb";

/// Attempts per download (each resumes the last).
const ATTEMPTS: u32 = 5;

/// One download to make.
pub struct Fetch<'a> {
    pub url: &'a str,
    /// Lower-case hex.
    pub sha256: &'a str,
    /// The most bytes accepted.
    pub limit: u64,
    /// The CA certificates (PEM) the server's certificate must chain to.
    pub ca: &'a Path,
    /// The job's folder.
    pub dir: &'a Path,
    /// The first retry's wait (doubled each time).
    pub retry: Duration,
}

/// How a download is going.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A request starts, `from` bytes already here.
    Started { from: u64, total: Option<u64> },
    /// Bytes here so far (about every tenth of the bundle).
    Received { bytes: u64, total: Option<u64> },
    /// An attempt failed; the next one resumes after `wait`.
    Retrying { attempt: u32, wait: Duration },
}

/// Downloads (or finishes downloading) the bundle; returns its path once
/// its sha256 matches. `stop` is polled between reads: when it says so, the
/// download ends with the partial file kept.
pub fn download(
    fetch: &Fetch<'_>,
    progress: &mut dyn FnMut(Progress),
    stop: &dyn Fn() -> bool,
) -> Result<PathBuf, UpdateError> {
    let dir = fetch.dir;
    std::fs::create_dir_all(dir).map_err(|e| UpdateError::io(dir, e))?;
    let bundle = dir.join(BUNDLE);
    let part = dir.join(PART);
    let want = dir.join(WANT);
    let wanted = format!("{} {}\n", fetch.url, fetch.sha256);
    if std::fs::read_to_string(&want).ok().as_deref() != Some(wanted.as_str()) {
        for stale in [&bundle, &part] {
            let _ = std::fs::remove_file(stale);
        }
        std::fs::write(&want, &wanted).map_err(|e| UpdateError::io(&want, e))?;
    }
    if bundle.is_file() && file_sha256(&bundle)? == fetch.sha256 {
        return Ok(bundle);
    }
    let agent = agent(fetch.ca)?;
    let mut wait = fetch.retry;
    let mut attempt = 1;
    loop {
        match attempt_once(&agent, fetch, &part, progress, stop) {
            Ok(()) => break,
            Err(Failure::Fatal(err)) => return Err(err),
            Err(Failure::Retry(err)) if attempt >= ATTEMPTS || stop() => {
                return Err(UpdateError::Download(format!(
                    "{err} (after {attempt} attempts; the {} bytes received are kept for the next try)",
                    part.metadata().map(|m| m.len()).unwrap_or(0)
                )))
            }
            Err(Failure::Retry(err)) => {
                tracing::warn!("update: download attempt {attempt} failed: {err}");
                progress(Progress::Retrying { attempt, wait });
                sleep_unless(wait, stop);
                wait = (wait * 2).min(Duration::from_secs(300));
                attempt += 1;
            }
        }
    }
    let got = file_sha256(&part)?;
    if got != fetch.sha256 {
        let _ = std::fs::remove_file(&part);
        return Err(UpdateError::Sha256Mismatch {
            want: fetch.sha256.into(),
            got,
        });
    }
    std::fs::rename(&part, &bundle).map_err(|e| UpdateError::io(&bundle, e))?;
    Ok(bundle)
}

enum Failure {
    Retry(String),
    Fatal(UpdateError),
}

fn agent(ca: &Path) -> Result<ureq::Agent, UpdateError> {
    let ca_error = |reason: String| UpdateError::Ca {
        path: ca.display().to_string(),
        reason,
    };
    let pem = std::fs::read(ca).map_err(|e| ca_error(e.to_string()))?;
    let mut roots = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => roots.push(cert),
            Ok(_) => {}
            Err(e) => return Err(ca_error(format!("not PEM: {e}"))),
        }
    }
    if roots.is_empty() {
        return Err(ca_error("no certificate in the file".into()));
    }
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .https_only(true)
        .http_status_as_error(false)
        .max_redirects(3)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        // A stalled transfer: no byte for this long ends the attempt.
        .timeout_recv_body(Some(Duration::from_secs(120)))
        .user_agent(concat!("luciole/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(config.into())
}

fn attempt_once(
    agent: &ureq::Agent,
    fetch: &Fetch<'_>,
    part: &Path,
    progress: &mut dyn FnMut(Progress),
    stop: &dyn Fn() -> bool,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Fatal(UpdateError::io(part, e));
    let mut have = part.metadata().map(|m| m.len()).unwrap_or(0);
    if have > fetch.limit {
        let _ = std::fs::remove_file(part);
        have = 0;
    }
    let mut request = agent.get(fetch.url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = request.call().map_err(|e| classify(&e))?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let length = header("content-length").and_then(|v| v.parse::<u64>().ok());
    let (start, total) = match status {
        206 => {
            // "bytes START-END/TOTAL": only a continuation of what is here.
            let range = header("content-range").unwrap_or_default();
            let parsed = range
                .strip_prefix("bytes ")
                .and_then(|r| r.split_once('-'))
                .and_then(|(s, rest)| {
                    let total = rest
                        .split_once('/')
                        .and_then(|(_, t)| t.parse::<u64>().ok());
                    Some((s.parse::<u64>().ok()?, total))
                });
            match parsed {
                Some((s, total)) if s == have => (have, total),
                _ => {
                    let _ = std::fs::remove_file(part);
                    return Err(Failure::Retry(format!(
                        "the server answered range {range:?} to a request from byte {have}: starting again"
                    )));
                }
            }
        }
        200 => (0, length),
        416 if have > 0 => {
            // Nothing after what is here: it is complete (the sha256 says).
            return Ok(());
        }
        408 | 429 | 500..=599 => {
            return Err(Failure::Retry(format!(
                "HTTP {status} from {}",
                super::shown_url(fetch.url)
            )))
        }
        _ => {
            return Err(Failure::Fatal(UpdateError::Download(format!(
                "HTTP {status} from {}",
                super::shown_url(fetch.url)
            ))))
        }
    };
    if let Some(total) = total {
        if total > fetch.limit {
            let _ = std::fs::remove_file(part);
            return Err(Failure::Fatal(UpdateError::TooLarge {
                limit: fetch.limit,
                detail: format!("the server says {total} bytes"),
            }));
        }
    }
    progress(Progress::Started { from: start, total });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(start == 0)
        .append(start > 0)
        .open(part)
        .map_err(io)?;
    let room = fetch.limit - start;
    // One byte past the limit tells a body that is too large.
    let mut body = response
        .into_body()
        .into_with_config()
        .limit(room + 1)
        .reader();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut done = start;
    let step = total.map_or(u64::MAX, |t| (t / 10).max(1));
    let mut next_report = done + step;
    loop {
        if stop() {
            file.sync_all().map_err(io)?;
            return Err(Failure::Retry("stopped".into()));
        }
        let n = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                file.sync_all().map_err(io)?;
                return Err(Failure::Retry(format!(
                    "the transfer broke at byte {done}: {e}"
                )));
            }
        };
        if done + n as u64 > fetch.limit {
            drop(file);
            let _ = std::fs::remove_file(part);
            return Err(Failure::Fatal(UpdateError::TooLarge {
                limit: fetch.limit,
                detail: "the body went on past it".into(),
            }));
        }
        file.write_all(&buffer[..n]).map_err(io)?;
        done += n as u64;
        if done >= next_report {
            progress(Progress::Received { bytes: done, total });
            next_report = done + step;
        }
    }
    file.sync_all().map_err(io)?;
    if let Some(total) = total {
        if done != total {
            return Err(Failure::Retry(format!(
                "the transfer ended at byte {done} of {total}"
            )));
        }
    }
    Ok(())
}

fn classify(err: &ureq::Error) -> Failure {
    match err {
        // TLS failures (a certificate not from the city's CA, a name that
        // does not match) come as invalid data: trying again would not help.
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => Failure::Fatal(
            UpdateError::Download(format!("TLS with the bundle server failed: {e}")),
        ),
        ureq::Error::Io(_)
        | ureq::Error::Timeout(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::HostNotFound => Failure::Retry(err.to_string()),
        // Certificates, URLs and protocol errors do not get better by
        // trying again.
        _ => Failure::Fatal(UpdateError::Download(err.to_string())),
    }
}

fn sleep_unless(wait: Duration, stop: &dyn Fn() -> bool) {
    let until = std::time::Instant::now() + wait;
    while std::time::Instant::now() < until && !stop() {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The sha256 of a file, in lower-case hex.
pub fn file_sha256(path: &Path) -> Result<String, UpdateError> {
    let mut file = std::fs::File::open(path).map_err(|e| UpdateError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| UpdateError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
