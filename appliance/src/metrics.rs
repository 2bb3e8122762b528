//! Metrics for people and scrapers on the pole: atomic histograms the
//! stages record into, and the OpenMetrics text exposition of a
//! [`Snapshot`] (pure: the figures are passed in).
//!
//! The daemon serves it on a loopback address (`[metrics] listen`, the
//! binary's `metrics` command module) and `luciole status` prints it for
//! someone on the pole's console. Nothing here is about a person: counts,
//! times and levels only.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::events::Health;

/// Where the endpoint listens (`[metrics]`, validated: a loopback address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSettings {
    pub listen: std::net::SocketAddr,
}

impl Default for MetricsSettings {
    /// 127.0.0.1:9464, the port OpenMetrics exporters commonly take.
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// Bucket bounds (seconds) of the inference time histogram: a model on a
/// small board takes tens to hundreds of milliseconds.
pub const INFERENCE_BOUNDS: [f64; 10] = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];

/// Bucket bounds (seconds) of the publish latency histogram (a QoS 1
/// publish to its PUBACK): a few ms on a LAN to seconds on a bad link.
pub const PUBLISH_BOUNDS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A histogram of durations, safe to record into from any thread.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not cumulative), then above
    /// the last.
    buckets: Vec<AtomicU64>,
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// A histogram's figures at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, cumulative count), then `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    pub sum_s: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let index = self
            .bounds
            .iter()
            .position(|bound| s <= *bound)
            .unwrap_or(self.bounds.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (i, bucket) in self.buckets.iter().enumerate() {
            total += bucket.load(Ordering::Relaxed);
            let bound = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, total));
        }
        HistogramSnapshot {
            buckets,
            sum_s: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: total,
        }
    }
}

/// Everything one exposition shows.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub version: String,
    pub uptime_s: u64,
    /// The last `health` event's figures, once there is one.
    pub health: Option<Health>,
    /// Events in the outbox now.
    pub outbox_depth: Option<u64>,
    /// Whether the broker connection is up (none without `[mqtt]`).
    pub broker_connected: Option<bool>,
    pub broker_reconnects: u64,
    pub events_acked: u64,
    pub events_set_aside: u64,
    pub publish_latency: Option<HistogramSnapshot>,
    pub inference: Option<HistogramSnapshot>,
    /// The lamp's target level (0 to 1), with a lamp.
    pub lamp_level: Option<f64>,
    /// The lamp's energy, with `lighting.lamp_watts`.
    pub energy: Option<EnergyFigures>,
}

/// The lamp's energy for the metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnergyFigures {
    /// kWh the lamp used since the daemon started.
    pub used_total_kwh: f64,
    /// The last night reported.
    pub last_night: Option<crate::light::energy::EnergyReport>,
}

