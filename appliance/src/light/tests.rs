//! Lighting behaviour: the policy on a virtual clock, the sun against
//! published tables, the PWM driver against a fake sysfs that enforces the
//! kernel's rules, GPIO selection, configuration, events and the systemd
//! unit.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::policy::quantise;
use super::pwm::{AttrFs, SysfsPwm};
use super::schedule::Schedule;
use super::*;

fn utc(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

fn schedule(on: &str, off: &str, tz: &str) -> Mode {
    Mode::Schedule(Schedule::parse(on, off, tz).unwrap())
}

/// The defaults, with no presence classes and 1000 dimmer steps (a
/// PWM dimmer's resolution).
fn settings(mode: Mode) -> LightingSettings {
    LightingSettings {
        presence: PresenceSettings::default(),
        steps: 1000,
        ..LightingSettings::new(mode)
    }
}

fn always_night() -> LightingSettings {
    settings(schedule("00:00", "24:00", "UTC"))
}

fn seeing(presence: bool) -> LightInputs {
    LightInputs {
        presence,
        ..LightInputs::healthy()
    }
}

/// Runs the policy from `from` to `to` every `step_ms`, with inputs chosen
/// by time; returns every decision with its time.
fn run(
    policy: &mut Policy,
    from: i64,
    to: i64,
    step_ms: i64,
    inputs: impl Fn(i64) -> LightInputs,
) -> Vec<(i64, Decision)> {
    let mut out = Vec::new();
    let mut t = from;
    while t <= to {
        out.push((t, policy.step(t, &inputs(t))));
        t += step_ms;
    }
    out
}

fn night_edges(decisions: &[(i64, Decision)]) -> Vec<(i64, bool)> {
    decisions
        .windows(2)
        .filter(|w| w[0].1.night != w[1].1.night)
        .map(|w| (w[1].0, w[1].1.night))
        .collect()
}

// ---------------------------------------------------------------- schedule

#[test]
fn a_paris_schedule_follows_local_time_across_the_march_change_to_summer_time() {
    // 2026-03-29, last Sunday of March: 02:00 CET becomes 03:00 CEST.
    let mut policy = Policy::new(&settings(schedule("19:00", "07:00", "Europe/Paris")));
    let d = run(
        &mut policy,
        utc("2026-03-28T12:00:00Z"),
        utc("2026-03-29T12:00:00Z"),
        1000,
        |_| LightInputs::healthy(),
    );
    // On at 19:00 CET (18:00 UTC), off at 07:00 CEST (05:00 UTC): 11 h.
    assert_eq!(
        night_edges(&d),
        vec![
            (utc("2026-03-28T18:00:00Z"), true),
            (utc("2026-03-29T05:00:00Z"), false)
        ]
    );
    let changes: Vec<&LightState> = d.iter().filter_map(|(_, d)| d.change.as_ref()).collect();
    assert_eq!(changes.len(), 3, "day, night, day: {changes:?}");
    assert_eq!(changes[1].level, 0.3);
    assert_eq!(changes[1].reason, LightReason::Schedule);
    assert!(changes[1].night);
    assert_eq!(changes[2].level, 0.0);
    assert_eq!(changes[2].previous, 0.3);
}

#[test]
fn a_paris_schedule_follows_local_time_across_the_october_change_to_winter_time() {
    // 2026-10-25, last Sunday of October: 03:00 CEST becomes 02:00 CET.
    let mut policy = Policy::new(&settings(schedule("19:00", "07:00", "Europe/Paris")));
    let d = run(
        &mut policy,
        utc("2026-10-24T12:00:00Z"),
        utc("2026-10-25T12:00:00Z"),
        1000,
        |_| LightInputs::healthy(),
    );
    // On at 19:00 CEST (17:00 UTC), off at 07:00 CET (06:00 UTC): 13 h.
    assert_eq!(
        night_edges(&d),
        vec![
            (utc("2026-10-24T17:00:00Z"), true),
            (utc("2026-10-25T06:00:00Z"), false)
        ]
    );
}

#[test]
fn the_lamp_fades_out_at_the_end_of_the_night_instead_of_snapping_off() {
    let mut policy = Policy::new(&settings(schedule("19:00", "07:00", "Europe/Paris")));
    let d = run(
        &mut policy,
        utc("2026-06-15T04:59:00Z"),
        utc("2026-06-15T05:00:10Z"),
        100,
        |_| LightInputs::healthy(),
    );
    let at = |t: &str| d.iter().find(|(x, _)| *x == utc(t)).unwrap().1.level;
    assert_eq!(at("2026-06-15T04:59:59.900Z"), 0.3);
    // Full scale takes 10 s, so 0.3 takes 3 s (one 0.1 s step is counted
    // at 05:00:00 itself).
    assert!((at("2026-06-15T05:00:01.500Z") - 0.14).abs() < 0.002);
    assert_eq!(at("2026-06-15T05:00:03Z"), 0.0);
}

#[test]
fn schedule_texts_are_checked() {
    assert!(Schedule::parse("19:00", "19:00", "Europe/Paris").is_err());
    assert!(Schedule::parse("25:00", "07:00", "Europe/Paris").is_err());
    assert!(Schedule::parse("19:00", "7:00", "Europe/Paris").is_err());
    assert!(Schedule::parse("24:00", "07:00", "Europe/Paris").is_err());
    let err = Schedule::parse("19:00", "07:00", "Europe/Lyon").unwrap_err();
    assert_eq!(err.0, "timezone");
    let always = Schedule::parse("00:00", "24:00", "Europe/Paris").unwrap();
    for t in [
        "2026-01-01T00:00:00Z",
        "2026-07-01T11:59:59Z",
        "2026-03-29T01:30:00Z",
    ] {
        assert!(always.is_night(utc(t)), "{t}");
    }
}

// --------------------------------------------------------------------- sun

/// (place, latitude, longitude, UTC date, published rise, published set),
/// rise and set in UTC, from almanac tables printed in the press.
const PUBLISHED: [(&str, f64, f64, &str, &str, &str); 5] = [
    // Winter solstice 2023 (Friday 22 December), London: 08:04 / 15:53 GMT.
    ("London", 51.5074, -0.1278, "2023-12-22", "08:04", "15:53"),
    // Summer solstice 2024 (20 June), London: 04:43 / 21:21 BST.
    ("London", 51.5074, -0.1278, "2024-06-20", "03:43", "20:21"),
    // 24 June 2023, Paris: 05:48 / 21:58 CEST.
    ("Paris", 48.8566, 2.3522, "2023-06-24", "03:48", "19:58"),
    // Friday 21 December 2018, Edinburgh: 08:41 / 15:39 GMT.
    (
        "Edinburgh",
        55.9533,
        -3.1883,
        "2018-12-21",
        "08:41",
        "15:39",
    ),
    // Friday 21 December 2018, Inverness: 08:57 / 15:32 GMT.
    (
        "Inverness",
        57.4778,
        -4.2247,
        "2018-12-21",
        "08:57",
        "15:32",
    ),
];

#[test]
fn sunrise_and_sunset_match_published_tables_within_two_minutes() {
    for (place, lat, lon, date, rise, set) in PUBLISHED {
        let day = utc(&format!("{date}T00:00:00Z")).div_euclid(86_400_000);
        let sun::SunDay::RiseSet { rise: r, set: s } = sun::sun_day(day, lat, lon) else {
            panic!("{place} {date}: no sunrise");
        };
        for (what, got, want) in [("rise", r, rise), ("set", s, set)] {
            let want = utc(&format!("{date}T{want}:30Z"));
            let off_s = (got - want).abs() / 1000;
            assert!(
                off_s <= 120,
                "{place} {date} {what}: {} vs published {}, {off_s} s apart",
                crate::events::rfc3339_ms(got as u64),
                crate::events::rfc3339_ms(want as u64)
            );
        }
    }
}

#[test]
fn astronomical_night_runs_from_sunset_to_sunrise_with_offsets() {
    let (lat, lon) = (51.5074, -0.1278);
    let mut s = settings(Mode::Astronomical {
        latitude: lat,
        longitude: lon,
        sunset_offset: 15,
        sunrise_offset: -10,
    });
    s.steps = 100;
    let mut policy = Policy::new(&s);
    let d = run(
        &mut policy,
        utc("2023-12-22T12:00:00Z"),
        utc("2023-12-23T12:00:00Z"),
        60_000,
        |_| LightInputs::healthy(),
    );
    let edges = night_edges(&d);
    assert_eq!(edges.len(), 2, "{edges:?}");
    // Sunset 15:53 + 15 min; sunrise 08:04 (the 23rd: 08:05) - 10 min.
    assert!((edges[0].0 - utc("2023-12-22T16:08:30Z")).abs() <= 150_000);
    assert!(edges[0].1);
    assert!((edges[1].0 - utc("2023-12-23T07:55:00Z")).abs() <= 150_000);
    assert!(!edges[1].1);
}

#[test]
fn polar_night_and_midnight_sun_and_far_longitudes_are_handled() {
    // Tromsø.
    assert!(sun::is_night(
        utc("2024-12-21T11:00:00Z"),
        69.65,
        18.96,
        0,
        0
    ));
    assert!(!sun::is_night(
        utc("2024-06-21T23:00:00Z"),
        69.65,
        18.96,
        0,
        0
    ));
    // Sydney (UTC+11 in December): 14:00 local is day, 23:00 local night.
    assert!(!sun::is_night(
        utc("2024-12-21T03:00:00Z"),
        -33.87,
        151.21,
        0,
        0
    ));
    assert!(sun::is_night(
        utc("2024-12-21T12:00:00Z"),
        -33.87,
        151.21,
        0,
        0
    ));
    // Los Angeles (UTC-8): 16:00 local is day, 20:00 local night.
    assert!(!sun::is_night(
        utc("2024-12-22T00:00:00Z"),
        34.05,
        -118.24,
        0,
        0
    ));
    assert!(sun::is_night(
        utc("2024-12-22T04:00:00Z"),
        34.05,
        -118.24,
        0,
        0
    ));
}

// ---------------------------------------------------- presence and ramps

#[test]
fn presence_ramps_up_fast_holds_then_fades_slowly_to_the_night_level() {
    let mut policy = Policy::new(&always_night());
    let t0 = utc("2026-01-10T22:00:00Z");
    policy.step(t0, &seeing(false));
    // Someone for 2 s, from t0 + 1 s.
    let d = run(&mut policy, t0 + 100, t0 + 45_000, 100, |t| {
        seeing((t0 + 1000..t0 + 3000).contains(&t))
    });
    let at = |dt: i64| d.iter().find(|(t, _)| *t == t0 + dt).unwrap().1.clone();
    assert_eq!(at(900).level, 0.3);
    assert_eq!(at(1000).target, 1.0);
    assert_eq!(at(1000).reason, LightReason::Presence);
    // 0.3 -> 1.0 at full scale per 0.5 s: 0.35 s.
    assert!(at(1200).level > 0.5 && at(1200).level < 1.0);
    assert_eq!(at(1400).level, 1.0);
    // Held 30 s after the last sighting (t0 + 2.9 s).
    assert_eq!(at(32_800).level, 1.0);
    assert_eq!(at(33_000).target, 0.3);
    // Fade: 0.7 at full scale per 10 s takes 7 s.
    assert!((at(36_500).level - 0.65).abs() < 0.011);
    assert_eq!(at(40_000).level, 0.3);
    let changes: Vec<LightState> = d.iter().filter_map(|(_, d)| d.change.clone()).collect();
    assert_eq!(changes.len(), 2, "boost and back, not every ramp step");
    assert_eq!((changes[0].previous, changes[0].level), (0.3, 1.0));
    assert_eq!(changes[1].reason, LightReason::Schedule);
}

#[test]
fn an_unbroken_presence_is_capped_and_a_new_episode_boosts_again() {
    let mut policy = Policy::new(&always_night());
    let t0 = utc("2026-01-10T22:00:00Z");
    let d = run(&mut policy, t0, t0 + 1_000_000, 1000, |t| {
        { t < t0 + 700_000 || t >= t0 + 800_000 }
            .then_some(())
            .map_or(seeing(false), |_| seeing(true))
    });
    let at = |dt: i64| d.iter().find(|(t, _)| *t == t0 + dt).unwrap().1.clone();
    assert_eq!(at(599_000).target, 1.0);
    let capped = at(600_000);
    assert_eq!(capped.target, 0.3);
    assert!(capped.change.unwrap().detail.contains("capped after 600 s"));
    assert_eq!(at(699_000).target, 0.3);
    // Gone at 700 s; back at 800 s, after more than the hold: boost again.
    assert_eq!(at(800_000).target, 1.0);
    assert_eq!(at(800_000).reason, LightReason::Presence);
}

#[test]
fn presence_by_day_leaves_the_lamp_off() {
    let mut policy = Policy::new(&settings(schedule("19:00", "07:00", "Europe/Paris")));
    let d = policy.step(utc("2026-06-15T12:00:00Z"), &seeing(true));
    assert_eq!((d.level, d.target, d.night), (0.0, 0.0, false));
}

#[test]
fn levels_are_quantised_to_the_output_resolution_and_never_round_to_off() {
    assert_eq!(quantise(0.3, 4), 0.25);
    assert_eq!(quantise(0.4, 4), 0.5);
    assert_eq!(quantise(0.01, 4), 0.25);
    assert_eq!(quantise(0.0, 4), 0.0);
    assert_eq!(quantise(0.3, 1), 1.0, "a relay alone is on for any level");
    assert_eq!(quantise(1.7, 10), 1.0);
    let mut s = always_night();
    s.steps = 8;
    let mut policy = Policy::new(&s);
    let t0 = utc("2026-01-10T22:00:00Z");
    let d = run(&mut policy, t0, t0 + 2000, 20, |t| seeing(t > t0 + 100));
    for (_, d) in &d {
        assert_eq!((d.level * 8.0).fract(), 0.0, "{} is not a step", d.level);
    }
    assert_eq!(d[0].1.level, 0.25, "0.3 on 8 steps");
}

// --------------------------------------------------------------- fail-safe

#[test]
fn a_camera_outage_at_night_sets_the_rated_level_until_the_camera_is_back() {
    let mut policy = Policy::new(&always_night());
    let t0 = utc("2026-01-10T22:00:00Z");
    let d = run(&mut policy, t0, t0 + 60_000, 100, |t| LightInputs {
        camera_ok: !(t0 + 10_000..t0 + 20_000).contains(&t),
        ..LightInputs::healthy()
    });
    let at = |dt: i64| d.iter().find(|(t, _)| *t == t0 + dt).unwrap().1.clone();
    assert_eq!(at(9_900).level, 0.3);
    let lost = at(10_000);
    assert_eq!((lost.target, lost.reason), (1.0, LightReason::FailSafe));
    let change = lost.change.unwrap();
    assert_eq!(change.detail, "camera lost");
    assert_eq!(change.previous, 0.3);
    assert_eq!(at(10_400).level, 1.0);
    assert_eq!(at(19_900).level, 1.0);
    let back = at(20_000);
    assert_eq!((back.target, back.reason), (0.3, LightReason::Schedule));
    assert!(back.change.is_some());
    assert_eq!(at(30_000).level, 0.3);
}

#[test]
fn a_stale_pipeline_or_a_lost_detector_at_night_is_a_fail_safe() {
    let mut policy = Policy::new(&always_night());
    let t0 = utc("2026-01-10T22:00:00Z");
    let stale = LightInputs {
        last_frame_age: Some(Duration::from_secs(6)),
        ..LightInputs::healthy()
    };
    let d = policy.step(t0, &stale);
    assert_eq!(d.reason, LightReason::FailSafe);
    assert_eq!(d.change.unwrap().detail, "no frame for 6 s");
    let fresh = LightInputs {
        last_frame_age: Some(Duration::from_secs(4)),
        ..LightInputs::healthy()
    };
    assert_eq!(policy.step(t0 + 50, &fresh).reason, LightReason::Schedule);
    let detector = LightInputs {
        detector_ok: false,
        ..LightInputs::healthy()
    };
    let d = policy.step(t0 + 100, &detector);
    assert_eq!(d.target, 1.0);
    assert_eq!(d.change.unwrap().detail, "detector lost");
    // By day a failure changes nothing: the lamp is off.
    let mut day = Policy::new(&settings(schedule("19:00", "07:00", "UTC")));
    let d = day.step(utc("2026-01-10T12:00:00Z"), &detector);
    assert_eq!((d.target, d.reason), (0.0, LightReason::Schedule));
}

// -------------------------------------------------------- Lighting + fakes

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct FakeRelay(Log, bool);

impl Relay for FakeRelay {
    fn set(&mut self, on: bool) -> Result<(), LightError> {
        self.0.push(format!("relay={on}"));
        self.1 = on;
        Ok(())
    }
    fn is_on(&self) -> bool {
        self.1
    }
}

struct FakeDimmer(Log, u64);

impl Dimmer for FakeDimmer {
    fn set_level(&mut self, level: f64) -> Result<(), LightError> {
        self.1 = duty_for(level, 1000);
        self.0.push(format!("duty={}", self.1));
        Ok(())
    }
    fn period_ns(&self) -> u64 {
        1000
    }
    fn duty_ns(&self) -> u64 {
        self.1
    }
    fn polarity(&self) -> Polarity {
        Polarity::Normal
    }
}

fn fake_lighting(s: &LightingSettings) -> (Lighting, Log) {
    let log = Log::default();
    let lighting = Lighting::with_outputs(
        s,
        Some(Box::new(FakeRelay(log.clone(), true))),
        Some(Box::new(FakeDimmer(log.clone(), 1000))),
    );
    (lighting, log)
}

#[test]
fn lighting_writes_outputs_only_when_the_quantised_level_changes() {
    let mut s = settings(schedule("19:00", "07:00", "UTC"));
    s.steps = 10;
    let (mut lighting, log) = fake_lighting(&s);
    let t0 = utc("2026-01-10T06:59:55Z");
    let change = lighting.update(t0, &LightInputs::healthy()).unwrap();
    assert_eq!(change.unwrap().level, 0.3);
    assert_eq!(log.take(), ["duty=300"], "the relay is already on");
    for i in 1..100 {
        assert!(lighting
            .update(t0 + i * 50, &LightInputs::healthy())
            .unwrap()
            .is_none());
    }
    assert!(log.take().is_empty(), "steady night: nothing written");
    // Day at 07:00: 0.3 fades in 3 s over 10 steps: 0.2, 0.1, then off
    // (dimmer to 0 before the relay opens).
    let t1 = utc("2026-01-10T07:00:00Z");
    let day = lighting
        .update(t1, &LightInputs::healthy())
        .unwrap()
        .unwrap();
    assert_eq!((day.level, day.previous, day.night), (0.0, 0.3, false));
    for i in 1..=80 {
        lighting
            .update(t1 + i * 50, &LightInputs::healthy())
            .unwrap();
    }
    assert_eq!(
        log.take(),
        ["duty=200", "duty=100", "duty=0", "relay=false"]
    );
    assert_eq!(lighting.report().relay, "off");
}

#[test]
fn dropping_the_lighting_leaves_the_lamp_at_the_rated_level() {
    let mut s = always_night();
    s.rated = 0.8;
    let (mut lighting, log) = fake_lighting(&s);
    lighting
        .update(utc("2026-01-10T22:00:00Z"), &LightInputs::healthy())
        .unwrap();
    log.take();
    drop(lighting);
    assert_eq!(log.take(), ["duty=800"]);
}

#[test]
fn safe_reports_relay_on_and_the_rated_duty() {
    let (mut lighting, log) = fake_lighting(&always_night());
    lighting.write(0.0).unwrap();
    lighting.safe().unwrap();
    assert_eq!(
        log.take(),
        ["duty=0", "relay=false", "relay=true", "duty=1000"]
    );
    let json = serde_json::to_string(&lighting.report()).unwrap();
    assert_eq!(
        json,
        r#"{"level_pct":100.0,"relay":"on","duty_ns":1000,"period_ns":1000,"polarity":"normal"}"#
    );
    let record = lighting.safe_exit_record("stopping");
    assert_eq!(record.reason, LightReason::SafeExit);
    assert_eq!(record.level, 1.0);
}

// ------------------------------------------------------------- PWM sysfs

/// A sysfs tree in a temporary folder whose writes obey the kernel's
/// rules: export creates the channel, the duty cycle may not exceed the
/// period, the polarity may not change while enabled. Every accepted
/// write is logged as `name=value`.
///
/// Like the kernel, export makes the channel's files root's: they refuse
/// writes (EACCES) until "udev" has handed them over, which happens after
/// `udev_looks` calls of `writable` (never with `u32::MAX`).
struct KernelFs {
    log: Log,
    udev_looks: u32,
    /// The exported channel still waiting for udev, and the looks left.
    root_owned: Mutex<Option<(PathBuf, u32)>>,
}

impl KernelFs {
    /// udev is done before the first look.
    fn new(log: Log) -> Self {
        Self::with_udev(log, 0)
    }

    fn with_udev(log: Log, udev_looks: u32) -> Self {
        KernelFs {
            log,
            udev_looks,
            root_owned: Mutex::new(None),
        }
    }

    fn root_owned(&self, path: &Path) -> bool {
        matches!(&*self.root_owned.lock().unwrap(), Some((dir, _)) if path.starts_with(dir))
    }
}

impl AttrFs for KernelFs {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn writable(&self, path: &Path) -> bool {
        let mut root_owned = self.root_owned.lock().unwrap();
        match &mut *root_owned {
            Some((dir, looks)) if path.starts_with(&*dir) => {
                if *looks == 0 {
                    *root_owned = None;
                    true
                } else {
                    if *looks != u32::MAX {
                        *looks -= 1;
                    }
                    false
                }
            }
            _ => true,
        }
    }

    fn write(&self, path: &Path, value: &str) -> std::io::Result<()> {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let dir = path.parent().unwrap();
        if self.root_owned(path) {
            return Err(std::io::Error::from_raw_os_error(13));
        }
        let num = |file: &str| -> u64 {
            std::fs::read_to_string(dir.join(file))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let einval = || Err(std::io::Error::from_raw_os_error(22));
        match name.as_str() {
            "export" => {
                let channel = dir.join(format!("pwm{value}"));
                make_channel(&channel, 0, 0, false, "normal");
                *self.root_owned.lock().unwrap() = Some((channel, self.udev_looks));
            }
            "duty_cycle" if value.parse::<u64>().unwrap() > num("period") => return einval(),
            "period" if value.parse::<u64>().unwrap() < num("duty_cycle") => return einval(),
            "polarity" if num("enable") == 1 => {
                return Err(std::io::Error::from_raw_os_error(16));
            }
            _ => std::fs::write(path, value)?,
        }
        self.log.push(format!("{name}={value}"));
        Ok(())
    }
}

fn make_channel(dir: &Path, period: u64, duty: u64, enabled: bool, polarity: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("period"), format!("{period}\n")).unwrap();
    std::fs::write(dir.join("duty_cycle"), format!("{duty}\n")).unwrap();
    std::fs::write(dir.join("polarity"), format!("{polarity}\n")).unwrap();
    std::fs::write(dir.join("enable"), if enabled { "1\n" } else { "0\n" }).unwrap();
}

/// `<root>/class/pwm/pwmchip0` (fe20c000.pwm, 2 channels) and `pwmchip1`
/// (luciole-pwm-sim, 1 channel).
fn fake_sysfs() -> tempfile_dir::TempDir {
    let tmp = tempfile_dir::TempDir::new("pwm");
    for (chip, device, npwm) in [(0, "fe20c000.pwm", 2), (1, "luciole-pwm-sim", 1)] {
        let dev = tmp.path().join(format!("devices/platform/{device}"));
        std::fs::create_dir_all(&dev).unwrap();
        let chip = tmp.path().join(format!("class/pwm/pwmchip{chip}"));
        std::fs::create_dir_all(&chip).unwrap();
        std::os::unix::fs::symlink(&dev, chip.join("device")).unwrap();
        std::fs::write(chip.join("npwm"), format!("{npwm}\n")).unwrap();
        std::fs::write(chip.join("export"), "").unwrap();
    }
    tmp
}

/// A small self-deleting temporary folder (no extra dependency).
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "luciole-light-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn dimmer(chip: &str, channel: u32, period_ns: u64, polarity: Polarity) -> DimmerSettings {
    DimmerSettings {
        backend: DimmerBackend::Sysfs,
        chip: chip.into(),
        channel,
        period_ns,
        polarity,
        state_file: None,
    }
}

