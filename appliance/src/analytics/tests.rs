use super::*;
use crate::detect::Detection;
use crate::track::{TrackSettings, Tracker};

/// A vertical line at x = 300 from y = 0 to 400: side "a" (left of the
/// downward segment on screen) is x > 300, named "east"; "b" is "west".
fn line() -> LineSettings {
    LineSettings {
        name: "gate".into(),
        from: [300.0, 0.0],
        to: [300.0, 400.0],
        side_a: "east".into(),
        side_b: "west".into(),
        hysteresis_px: 10.0,
        min_distance_px: 30.0,
        classes: Vec::new(),
    }
}

fn zone() -> ZoneSettings {
    ZoneSettings {
        name: "square".into(),
        polygon: vec![[0.0, 0.0], [200.0, 0.0], [200.0, 400.0], [0.0, 400.0]],
        classes: vec![Class::Person],
    }
}

fn settings() -> AnalyticsSettings {
    AnalyticsSettings {
        zones: vec![zone()],
        lines: vec![line()],
        flow_interval: Duration::from_secs(10),
        ..AnalyticsSettings::default()
    }
}

/// Runs people whose feet follow `paths` (x per frame, 10 frames/s)
/// through a tracker and the analytics.
fn run(settings: AnalyticsSettings, paths: &[Vec<f32>]) -> (Analytics, Vec<Output>) {
    let mut tracker = Tracker::with_first_id(TrackSettings::default(), 1);
    let mut analytics = Analytics::new(settings);
    let mut out = Vec::new();
    let frames = paths.iter().map(Vec::len).max().unwrap_or(0);
    for f in 0..frames {
        let time = Duration::from_millis(100 * f as u64);
        let detections: Vec<Detection> = paths
            .iter()
            .enumerate()
            .filter_map(|(i, path)| {
                let x = *path.get(f)?;
                let y = 100.0 + 150.0 * i as f32;
                Some(Detection {
                    class: Class::Person,
                    score: 0.9,
                    bbox: [x - 20.0, y - 100.0, x + 20.0, y],
                })
            })
            .collect();
        let update = tracker.update(time, Some(&detections));
        analytics.frame(time, 1_000_000 + time.as_millis() as u64, &update, &mut out);
    }
    let ended = tracker.finish();
    analytics.finish(&ended, &mut out);
    (analytics, out)
}