/// The OpenMetrics text of `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "# HELP {name} {help}");
        for (suffix, value) in samples {
            let _ = writeln!(out, "{name}{suffix} {}", number(*value));
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    let total = |v: f64| vec![("_total".to_string(), v)];
    metric(
        "luciole_build",
        "info",
        "The daemon's version.",
        &[(format!("_info{{version=\"{}\"}}", snapshot.version), 1.0)],
    );
    metric(
        "luciole_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
        &one(snapshot.uptime_s as f64),
    );
    if let Some(h) = &snapshot.health {
        metric(
            "luciole_frames",
            "counter",
            "Frames received since start.",
            &total(h.frames as f64),
        );
        metric(
            "luciole_fps",
            "gauge",
            "Frames per second over the last health interval.",
            &one(h.fps),
        );
        metric(
            "luciole_dropped_frames",
            "counter",
            "Frames dropped by the driver or the queue since start.",
            &total(h.dropped_frames as f64),
        );
        metric(
            "luciole_inferences",
            "counter",
            "Model runs since start.",
            &total(h.inferences as f64),
        );
        metric(
            "luciole_skipped_by_motion",
            "counter",
            "Frames spared the model by motion gating since start.",
            &total(h.skipped_by_motion as f64),
        );
        metric(
            "luciole_predicted",
            "counter",
            "Frames where things moved but the tracker only predicted (the adaptive inference rate) since start.",
            &total(h.predicted as f64),
        );
        metric(
            "luciole_inference_fps",
            "gauge",
            "Inferences per second over the last health interval.",
            &one(h.inference_fps),
        );
        metric(
            "luciole_camera_reconnects",
            "counter",
            "Camera reopenings since start.",
            &total(h.reconnects as f64),
        );
        metric(
            "luciole_tracks",
            "gauge",
            "Confirmed tracks alive.",
            &one(h.tracks as f64),
        );
    }
    if let Some(depth) = snapshot.outbox_depth {
        metric(
            "luciole_outbox_depth",
            "gauge",
            "Events waiting in the outbox.",
            &one(depth as f64),
        );
    }
    if let Some(up) = snapshot.broker_connected {
        metric(
            "luciole_broker_connected",
            "gauge",
            "1 while connected to the broker.",
            &one(if up { 1.0 } else { 0.0 }),
        );
        metric(
            "luciole_broker_reconnects",
            "counter",
            "Broker connections regained after a lost one.",
            &total(snapshot.broker_reconnects as f64),
        );
        metric(
            "luciole_events_acked",
            "counter",
            "Events the broker acknowledged.",
            &total(snapshot.events_acked as f64),
        );
        metric(
            "luciole_events_set_aside",
            "counter",
            "Events the broker refused or that were too large.",
            &total(snapshot.events_set_aside as f64),
        );
    }
    if let Some(level) = snapshot.lamp_level {
        metric(
            "luciole_lamp_level",
            "gauge",
            "The lamp's target level, 0 to 1.",
            &one(level),
        );
    }
    if let Some(energy) = &snapshot.energy {
        metric(
            "luciole_lamp_energy_used_kwh",
            "counter",
            "Energy the lamp used since the daemon started (its light timeline times lighting.lamp_watts).",
            &total(energy.used_total_kwh),
        );
        if let Some(night) = &energy.last_night {
            metric(
                "luciole_lamp_last_night_used_kwh",
                "gauge",
                "Energy the lamp used over the last night reported.",
                &one(night.used_kwh),
            );
            metric(
                "luciole_lamp_last_night_saved_kwh",
                "gauge",
                "Energy saved over the last night against the lamp at full power all night.",
                &one(night.saved_kwh),
            );
        }
    }
    for (name, help, histogram) in [
        (
            "luciole_inference_seconds",
            "Time to detect in one frame (pre- and post-processing included).",
            &snapshot.inference,
        ),
        (
            "luciole_publish_latency_seconds",
            "Time from sending an event to the broker's acknowledgement.",
            &snapshot.publish_latency,
        ),
    ] {
        if let Some(h) = histogram {
            let mut samples: Vec<(String, f64)> = h
                .buckets
                .iter()
                .map(|(bound, count)| {
                    let le = if bound.is_infinite() {
                        "+Inf".to_string()
                    } else {
                        number(*bound)
                    };
                    (format!("_bucket{{le=\"{le}\"}}"), *count as f64)
                })
                .collect();
            samples.push(("_sum".into(), h.sum_s));
            samples.push(("_count".into(), h.count as f64));
            metric(name, "histogram", help, &samples);
        }
    }
    out.push_str("# EOF\n");
    out
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The samples of an exposition: `name{labels}` → value, in order; lines
/// that are not samples are skipped. What `luciole status` reads.
pub fn parse(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_observation_once_in_cumulative_buckets() {
        let h = Histogram::new(&INFERENCE_BOUNDS);
        for ms in [3, 7, 7, 150, 9000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(s.buckets[0], (0.005, 1));
        assert_eq!(s.buckets[1], (0.01, 3));
        assert_eq!(s.buckets[5], (0.2, 4));
        assert_eq!(s.buckets.last().unwrap().1, 5);
        assert!(s.buckets.last().unwrap().0.is_infinite());
        assert!((s.sum_s - 9.167).abs() < 1e-9);
    }

    #[test]
    fn the_exposition_is_openmetrics_text_that_parses_back() {
        let h = Histogram::new(&PUBLISH_BOUNDS);
        h.observe(Duration::from_millis(4));
        let snapshot = Snapshot {
            version: "0.1.0".into(),
            uptime_s: 12,
            outbox_depth: Some(3),
            broker_connected: Some(true),
            events_acked: 41,
            publish_latency: Some(h.snapshot()),
            lamp_level: Some(0.3),
            energy: Some(EnergyFigures {
                used_total_kwh: 1.25,
                last_night: Some(crate::light::energy::EnergyReport {
                    from_ms: 0,
                    to_ms: 1,
                    used_kwh: 0.43,
                    full_kwh: 1.2,
                    saved_kwh: 0.77,
                    rated_w: 100.0,
                    night_h: 12.0,
                }),
            }),
            ..Snapshot::default()
        };
        let text = render(&snapshot);
        assert!(text.ends_with("# EOF\n"), "{text}");
        let samples = parse(&text);
        let get = |name: &str| samples.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        assert_eq!(get("luciole_outbox_depth"), Some(3.0));
        assert_eq!(get("luciole_events_acked_total"), Some(41.0));
        assert_eq!(get("luciole_lamp_level"), Some(0.3));
        assert_eq!(get("luciole_lamp_energy_used_kwh_total"), Some(1.25));
        assert_eq!(get("luciole_lamp_last_night_saved_kwh"), Some(0.77));
        assert_eq!(
            get("luciole_publish_latency_seconds_bucket{le=\"0.005\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("luciole_publish_latency_seconds_bucket{le=\"+Inf\"}"),
            Some(1.0)
        );
        assert_eq!(get("luciole_build_info{version=\"0.1.0\"}"), Some(1.0));
        // Without health or a lamp, no made-up figures.
        assert_eq!(get("luciole_fps"), None);
        assert!(!text.contains("luciole_inference_seconds"));
        // Every family is declared once, before its samples.
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split(' ').nth(2).unwrap();
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
        }
    }
}