#[test]
fn pwm_exports_the_channel_then_sets_period_before_duty_and_enables() {
    let tmp = fake_sysfs();
    let log = Log::default();
    let pwm = SysfsPwm::open_with(
        Box::new(KernelFs::new(log.clone())),
        tmp.path(),
        &dimmer("fe20c000.pwm", 1, 1_000_000, Polarity::Normal),
        0.3,
    )
    .unwrap();
    assert_eq!(
        log.take(),
        [
            "export=1",
            "period=1000000",
            "duty_cycle=300000",
            "enable=1"
        ]
    );
    assert_eq!(pwm.dir(), tmp.path().join("class/pwm/pwmchip0/pwm1"));
    assert_eq!((pwm.duty_ns(), pwm.period_ns()), (300_000, 1_000_000));
}

#[test]
fn pwm_waits_for_udev_to_make_a_freshly_exported_channel_writable() {
    let tmp = fake_sysfs();
    let log = Log::default();
    let pwm = SysfsPwm::open_with(
        Box::new(KernelFs::with_udev(log.clone(), 20)),
        tmp.path(),
        &dimmer("fe20c000.pwm", 0, 1_000_000, Polarity::Normal),
        0.5,
    )
    .unwrap();
    assert_eq!(
        log.take(),
        [
            "export=0",
            "period=1000000",
            "duty_cycle=500000",
            "enable=1"
        ]
    );
    assert_eq!(pwm.duty_ns(), 500_000);
}

