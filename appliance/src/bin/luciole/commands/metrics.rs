//! The daemon's OpenMetrics endpoint (`[metrics] listen`, loopback only)
//! and `luciole status`, which reads it for someone on the pole's console.
//!
//! The endpoint is a small HTTP/1.1 responder on its own thread: `GET
//! /metrics` returns [`luciole::metrics::render`] of a snapshot taken at
//! that moment; anything else is 404 or 405. One connection at a time, with
//! read and write timeouts, so a stuck client cannot hold it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use luciole::metrics::{self, MetricsSettings, Snapshot};

/// How long a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The running endpoint; stops when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on `settings.listen` and answers with `snapshot()`.
    pub fn start(
        settings: &MetricsSettings,
        snapshot: impl Fn() -> Snapshot + Send + 'static,
    ) -> anyhow::Result<Server> {
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("metrics.listen = {}: cannot listen", settings.listen))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Err(err) = answer(stream, &snapshot) {
                                tracing::debug!("metrics: a client went away: {err}");
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(err) => {
                            tracing::warn!("metrics: accept failed: {err}");
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                }
            })?;
        tracing::info!(listen = %settings.listen, "metrics endpoint: GET /metrics");
        Ok(Server {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(mut stream: TcpStream, snapshot: &impl Fn() -> Snapshot) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let mut parts = line.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, kind, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics::render(&snapshot()),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "only /metrics is here\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Fetches the exposition from `address`.
pub fn fetch(address: SocketAddr) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, CLIENT_TIMEOUT).with_context(|| {
        format!("{address}: cannot reach the daemon's metrics endpoint (is `luciole run` running, with a [metrics] section?)")
    })?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("{address}: not an HTTP answer"))?;
    if !head.starts_with("HTTP/1.1 200") {
        anyhow::bail!("{address}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// `luciole status --config FILE [--raw]`.
pub fn status(config: &Path, raw: bool) -> anyhow::Result<ExitCode> {
    let settings = luciole::config::load(config)?;
    let Some(metrics) = &settings.metrics else {
        anyhow::bail!(
            "{}: no [metrics] section: the daemon serves no figures to read",
            config.display()
        );
    };
    let text = fetch(metrics.listen)?;
    if raw {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", describe(&metrics::parse(&text)));
    Ok(ExitCode::SUCCESS)
}

/// The figures for people, one topic per line.
fn describe(samples: &[(String, f64)]) -> String {
    let get = |name: &str| samples.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let version = samples
        .iter()
        .find_map(|(n, _)| n.strip_prefix("luciole_build_info{version=\""))
        .and_then(|v| v.strip_suffix("\"}"))
        .unwrap_or("?");
    let mut out = format!(
        "luciole {version}, up {}\n",
        duration(get("luciole_uptime_seconds").unwrap_or(0.0))
    );
    match get("luciole_frames_total") {
        Some(frames) => {
            out += &format!(
                "camera: {frames} frames, {} fps, {} dropped, {} reconnects\n",
                get("luciole_fps").unwrap_or(0.0),
                get("luciole_dropped_frames_total").unwrap_or(0.0),
                get("luciole_camera_reconnects_total").unwrap_or(0.0)
            );
            out += &format!(
                "detection: {} inferences ({} per second), {} frames spared by motion gating, {} predicted only, mean {}, {} tracks\n",
                get("luciole_inferences_total").unwrap_or(0.0),
                get("luciole_inference_fps").unwrap_or(0.0),
                get("luciole_skipped_by_motion_total").unwrap_or(0.0),
                get("luciole_predicted_total").unwrap_or(0.0),
                mean_ms(samples, "luciole_inference_seconds"),
                get("luciole_tracks").unwrap_or(0.0)
            );
        }
        None => out += "camera: no health figures yet\n",
    }
    if let Some(depth) = get("luciole_outbox_depth") {
        out += &format!("outbox: {depth} events waiting\n");
    }
    if let Some(up) = get("luciole_broker_connected") {
        out += &format!(
            "broker: {}, {} reconnects, {} events acknowledged, {} set aside, publish latency mean {}\n",
            if up > 0.0 { "connected" } else { "not connected" },
            get("luciole_broker_reconnects_total").unwrap_or(0.0),
            get("luciole_events_acked_total").unwrap_or(0.0),
            get("luciole_events_set_aside_total").unwrap_or(0.0),
            mean_ms(samples, "luciole_publish_latency_seconds")
        );
    }
    if let Some(level) = get("luciole_lamp_level") {
        out += &format!("lamp: {} %\n", (level * 1000.0).round() / 10.0);
    }
    out
}

fn mean_ms(samples: &[(String, f64)], histogram: &str) -> String {
    let get = |suffix: &str| {
        samples
            .iter()
            .find(|(n, _)| *n == format!("{histogram}{suffix}"))
            .map(|(_, v)| *v)
    };
    match (get("_sum"), get("_count")) {
        (Some(sum), Some(count)) if count > 0.0 => {
            format!("{:.1} ms over {count}", sum / count * 1000.0)
        }
        _ => "-".into(),
    }
}

fn duration(secs: f64) -> String {
    let secs = secs as u64;
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}
