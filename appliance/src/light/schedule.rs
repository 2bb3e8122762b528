//! A fixed night schedule in local time: on at `on`, off at `off`, in an
//! IANA time zone, so a daylight-saving change moves the UTC instants and
//! not the local ones.

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Night from `on` to `off` (minutes after local midnight; `off` may be
/// 1440, i.e. "24:00"). `on > off` spans midnight; `on = 0, off = 1440` is
/// always night.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub on_min: u32,
    pub off_min: u32,
    pub timezone: TimeZone,
}

impl Schedule {
    /// A schedule from `"HH:MM"` texts and a zone name, or why not.
    pub fn parse(on: &str, off: &str, timezone: &str) -> Result<Schedule, (String, String)> {
        let on_min = parse_hhmm(on).map_err(|r| ("on".to_string(), r))?;
        let off_min = parse_hhmm(off).map_err(|r| ("off".to_string(), r))?;
        if on_min == 1440 {
            return Err(("on".into(), "must be between 00:00 and 23:59".into()));
        }
        if on_min == off_min {
            return Err((
                "off".into(),
                "must differ from `on` (for always night write on = \"00:00\", off = \"24:00\")"
                    .into(),
            ));
        }
        let timezone = jiff::tz::db().get(timezone).map_err(|e| {
            (
                "timezone".to_string(),
                format!("not a known IANA time zone: {e}"),
            )
        })?;
        Ok(Schedule {
            on_min,
            off_min,
            timezone,
        })
    }

    /// Whether `now` (UTC ms) falls in the night, by the local wall clock.
    pub fn is_night(&self, now_utc_ms: i64) -> bool {
        let Ok(ts) = Timestamp::from_millisecond(now_utc_ms) else {
            return true;
        };
        let time = self.timezone.to_datetime(ts).time();
        let minute = time.hour() as u32 * 60 + time.minute() as u32;
        if self.on_min < self.off_min {
            (self.on_min..self.off_min).contains(&minute)
        } else {
            minute >= self.on_min || minute < self.off_min
        }
    }

    /// `"19:00-07:00 Europe/Paris"`.
    pub fn describe(&self) -> String {
        let hhmm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        format!(
            "{}-{} {}",
            hhmm(self.on_min),
            hhmm(self.off_min),
            self.timezone.iana_name().unwrap_or("UTC")
        )
    }
}

/// `"HH:MM"` to minutes after midnight; `"24:00"` is allowed.
pub fn parse_hhmm(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a time HH:MM (00:00 to 24:00)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}