#[test]
fn pwm_names_the_file_udev_never_made_writable() {
    let tmp = fake_sysfs();
    let log = Log::default();
    let err = SysfsPwm::open_with(
        Box::new(KernelFs::with_udev(log.clone(), u32::MAX)),
        tmp.path(),
        &dimmer("fe20c000.pwm", 1, 1_000_000, Polarity::Normal),
        0.5,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("pwmchip0/pwm1/period"), "{err}");
    assert!(
        err.contains("not writable by this user within 2 s"),
        "{err}"
    );
    assert!(err.contains("60-luciole.rules"), "{err}");
    assert_eq!(log.take(), ["export=1"], "nothing written to the channel");
}

#[test]
fn pwm_shrinks_duty_before_period_and_changes_polarity_only_while_disabled() {
    let tmp = fake_sysfs();
    let dir = tmp.path().join("class/pwm/pwmchip1/pwm0");
    make_channel(&dir, 2_000_000, 1_500_000, true, "normal");
    let log = Log::default();
    let mut pwm = SysfsPwm::open_with(
        Box::new(KernelFs::new(log.clone())),
        tmp.path(),
        &dimmer("luciole-pwm-sim", 0, 1_000_000, Polarity::Inversed),
        0.5,
    )
    .unwrap();
    assert_eq!(
        log.take(),
        [
            "enable=0",
            "duty_cycle=500000",
            "period=1000000",
            "polarity=inversed",
            "enable=1"
        ]
    );
    pwm.set_level(0.25).unwrap();
    pwm.set_level(0.25).unwrap();
    assert_eq!(log.take(), ["duty_cycle=250000"], "only the duty changes");
    assert_eq!(
        std::fs::read_to_string(dir.join("polarity")).unwrap(),
        "inversed"
    );
}

