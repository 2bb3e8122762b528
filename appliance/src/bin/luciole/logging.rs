//! Logging set-up: plain lines without timestamps by default (journald adds
//! its own), or one JSON object per line for log collectors.

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

/// Installs the global subscriber. `level` is a tracing filter such as
/// `info` or `luciole=debug,warn`; `RUST_LOG` overrides it when set.
pub fn init(format: LogFormat, level: &str) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env),
        _ => EnvFilter::try_new(level),
    }
    .map_err(|err| format!("bad log filter: {err}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Plain => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|err| err.to_string())
}