fn crossings(out: &[Output]) -> Vec<&Crossing> {
    out.iter()
        .filter_map(|o| match o {
            Output::Crossing(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn a_walk_across_the_line_counts_once_with_its_direction() {
    let path: Vec<f32> = (0..40).map(|i| 100.0 + 10.0 * i as f32).collect();
    let (analytics, out) = run(settings(), &[path]);
    let c = crossings(&out);
    assert_eq!(c.len(), 1, "{out:#?}");
    assert_eq!(c[0].direction, "west_to_east");
    assert_eq!(c[0].class, "person");
    assert_eq!(c[0].line, "gate");
    assert!(
        (c[0].speed_px_s - 100.0).abs() < 10.0,
        "{}",
        c[0].speed_px_s
    );
    let key = (
        "gate".to_string(),
        "west_to_east".to_string(),
        Class::Person,
    );
    assert_eq!(analytics.totals().get(&key), Some(&1));
}

#[test]
fn jitter_on_the_line_never_counts_and_a_return_counts_the_other_way() {
    // Walks up to the line, hovers across it by ±8 px (inside the
    // hysteresis), goes on east, then comes back west.
    let mut path: Vec<f32> = (0..15).map(|i| 150.0 + 10.0 * i as f32).collect();
    path.extend((0..30).map(|i| if i % 2 == 0 { 292.0 } else { 308.0 }));
    path.extend((0..10).map(|i| 300.0 + 10.0 * i as f32));
    path.extend((0..20).map(|i| 400.0 - 10.0 * i as f32));
    let (analytics, out) = run(settings(), &[path]);
    let directions: Vec<&str> = crossings(&out)
        .iter()
        .map(|c| c.direction.as_str())
        .collect();
    assert_eq!(directions, ["west_to_east", "east_to_west"]);
    assert_eq!(analytics.totals().values().sum::<u64>(), 2);
}

#[test]
fn jitter_wider_than_the_hysteresis_counts_the_arrival_once_and_nothing_more() {
    let mut settings = settings();
    settings.lines[0].hysteresis_px = 5.0;
    settings.lines[0].min_distance_px = 40.0;
    // Comes from the west, then stands on the line swaying 290 ↔ 310:
    // beyond the hysteresis each time, but only 20 px apart.
    let mut path: Vec<f32> = (0..9).map(|i| 200.0 + 10.0 * i as f32).collect();
    path.extend((0..20).map(|i| if i % 2 == 0 { 310.0 } else { 290.0 }));
    let (_, out) = run(settings, &[path]);
    let directions: Vec<&str> = crossings(&out)
        .iter()
        .map(|c| c.direction.as_str())
        .collect();
    assert_eq!(directions, ["west_to_east"], "{out:#?}");
}

#[test]
fn a_box_appearing_on_the_line_and_swaying_never_counts() {
    let mut settings = settings();
    settings.lines[0].hysteresis_px = 5.0;
    settings.lines[0].min_distance_px = 40.0;
    let path: Vec<f32> = (0..30)
        .map(|i| if i % 2 == 0 { 290.0 } else { 310.0 })
        .collect();
    let (_, out) = run(settings, &[path]);
    assert!(crossings(&out).is_empty(), "{out:#?}");
}

#[test]
fn crossings_outside_the_segment_do_not_count() {
    let mut settings = settings();
    settings.lines[0].to = [300.0, 50.0];
    let path: Vec<f32> = (0..40).map(|i| 100.0 + 10.0 * i as f32).collect();
    let (_, out) = run(settings, &[path]);
    assert!(crossings(&out).is_empty());
}

#[test]
fn flows_count_per_interval_with_zone_occupancy_and_dwell() {
    // Two people: one stays in the zone (x = 100) for 5 s then walks out
    // east across the line; one walks west across the line late.
    let mut first: Vec<f32> = vec![100.0; 50];
    first.extend((0..40).map(|i| 100.0 + 10.0 * i as f32));
    let mut second: Vec<f32> = vec![f32::NAN; 120];
    second.extend((0..40).map(|i| 600.0 - 10.0 * i as f32));
    let second: Vec<f32> = second;
    let paths = [first, second];
    // NaN means "not there": turn into absent detections.
    let mut tracker = Tracker::with_first_id(TrackSettings::default(), 1);
    let mut analytics = Analytics::new(settings());
    let mut out = Vec::new();
    for f in 0..160 {
        let time = Duration::from_millis(100 * f as u64);
        let detections: Vec<Detection> = paths
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let x = *p.get(f)?;
                (!x.is_nan()).then_some(Detection {
                    class: Class::Person,
                    score: 0.9,
                    bbox: [
                        x - 20.0,
                        100.0 * i as f32,
                        x + 20.0,
                        100.0 * i as f32 + 100.0,
                    ],
                })
            })
            .collect();
        let update = tracker.update(time, Some(&detections));
        analytics.frame(time, time.as_millis() as u64, &update, &mut out);
    }
    let ended = tracker.finish();
    analytics.finish(&ended, &mut out);
    let flows: Vec<&Flow> = out
        .iter()
        .filter_map(|o| match o {
            Output::Flow(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(flows.len(), 2, "{flows:#?}");
    assert_eq!(flows[0].from, "1970-01-01T00:00:00.000Z");
    assert_eq!(flows[0].to, "1970-01-01T00:00:10.000Z");
    assert_eq!(flows[0].interval_s, 10.0);
    let counts = |f: &Flow| -> Vec<(String, u64)> {
        f.lines
            .iter()
            .map(|c| (c.direction.clone(), c.count))
            .collect()
    };
    assert_eq!(counts(flows[0]), vec![("west_to_east".to_string(), 1)]);
    assert_eq!(counts(flows[1]), vec![("east_to_west".to_string(), 1)]);
    let square = &flows[0].zones[0];
    assert_eq!(square.zone, "square");
    assert_eq!(square.occupancy_max, 1);
    // In the zone from frame 2 (confirmation) to x > 200 at about 6 s.
    assert!((0.4..0.7).contains(&square.occupancy_mean), "{square:?}");
    assert_eq!(square.dwells, 1);
    let dwell = square.dwell_mean_s.unwrap();
    assert!((5.0..6.5).contains(&dwell), "{dwell}");
    assert_eq!(flows[0].speeds[0].class, "person");
    assert!(flows[0].speeds[0].speed_px_s > 0.0);
    let tracks = out.iter().filter(|o| matches!(o, Output::Track(_))).count();
    assert_eq!(tracks, 2);
}

#[test]
fn calibrated_speeds_are_in_metres_per_second() {
    let mut settings = settings();
    // 100 px = 1 m everywhere (a top-down camera).
    settings.calibration = Some(
        Homography::from_points(
            &[[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]],
            &[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
        )
        .unwrap(),
    );
    // 15 px per 100 ms = 150 px/s = 1.5 m/s.
    let path: Vec<f32> = (0..40).map(|i| 100.0 + 15.0 * i as f32).collect();
    let (_, out) = run(settings, &[path]);
    let c = crossings(&out);
    assert_eq!(c.len(), 1);
    let speed = c[0].speed_m_s.unwrap();
    assert!((speed - 1.5).abs() < 0.15, "{speed}");
    let track = out
        .iter()
        .find_map(|o| match o {
            Output::Track(t) => Some(t),
            _ => None,
        })
        .unwrap();
    assert!((track.speed_m_s.unwrap() - 1.5).abs() < 0.15, "{track:?}");
}

#[test]
fn presence_reports_zones_and_tracks_approaching_a_line() {
    let mut tracker = Tracker::with_first_id(TrackSettings::default(), 1);
    let mut analytics = Analytics::new(settings());
    let mut out = Vec::new();
    // Walking east towards the line, 60 px away at the end.
    for f in 0..6u64 {
        let x = 190.0 + 10.0 * f as f32;
        let time = Duration::from_millis(100 * f);
        let d = Detection {
            class: Class::Person,
            score: 0.9,
            bbox: [x - 20.0, 100.0, x + 20.0, 200.0],
        };
        let update = tracker.update(time, Some(&[d]));
        analytics.frame(time, 0, &update, &mut out);
    }
    let presence = analytics.presence();
    assert!(presence
        .approaching
        .contains(&("gate".to_string(), Class::Person)));
    assert!(presence.zones.is_empty(), "walked out of the zone");
}

/// Clocks a test sets by hand: monotonic and wall milliseconds.
#[derive(Default)]
struct HandClocks {
    mono_ms: std::sync::atomic::AtomicU64,
    wall_ms: std::sync::atomic::AtomicU64,
}

impl anchor::Clocks for HandClocks {
    fn now(&self) -> (Duration, u64) {
        use std::sync::atomic::Ordering::SeqCst;
        (
            Duration::from_millis(self.mono_ms.load(SeqCst)),
            self.wall_ms.load(SeqCst),
        )
    }
}

/// 25 s of empty frames at 10 frames/s with 10 s flows; the system clock is
/// stepped by `step_ms` at 15 s. Returns each flow's (from, to, interval_s).
fn flows_across_a_clock_step(step_ms: i64) -> Vec<(String, String, f64)> {
    use std::sync::atomic::Ordering::SeqCst;
    let clocks = std::sync::Arc::new(HandClocks::default());
    let mut analytics = Analytics::with_clocks(settings(), clocks.clone());
    let mut tracker = Tracker::with_first_id(TrackSettings::default(), 1);
    let start_wall = 1_795_948_000_000_u64;
    let mut out = Vec::new();
    for f in 0..250_u64 {
        let time = Duration::from_millis(100 * f);
        let stepped = if time >= Duration::from_secs(15) {
            step_ms
        } else {
            0
        };
        clocks.mono_ms.store(time.as_millis() as u64, SeqCst);
        clocks.wall_ms.store(
            anchor::shift(start_wall + time.as_millis() as u64, stepped),
            SeqCst,
        );
        let update = tracker.update(time, Some(&[]));
        // The pipeline's frame clock keeps the anchor it took at start.
        analytics.frame(
            time,
            start_wall + time.as_millis() as u64,
            &update,
            &mut out,
        );
    }
    analytics.finish(&tracker.finish(), &mut out);
    out.iter()
        .filter_map(|o| match o {
            Output::Flow(f) => Some((f.from.clone(), f.to.clone(), f.interval_s)),
            _ => None,
        })
        .collect()
}

#[test]
fn flow_times_follow_a_clock_stepped_forward_and_intervals_keep_their_length() {
    let day = 86_400_000;
    let t = |ms: u64| crate::events::rfc3339_ms(1_795_948_000_000 + ms);
    let flows = flows_across_a_clock_step(day);
    assert_eq!(
        flows,
        vec![
            (t(0), t(10_000), 10.0),
            // Stepped during this interval: its start moves with the clock.
            (t(day as u64 + 10_000), t(day as u64 + 20_000), 10.0),
            (t(day as u64 + 20_000), t(day as u64 + 24_900), 4.9),
        ]
    );
}

#[test]
fn flow_times_follow_a_clock_stepped_backwards() {
    let hour = 3_600_000;
    let t = |ms: i64| crate::events::rfc3339_ms((1_795_948_000_000 + ms) as u64);
    let flows = flows_across_a_clock_step(-hour);
    assert_eq!(flows[0], (t(0), t(10_000), 10.0));
    assert_eq!(flows[1], (t(10_000 - hour), t(20_000 - hour), 10.0));
}

#[test]
fn a_slow_drift_within_the_tolerance_moves_nothing() {
    let flows = flows_across_a_clock_step(anchor::TOLERANCE_MS);
    let t = |ms: u64| crate::events::rfc3339_ms(1_795_948_000_000 + ms);
    assert_eq!(flows[1], (t(10_000), t(20_000), 10.0));
}

#[test]
fn a_track_on_the_calibrations_horizon_has_no_ground_figures_rather_than_non_finite_ones() {
    let mut settings = settings();
    // A road seen in perspective, 4 m wide and 10 m long: its edges meet at
    // y = 100, the horizon, where the ground is infinitely far.
    settings.calibration = Some(
        Homography::from_points(
            &[
                [150.0, 200.0],
                [250.0, 200.0],
                [300.0, 300.0],
                [100.0, 300.0],
            ],
            &[[0.0, 10.0], [4.0, 10.0], [4.0, 0.0], [0.0, 0.0]],
        )
        .unwrap(),
    );
    // Feet along y = 100 (the first path), across the line at x = 300.
    let path: Vec<f32> = (0..40).map(|i| 100.0 + 15.0 * i as f32).collect();
    let (_, out) = run(settings, &[path]);
    let mut numbers = Vec::new();
    for o in &out {
        match o {
            Output::Crossing(c) => {
                assert_eq!(c.speed_m_s, None, "{c:?}");
                numbers.extend([
                    c.speed_px_s,
                    c.position.unwrap()[0].into(),
                    c.position.unwrap()[1].into(),
                ]);
            }
            Output::Track(t) => {
                assert_eq!((t.distance_m, t.speed_m_s), (None, None), "{t:?}");
                numbers.extend([t.distance_px, t.speed_px_s]);
            }
            Output::Flow(f) => {
                for s in &f.speeds {
                    assert_eq!(s.speed_m_s, None, "{f:?}");
                    numbers.push(s.speed_px_s);
                }
            }
        }
    }
    assert_eq!(crossings(&out).len(), 1, "{out:?}");
    assert!(out.iter().any(|o| matches!(o, Output::Flow(_))), "{out:?}");
    assert!(numbers.iter().all(|v| v.is_finite()), "{out:?}");
}