#[test]
fn pwm_chips_are_found_by_device_name_or_pwmchip_name_and_errors_list_them() {
    let tmp = fake_sysfs();
    let found = pwm::find_chip(tmp.path(), "pwmchip1").unwrap();
    assert!(found.ends_with("class/pwm/pwmchip1"));
    let err = pwm::find_chip(tmp.path(), "1f00098000.pwm").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("\"1f00098000.pwm\" not found"), "{text}");
    assert!(text.contains("pwmchip0 (fe20c000.pwm)"), "{text}");
    assert!(text.contains("pwmchip1 (luciole-pwm-sim)"), "{text}");
    let err = pwm::find_chip(&tmp.path().join("nowhere"), "fe20c000.pwm").unwrap_err();
    assert!(err.to_string().contains("cannot list it"), "{err}");
}

#[test]
fn pwm_errors_name_the_file_and_the_reason() {
    let tmp = fake_sysfs();
    // Channel 2 of a 2-channel chip.
    let err = SysfsPwm::open(
        tmp.path(),
        &dimmer("fe20c000.pwm", 2, 1_000_000, Polarity::Normal),
        0.5,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("pwmchip0/npwm"), "{err}");
    assert!(err.contains("the chip has 2 channel(s)"), "{err}");
    // A duty_cycle that cannot be written (a folder in its place).
    let dir = tmp.path().join("class/pwm/pwmchip0/pwm0");
    make_channel(&dir, 1_000_000, 0, false, "normal");
    std::fs::remove_file(dir.join("duty_cycle")).unwrap();
    std::fs::create_dir(dir.join("duty_cycle")).unwrap();
    let err = SysfsPwm::open(
        tmp.path(),
        &dimmer("fe20c000.pwm", 0, 1_000_000, Polarity::Normal),
        0.5,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("pwm0/duty_cycle"), "{err}");
    assert!(err.contains("Is a directory"), "{err}");
}

