//! The lamp's energy each night, from its light timeline: kWh used, and kWh
//! saved against a lamp at full power all night. Pure: times are passed in.
//!
//! The timeline is the `light` changes (level and whether it is night):
//! the level is taken as constant between two changes (ramps last a second
//! or two, and are not followed step by step). A night is reported when it
//! ends: at the first change that says it is day after one that said night.
//! "Full power all night" is the lamp's rated watts over the time the
//! policy called night; light given in the day (a fail-safe, an override)
//! counts as used, so the saving can be negative.

/// One night's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct EnergyReport {
    /// The night's start and end, UTC ms (the first change seen in it when
    /// the daemon started during the night).
    pub from_ms: i64,
    pub to_ms: i64,
    pub used_kwh: f64,
    /// A lamp at its rated power over the night.
    pub full_kwh: f64,
    /// `full_kwh - used_kwh`.
    pub saved_kwh: f64,
    pub rated_w: f64,
    /// Hours the policy called night.
    pub night_h: f64,
}

/// Integrates the light timeline.
#[derive(Clone, Debug)]
pub struct EnergyMeter {
    rated_w: f64,
    /// The last change: time, level, night.
    last: Option<(i64, f64, bool)>,
    /// Since the current night (or day-time light) began.
    since: Option<i64>,
    used_wh: f64,
    night_ms: i64,
    /// Everything used since the meter started (the metric's counter).
    pub used_total_kwh: f64,
}

impl EnergyMeter {
    pub fn new(rated_w: f64) -> Self {
        Self {
            rated_w,
            last: None,
            since: None,
            used_wh: 0.0,
            night_ms: 0,
            used_total_kwh: 0.0,
        }
    }

    pub fn rated_w(&self) -> f64 {
        self.rated_w
    }

    /// A change at `t_ms` to `level` (0 to 1), `night` or not; the night's
    /// report when this change ends one.
    pub fn observe(&mut self, t_ms: i64, level: f64, night: bool) -> Option<EnergyReport> {
        let mut report = None;
        if let Some((t0, level0, night0)) = self.last {
            let span = (t_ms - t0).max(0);
            let wh = level0.clamp(0.0, 1.0) * self.rated_w * span as f64 / 3_600_000.0;
            self.used_wh += wh;
            self.used_total_kwh += wh / 1000.0;
            if night0 {
                self.night_ms += span;
            }
            if night0 && !night {
                let full_wh = self.rated_w * self.night_ms as f64 / 3_600_000.0;
                report = Some(EnergyReport {
                    from_ms: self.since.unwrap_or(t0),
                    to_ms: t_ms,
                    used_kwh: self.used_wh / 1000.0,
                    full_kwh: full_wh / 1000.0,
                    saved_kwh: (full_wh - self.used_wh) / 1000.0,
                    rated_w: self.rated_w,
                    night_h: self.night_ms as f64 / 3_600_000.0,
                });
                self.used_wh = 0.0;
                self.night_ms = 0;
                self.since = None;
            }
        }
        if night && self.since.is_none() {
            self.since = Some(t_ms);
        }
        self.last = Some((t_ms, level, night));
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn a_dimmed_night_with_a_boost_uses_less_than_full_power() {
        let mut m = EnergyMeter::new(100.0);
        // Dusk at 18:00 (30 %), an hour's boost to 100 % at 22:00, dawn at 06:00.
        assert_eq!(m.observe(18 * H, 0.3, true), None);
        assert_eq!(m.observe(22 * H, 1.0, true), None);
        assert_eq!(m.observe(23 * H, 0.3, true), None);
        let r = m.observe(30 * H, 0.0, false).unwrap();
        // 11 h at 30 W + 1 h at 100 W = 430 Wh; full: 12 h at 100 W.
        assert!((r.used_kwh - 0.43).abs() < 1e-9, "{r:?}");
        assert!((r.full_kwh - 1.2).abs() < 1e-9, "{r:?}");
        assert!((r.saved_kwh - 0.77).abs() < 1e-9, "{r:?}");
        assert_eq!((r.from_ms, r.to_ms), (18 * H, 30 * H));
        assert!((r.night_h - 12.0).abs() < 1e-9);
    }

    #[test]
    fn each_night_is_reported_once_and_starts_afresh() {
        let mut m = EnergyMeter::new(50.0);
        m.observe(18 * H, 1.0, true);
        assert!(m.observe(30 * H, 0.0, false).is_some());
        // A day change and a second day change: no report.
        assert_eq!(m.observe(31 * H, 0.0, false), None);
        m.observe(42 * H, 0.5, true);
        let r = m.observe(54 * H, 0.0, false).unwrap();
        assert!((r.used_kwh - 0.3).abs() < 1e-9, "{r:?}");
        assert!((r.saved_kwh - 0.3).abs() < 1e-9, "{r:?}");
        assert_eq!(r.from_ms, 42 * H);
        assert!((m.used_total_kwh - 0.9).abs() < 1e-9);
    }

    #[test]
    fn light_in_the_day_counts_as_used_and_can_make_the_saving_negative() {
        let mut m = EnergyMeter::new(100.0);
        // A fail-safe at full power from 16:00, night from 18:00 at 10 %.
        m.observe(16 * H, 1.0, false);
        m.observe(18 * H, 0.1, true);
        let r = m.observe(20 * H, 0.0, false).unwrap();
        // 2 h at 100 W in the day + 2 h at 10 W at night; full: 2 h at 100 W.
        assert!((r.used_kwh - 0.22).abs() < 1e-9, "{r:?}");
        assert!((r.saved_kwh + 0.02).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn a_start_in_the_night_reports_from_the_first_change() {
        let mut m = EnergyMeter::new(100.0);
        m.observe(2 * H, 0.3, true);
        let r = m.observe(6 * H, 0.0, false).unwrap();
        assert_eq!(r.from_ms, 2 * H);
        assert!((r.full_kwh - 0.4).abs() < 1e-9);
    }
}
