//! Lighting policy benchmark: the cost of one `Policy::step` (called 20
//! times a second by the lighting thread), in schedule mode (a time-zone
//! lookup) and astronomical mode (three solar days computed per step), over
//! a simulated night with presence coming and going.
//!
//! Run: `cargo bench --bench light`.

use std::time::Instant;

use luciole::light::schedule::Schedule;
use luciole::light::{LightInputs, LightingSettings, Mode, Policy, PresenceSettings};

/// The default policy, seen with no presence rules and 1000 dimmer steps.
fn settings(mode: Mode) -> LightingSettings {
    LightingSettings {
        presence: PresenceSettings::default(),
        steps: 1000,
        ..LightingSettings::new(mode)
    }
}

fn bench(name: &str, mode: Mode) {
    let mut policy = Policy::new(&settings(mode));
    // 2026-01-10T16:00:00Z, stepping every 50 ms for 24 simulated hours.
    let start_ms: i64 = 1_768_060_800_000;
    let steps = 24 * 3600 * 20;
    let mut changes = 0u64;
    let started = Instant::now();
    for i in 0..steps {
        let t = start_ms + i * 50;
        let inputs = LightInputs {
            presence: (t / 1000) % 120 < 10,
            ..LightInputs::healthy()
        };
        if policy.step(t, &inputs).change.is_some() {
            changes += 1;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{name}: {:.2} us per step ({steps} steps, {changes} changes, {:.1} ms for a simulated day)",
        elapsed.as_secs_f64() * 1e6 / steps as f64,
        elapsed.as_secs_f64() * 1e3
    );
}

fn main() {
    bench(
        "schedule Europe/Paris",
        Mode::Schedule(Schedule::parse("19:00", "07:00", "Europe/Paris").unwrap()),
    );
    bench(
        "astronomical Lyon",
        Mode::Astronomical {
            latitude: 45.76,
            longitude: 4.84,
            sunset_offset: 0,
            sunrise_offset: 0,
        },
    );
}