#[test]
fn the_kernel_like_fake_refuses_a_duty_above_the_period() {
    // Guards the fake itself: the ordering tests mean something only if a
    // wrong order fails.
    let tmp = fake_sysfs();
    let dir = tmp.path().join("class/pwm/pwmchip0/pwm0");
    make_channel(&dir, 1000, 0, false, "normal");
    let fs = KernelFs::new(Log::default());
    assert!(fs.write(&dir.join("duty_cycle"), "2000").is_err());
    make_channel(&dir, 1000, 0, true, "normal");
    assert!(fs.write(&dir.join("polarity"), "inversed").is_err());
    // A channel just exported is root's until udev has looked at it.
    let fs = KernelFs::with_udev(Log::default(), 1);
    fs.write(&tmp.path().join("class/pwm/pwmchip0/export"), "1")
        .unwrap();
    let period = tmp.path().join("class/pwm/pwmchip0/pwm1/period");
    assert_eq!(
        fs.write(&period, "1000").unwrap_err().raw_os_error(),
        Some(13)
    );
    assert!(!fs.writable(&period));
    assert!(fs.writable(&period));
    fs.write(&period, "1000").unwrap();
}

// -------------------------------------------------------------------- GPIO

fn chip(name: &str, label: &str, lines: u32) -> gpio::ChipSummary {
    gpio::ChipSummary {
        path: PathBuf::from(format!("/dev/{name}")),
        name: name.into(),
        label: label.into(),
        num_lines: lines,
    }
}

