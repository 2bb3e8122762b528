//! Logging set-up: plain lines without timestamps by default (journald adds
//! its own), or one JSON object per line for log collectors.
//!
//! With JSON, what native libraries write to standard error themselves
//! (LiteRT's `INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`, a
//! vendor delegate's lines) would break the one-object-per-line stream.
//! LiteRT's C API has no switch for the TFLite runtime's own logger, so file
//! descriptor 2 is pointed at a pipe: a thread reads it line by line and
//! logs each line as an event of target `native` (level from its `INFO:`,
//! `WARNING:`, `ERROR:` prefix), and the log itself goes to the original
//! standard error. A panic is logged as an event too. The plain format
//! leaves standard error alone (every line is plain text there anyway).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written to standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `LEVEL target: message key=value`, no timestamp.
    #[default]
    Plain,
    /// One JSON object per line, with a timestamp.
    Json,
}

/// Keeps native standard error flowing into the log; on drop, puts the
/// original standard error back and forwards the last lines.
#[must_use = "dropping it ends the capture of native standard error"]
pub struct Logging {
    capture: Option<Capture>,
}

struct Capture {
    original: OwnedFd,
    reader: JoinHandle<()>,
}

impl Drop for Logging {
    fn drop(&mut self) {
        if let Some(capture) = self.capture.take() {
            // Descriptor 2 was the pipe's last writer: restoring it ends
            // the pipe, and the reader forwards what is left, then stops.
            if redirect_stderr(&capture.original).is_ok() {
                let _ = capture.reader.join();
            }
        }
    }
}

/// A pipe: (read end, write end), both closed on exec so that children
/// (ffmpeg) do not inherit them.
fn new_pipe() -> std::io::Result<(File, OwnedFd)> {
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((File::from(reader), writer))
}

/// Makes standard error (descriptor 2) a copy of `from`.
fn redirect_stderr(from: impl AsFd) -> std::io::Result<()> {
    Ok(rustix::stdio::dup2_stderr(from)?)
}

/// Installs the global subscriber. `level` is a tracing filter such as
/// `info` or `luciole=debug,warn`; `RUST_LOG` overrides it when set.
pub fn init(format: LogFormat, level: &str) -> Result<Logging, String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env),
        _ => EnvFilter::try_new(level),
    }
    .map_err(|err| format!("bad log filter: {err}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Plain => {
            builder
                .with_writer(std::io::stderr)
                .without_time()
                .with_ansi(false)
                .try_init()
                .map_err(|err| err.to_string())?;
            Ok(Logging { capture: None })
        }
        LogFormat::Json => {
            let original = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| format!("cannot copy stderr: {e}"))?;
            let writer = Arc::new(File::from(
                original
                    .try_clone()
                    .map_err(|e| format!("cannot copy stderr: {e}"))?,
            ));
            builder
                .with_writer(writer)
                .json()
                .flatten_event(true)
                .try_init()
                .map_err(|err| err.to_string())?;
            let capture = capture_stderr(original)
                .inspect_err(|err| {
                    tracing::warn!("native libraries' messages stay on stderr as they are: {err}")
                })
                .ok();
            if capture.is_some() {
                std::panic::set_hook(Box::new(|info| {
                    tracing::error!(target: "panic", "{info}");
                }));
            }
            Ok(Logging { capture })
        }
    }
}

/// Points descriptor 2 at a pipe read by a thread that logs each line.
fn capture_stderr(original: OwnedFd) -> std::io::Result<Capture> {
    let (reader, writer) = new_pipe()?;
    let thread = std::thread::Builder::new()
        .name("native-stderr".into())
        .spawn(move || forward(BufReader::new(reader)))?;
    redirect_stderr(&writer)?;
    drop(writer);
    Ok(Capture {
        original,
        reader: thread,
    })
}

/// Logs each line from `reader` until its end.
fn forward(mut reader: impl BufRead) {
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        match Severity::of(line) {
            (Severity::Error, text) => tracing::error!(target: "native", "{text}"),
            (Severity::Warn, text) => tracing::warn!(target: "native", "{text}"),
            (Severity::Info, text) => tracing::info!(target: "native", "{text}"),
            (Severity::Debug, text) => tracing::debug!(target: "native", "{text}"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Severity {
    Error,
    Warn,
    Info,
    Debug,
}

impl Severity {
    /// The level a native line announces (TFLite's and LiteRT's `LEVEL: `
    /// prefixes) and the text after it; unmarked lines are warnings.
    fn of(line: &str) -> (Severity, &str) {
        const PREFIXES: [(&str, Severity); 6] = [
            ("ERROR: ", Severity::Error),
            ("FATAL: ", Severity::Error),
            ("WARNING: ", Severity::Warn),
            ("INFO: ", Severity::Info),
            ("VERBOSE: ", Severity::Debug),
            ("DEBUG: ", Severity::Debug),
        ];
        for (prefix, severity) in PREFIXES {
            if let Some(text) = line.strip_prefix(prefix) {
                return (severity, text);
            }
        }
        (Severity::Warn, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_prefixes_give_the_level_and_unmarked_lines_are_warnings() {
        assert_eq!(
            Severity::of("INFO: Created TensorFlow Lite XNNPACK delegate for CPU."),
            (
                Severity::Info,
                "Created TensorFlow Lite XNNPACK delegate for CPU."
            )
        );
        assert_eq!(Severity::of("ERROR: boom"), (Severity::Error, "boom"));
        assert_eq!(Severity::of("WARNING: w"), (Severity::Warn, "w"));
        assert_eq!(Severity::of("something"), (Severity::Warn, "something"));
    }
}
