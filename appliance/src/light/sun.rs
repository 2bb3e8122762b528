//! Sunrise and sunset from the NOAA solar position equations (the public
//! "General Solar Position Calculations"): solar declination and the
//! equation of time from the Julian century, then the hour angle at which
//! the sun's centre is 0.833 degrees below the horizon (refraction plus the
//! solar radius). Accurate to about a minute at mid latitudes.

const MS_PER_DAY: i64 = 86_400_000;

/// What the sun does on one solar day.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SunDay {
    /// Rise and set, UTC ms since the epoch.
    RiseSet { rise: i64, set: i64 },
    /// The sun never sets (polar day).
    AlwaysUp,
    /// The sun never rises (polar night).
    AlwaysDown,
}

/// Sunrise and sunset around the solar noon of the UTC calendar day
/// `day` (days since 1970-01-01) at a position (degrees, east and north
/// positive).
pub fn sun_day(day: i64, latitude: f64, longitude: f64) -> SunDay {
    let noon_guess =
        day * MS_PER_DAY + MS_PER_DAY / 2 - (longitude / 360.0 * MS_PER_DAY as f64) as i64;
    let (Some(rise0), Some(set0)) = (
        event(noon_guess, latitude, longitude, -1.0),
        event(noon_guess, latitude, longitude, 1.0),
    ) else {
        // Decide by the sun's height at noon.
        let (decl, _) = solar(noon_guess);
        return if (latitude - decl).abs() < 90.0 {
            SunDay::AlwaysUp
        } else {
            SunDay::AlwaysDown
        };
    };
    // One refinement at the events themselves: declination and the
    // equation of time move during the day.
    let rise = event(rise0, latitude, longitude, -1.0).unwrap_or(rise0);
    let set = event(set0, latitude, longitude, 1.0).unwrap_or(set0);
    SunDay::RiseSet { rise, set }
}

/// The time of sunrise (`side = -1`) or sunset (`+1`) computed with the
/// sun's figures at `at_ms`; `None` when the sun does not cross the horizon.
fn event(at_ms: i64, latitude: f64, longitude: f64, side: f64) -> Option<i64> {
    let (decl, eot_min) = solar(at_ms);
    let lat = latitude.to_radians();
    let d = decl.to_radians();
    let cos_ha = 90.833f64.to_radians().cos() / (lat.cos() * d.cos()) - lat.tan() * d.tan();
    if !(-1.0..=1.0).contains(&cos_ha) {
        return None;
    }
    let ha_deg = cos_ha.acos().to_degrees();
    // Solar noon of the UTC day holding `at_ms`, in minutes after 00:00 UTC;
    // events near midnight UTC may belong to the day before or after.
    let day = at_ms.div_euclid(MS_PER_DAY);
    let noon_min = 720.0 - 4.0 * longitude - eot_min;
    let minutes = noon_min + side * 4.0 * ha_deg;
    let mut t = day * MS_PER_DAY + (minutes * 60_000.0).round() as i64;
    // Keep the event within half a day of `at_ms`.
    while t - at_ms > MS_PER_DAY / 2 {
        t -= MS_PER_DAY;
    }
    while at_ms - t > MS_PER_DAY / 2 {
        t += MS_PER_DAY;
    }
    Some(t)
}

/// Solar declination (degrees) and equation of time (minutes) at a time.
fn solar(at_ms: i64) -> (f64, f64) {
    let julian_day = at_ms as f64 / MS_PER_DAY as f64 + 2_440_587.5;
    let t = (julian_day - 2_451_545.0) / 36_525.0;
    let mean_long = (280.466_46 + t * (36_000.769_83 + t * 0.000_303_2)).rem_euclid(360.0);
    let mean_anom = 357.529_11 + t * (35_999.050_29 - 0.000_153_7 * t);
    let ecc = 0.016_708_634 - t * (0.000_042_037 + 0.000_000_126_7 * t);
    let m = mean_anom.to_radians();
    let centre = m.sin() * (1.914_602 - t * (0.004_817 + 0.000_014 * t))
        + (2.0 * m).sin() * (0.019_993 - 0.000_101 * t)
        + (3.0 * m).sin() * 0.000_289;
    let true_long = mean_long + centre;
    let omega = (125.04 - 1934.136 * t).to_radians();
    let apparent_long = true_long - 0.005_69 - 0.004_78 * omega.sin();
    let mean_obliq =
        23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.000_59 - t * 0.001_813))) / 60.0) / 60.0;
    let obliq = (mean_obliq + 0.002_56 * omega.cos()).to_radians();
    let decl = (obliq.sin() * apparent_long.to_radians().sin())
        .asin()
        .to_degrees();
    let y = (obliq / 2.0).tan().powi(2);
    let l0 = mean_long.to_radians();
    let eot = y * (2.0 * l0).sin() - 2.0 * ecc * m.sin()
        + 4.0 * ecc * y * m.sin() * (2.0 * l0).cos()
        - 0.5 * y * y * (4.0 * l0).sin()
        - 1.25 * ecc * ecc * (2.0 * m).sin();
    (decl, 4.0 * eot.to_degrees())
}

/// Whether `now` is between sunset + `sunset_offset_ms` and the next
/// sunrise + `sunrise_offset_ms`.
pub fn is_night(
    now_utc_ms: i64,
    latitude: f64,
    longitude: f64,
    sunset_offset_ms: i64,
    sunrise_offset_ms: i64,
) -> bool {
    // The local solar day holding `now`, and its neighbours: `now` is day
    // when it falls inside one of their day intervals.
    let solar_day =
        (now_utc_ms + (longitude / 360.0 * MS_PER_DAY as f64) as i64).div_euclid(MS_PER_DAY);
    for day in solar_day - 1..=solar_day + 1 {
        match sun_day(day, latitude, longitude) {
            SunDay::RiseSet { rise, set } => {
                if (rise + sunrise_offset_ms..set + sunset_offset_ms).contains(&now_utc_ms) {
                    return false;
                }
            }
            SunDay::AlwaysUp => {
                let start = day * MS_PER_DAY - (longitude / 360.0 * MS_PER_DAY as f64) as i64;
                if (start..start + MS_PER_DAY).contains(&now_utc_ms) {
                    return false;
                }
            }
            SunDay::AlwaysDown => {}
        }
    }
    true
}