#[test]
fn gpio_chips_are_found_by_label_or_name_and_lines_by_name_or_offset() {
    let chips = [
        chip("gpiochip0", "pinctrl-bcm2711", 58),
        chip("gpiochip1", "luciole-sim", 8),
    ];
    assert_eq!(
        gpio::select_chip(&chips, &[], "luciole-sim").unwrap().name,
        "gpiochip1"
    );
    assert_eq!(
        gpio::select_chip(&chips, &[], "gpiochip0").unwrap().label,
        "pinctrl-bcm2711"
    );
    let err = gpio::select_chip(&chips, &[], "tegra234-gpio")
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"tegra234-gpio\" not found"), "{err}");
    assert!(
        err.contains("pinctrl-bcm2711 (gpiochip0), luciole-sim (gpiochip1)"),
        "{err}"
    );
    let denied = ["/dev/gpiochip2: cannot open: Permission denied".to_string()];
    let err = gpio::select_chip(&chips, &denied, "luciole-pwm")
        .unwrap_err()
        .to_string();
    assert!(err.contains("permission?"), "{err}");
    assert!(
        err.contains("/dev/gpiochip2: cannot open: Permission denied"),
        "{err}"
    );

    let lines = vec![
        (0, "lamp-relay".to_string()),
        (1, String::new()),
        (2, "spare".into()),
    ];
    let sim = &chips[1];
    assert_eq!(
        gpio::select_line(sim, &lines, &LineRef::Name("lamp-relay".into())).unwrap(),
        0
    );
    assert_eq!(
        gpio::select_line(sim, &lines, &LineRef::Offset(7)).unwrap(),
        7
    );
    let err = gpio::select_line(sim, &lines, &LineRef::Offset(8))
        .unwrap_err()
        .to_string();
    assert!(err.contains("offsets 0 to 7"), "{err}");
    let err = gpio::select_line(sim, &lines, &LineRef::Name("lamp".into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line \"lamp\" not found on chip \"luciole-sim\""),
        "{err}"
    );
    assert!(err.contains("lamp-relay (0), spare (2)"), "{err}");
}

