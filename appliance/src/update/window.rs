//! The maintenance window: when a pole may reboot into a newly installed
//! system. Pure: the time is passed in.

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// `"now"`, or a daily `"HH:MM-HH:MM"` in a time zone (it may span
/// midnight: `"22:00-02:00"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Minutes after midnight; `None` is "now".
    span: Option<(u32, u32)>,
    timezone: TimeZone,
    zone: String,
    text: String,
}

impl Window {
    /// Parses `text` in the IANA zone `timezone`; the error says why.
    pub fn parse(text: &str, timezone: &str) -> Result<Window, String> {
        let zone = jiff::tz::db()
            .get(timezone)
            .map_err(|e| format!("unknown time zone {timezone:?}: {e}"))?;
        if text == "now" {
            return Ok(Window {
                span: None,
                timezone: zone,
                zone: timezone.into(),
                text: text.into(),
            });
        }
        let minutes = |part: &str| -> Option<u32> {
            let (h, m) = part.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let span = text
            .split_once('-')
            .and_then(|(a, b)| Some((minutes(a)?, minutes(b)?)))
            .filter(|(a, b)| a != b)
            .ok_or_else(|| {
                format!("{text:?}: expected \"now\" or \"HH:MM-HH:MM\" (two different times, e.g. \"02:00-05:00\")")
            })?;
        Ok(Window {
            span: Some(span),
            timezone: zone,
            zone: timezone.into(),
            text: format!("{text} {timezone}"),
        })
    }

    /// The window as written, with its zone (`"now"` alone).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The IANA zone it is read in.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// Milliseconds from `now_ms` (UTC) to the window's next opening; 0
    /// when it is open now.
    pub fn wait_ms(&self, now_ms: i64) -> i64 {
        let Some((start, end)) = self.span else {
            return 0;
        };
        let Ok(now) = Timestamp::from_millisecond(now_ms) else {
            return 0;
        };
        let local = self.timezone.to_datetime(now).time();
        let minute = u32::from(local.hour() as u8) * 60 + u32::from(local.minute() as u8);
        let open = if start < end {
            minute >= start && minute < end
        } else {
            minute >= start || minute < end
        };
        if open {
            return 0;
        }
        // The next local `start`: today or tomorrow. Daylight saving may
        // move it by an hour; the wait is only ever an approximation of a
        // few seconds (the clock is read again when it ends).
        let seconds_now = i64::from(minute) * 60 + i64::from(local.second());
        let mut wait_s = i64::from(start) * 60 - seconds_now;
        if wait_s <= 0 {
            wait_s += 24 * 3600;
        }
        wait_s * 1000 - i64::from(local.millisecond())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn now_never_waits() {
        let w = Window::parse("now", "UTC").unwrap();
        assert_eq!(w.wait_ms(at("2026-12-03T14:00:00Z")), 0);
    }

    #[test]
    fn a_window_is_open_inside_and_waits_for_its_next_start_outside() {
        let w = Window::parse("02:00-05:00", "UTC").unwrap();
        assert_eq!(w.wait_ms(at("2026-12-03T03:00:00Z")), 0);
        assert_eq!(w.wait_ms(at("2026-12-03T01:30:00Z")), 30 * 60 * 1000);
        // After today's window: tomorrow's.
        assert_eq!(w.wait_ms(at("2026-12-03T05:00:00Z")), 21 * 3600 * 1000);
    }

    #[test]
    fn a_window_may_span_midnight() {
        let w = Window::parse("22:00-02:00", "UTC").unwrap();
        assert_eq!(w.wait_ms(at("2026-12-03T23:00:00Z")), 0);
        assert_eq!(w.wait_ms(at("2026-12-04T01:59:00Z")), 0);
        assert_eq!(w.wait_ms(at("2026-12-04T02:00:00Z")), 20 * 3600 * 1000);
    }

    #[test]
    fn the_zone_is_the_pole_s_local_time() {
        // 01:30 UTC is 02:30 in Paris in winter.
        let w = Window::parse("02:00-05:00", "Europe/Paris").unwrap();
        assert_eq!(w.wait_ms(at("2026-12-03T01:30:00Z")), 0);
        assert_eq!(w.wait_ms(at("2026-12-03T00:30:00Z")), 30 * 60 * 1000);
    }

    #[test]
    fn bad_windows_say_why() {
        for bad in [
            "2-5",
            "02:00",
            "02:00-02:00",
            "25:00-03:00",
            "02:60-03:00",
            "soon",
        ] {
            let err = Window::parse(bad, "UTC").unwrap_err();
            assert!(err.contains("HH:MM-HH:MM"), "{bad}: {err}");
        }
        assert!(Window::parse("now", "Mars/Olympus")
            .unwrap_err()
            .contains("Mars/Olympus"));
    }
}