#[test]
fn opening_a_relay_on_a_missing_chip_names_it() {
    let relay = RelaySettings {
        backend: RelayBackend::Cdev,
        chip: "no-such-gpio-chip".into(),
        line: LineRef::Name("lamp-relay".into()),
        active_low: false,
        state_file: None,
    };
    let err = gpio::CdevRelay::open(&relay, true).err().unwrap();
    assert!(matches!(err, LightError::ChipNotFound { .. }), "{err}");
    assert!(err.to_string().contains("\"no-such-gpio-chip\""), "{err}");
}

// ------------------------------------------------------------------ events

#[test]
fn a_light_change_is_a_light_event_that_validates_against_its_schema() {
    let mut policy = Policy::new(&always_night());
    let t0 = utc("2026-01-10T22:00:00Z");
    policy.step(t0, &LightInputs::healthy());
    let lost = LightInputs {
        camera_ok: false,
        ..LightInputs::healthy()
    };
    let change = policy.step(t0 + 50, &lost).change.unwrap();
    let origin = crate::events::Origin {
        site: "lyon".into(),
        device: "pole-7".into(),
    };
    let event = origin.event(7, (t0 + 50) as u64, crate::events::Body::Light(change));
    assert_eq!(event.body.kind(), "light");
    let json: serde_json::Value = serde_json::from_slice(&event.encode()).unwrap();
    assert_eq!(json["data"]["reason"], "fail_safe");
    assert_eq!(json["data"]["level"], 1.0);
    assert_eq!(json["data"]["previous"], 0.3);
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/light.json"))
            .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut bad = json.clone();
    bad["data"]["reason"] = "dusk".into();
    assert!(!validator.is_valid(&bad), "the schema pins the reasons");
    assert_eq!(
        crate::events::Event::decode(7, &event.encode()).unwrap(),
        event
    );
}

// ----------------------------------------------------------------- systemd

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let found = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "systemd-analyze is needed to check the unit (Debian package systemd; tests/setup installs it)"
    );
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/luciole.service"
    ))
    .unwrap();
    assert!(unit
        .contains("ExecStopPost=/usr/bin/luciole light --config /etc/luciole/luciole.toml --safe"));
    assert!(unit.contains("Restart=always"));
    let verify = |text: &str| -> String {
        let tmp = tempfile_dir::TempDir::new("unit");
        let path = tmp.path().join("luciole.service");
        // The binary is not installed here: point at one that exists.
        std::fs::write(&path, text.replace("/usr/bin/luciole", "/bin/true")).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        // It can exit 0 on parse errors: read what it says.
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let said = verify(&unit);
    let complaints: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("luciole.service"))
        .collect();
    assert!(complaints.is_empty(), "{said}");
    // The check itself can fail: a misspelt key is reported.
    let said = verify(&unit.replace("Restart=always", "Restart=always\nRestartSecs=2"));
    assert!(said.contains("RestartSecs"), "{said}");
}

// ------------------------------------------------------- clock and thread

#[test]
fn an_unset_clock_is_a_fail_safe_whatever_the_schedule() {
    let mut policy = Policy::new(&settings(schedule("19:00", "07:00", "UTC")));
    // 1970-01-01T12:00Z: "day" by the schedule, but the clock is not set.
    let d = policy.step(12 * 3_600_000, &LightInputs::healthy());
    assert_eq!((d.target, d.reason), (1.0, LightReason::FailSafe));
    assert_eq!(d.change.unwrap().detail, "clock not set");
    let d = policy.step(utc("2026-06-15T12:00:00Z"), &LightInputs::healthy());
    assert_eq!((d.target, d.reason), (0.0, LightReason::Schedule));
}

#[test]
fn the_lighting_thread_follows_the_feed_and_ends_in_the_safe_state() {
    let mut s = always_night();
    s.rated = 0.9;
    s.ramp_up = Duration::ZERO;
    s.fade = Duration::ZERO;
    let (lighting, log) = fake_lighting(&s);
    let feed = runner::LightFeed::new();
    let shutdown = crate::shutdown::Shutdown::new();
    let changes = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&changes);
    let handle = runner::spawn(
        lighting,
        feed.clone(),
        shutdown.clone(),
        || utc("2026-01-10T22:00:00Z"),
        move |c| sink.lock().unwrap().push(c),
    )
    .unwrap();
    let wait_for = |n: usize| {
        let start = std::time::Instant::now();
        while changes.lock().unwrap().len() < n {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{:?}",
                changes.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // No frame yet: fail-safe.
    wait_for(1);
    feed.frame(false);
    wait_for(2);
    feed.frame(true);
    wait_for(3);
    shutdown.request();
    handle.join().unwrap();
    let changes = changes.lock().unwrap();
    let reasons: Vec<LightReason> = changes.iter().map(|c| c.reason).collect();
    assert_eq!(
        reasons,
        [
            LightReason::FailSafe,
            LightReason::Schedule,
            LightReason::Presence,
            LightReason::SafeExit
        ]
    );
    assert_eq!(changes[3].level, 0.9);
    assert_eq!(log.take().last().unwrap(), "duty=900");
}

#[test]
fn a_manual_override_beats_presence_and_failures_and_ends_at_its_expiry() {
    let mut policy = Policy::new(&always_night());
    let t0 = utc("2026-01-10T22:00:00Z");
    assert_eq!(policy.step(t0, &seeing(true)).reason, LightReason::Presence);
    policy.set_manual(Some((0.25, t0 + 60_000)));
    let d = policy.step(t0 + 50, &seeing(true));
    assert_eq!((d.target, d.reason), (0.25, LightReason::Manual));
    assert_eq!(
        d.change.unwrap().detail,
        "override until 2026-01-10T22:01:00Z"
    );
    let lost = LightInputs {
        camera_ok: false,
        ..LightInputs::healthy()
    };
    let d = policy.step(t0 + 30_000, &lost);
    assert_eq!((d.target, d.reason), (0.25, LightReason::Manual));
    assert!(d.change.is_none(), "same target and reason: no new record");
    // At expiry the policy has the lamp again, and says so.
    let d = policy.step(t0 + 60_000, &lost);
    assert_eq!((d.target, d.reason), (1.0, LightReason::FailSafe));
    assert!(d.change.is_some());
    // A cancelled override ends at once; by day too the override rules.
    policy.set_manual(Some((0.0, t0 + 120_000)));
    assert_eq!(policy.step(t0 + 61_000, &lost).target, 0.0);
    policy.set_manual(None);
    assert_eq!(
        policy.step(t0 + 62_000, &lost).reason,
        LightReason::FailSafe
    );
}
