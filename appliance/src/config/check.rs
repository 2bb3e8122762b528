//! The problem collector validation writes into, and the checks every
//! section shares: ranges, names used in topics, fractions, class lists,
//! points, and paths with `${NAME}` references.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::locate::Locator;
use super::Problem;
use crate::analytics::geometry::{signed_area2, Point};
use crate::backoff::Backoff;
use crate::detect::Class;

/// Collects problems with their place in the file.
pub(super) struct Check<'a, 'b> {
    pub locator: &'a mut Locator<'b>,
    pub problems: &'a mut Vec<Problem>,
    /// The configuration file's folder: relative paths start there.
    pub base: &'a Path,
}

impl Check<'_, '_> {
    /// Records a problem with `key` (a dotted path such as `camera.fps`).
    pub fn fail(&mut self, key: &str, value: Option<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            line: self.locator.line(key),
            key: Some(key.to_string()),
            value,
            reason: reason.into(),
        });
    }

    /// Problems recorded so far (to tell whether a section added some).
    pub fn count(&self) -> usize {
        self.problems.len()
    }

    /// `min <= value <= max`, or a problem.
    pub fn range(&mut self, key: &str, value: u64, min: u64, max: u64) -> bool {
        if (min..=max).contains(&value) {
            true
        } else {
            self.fail(
                key,
                Some(value.to_string()),
                format!("must be between {min} and {max}"),
            );
            false
        }
    }

    /// `<section>.reconnect_min_ms` and `<section>.reconnect_max_ms`
    /// (`None` keeps the default's), each between 10 ms and its ceiling, the
    /// maximum not below the minimum; `None` after a problem.
    pub fn backoff(
        &mut self,
        section: &str,
        (min_ms, max_ms): (Option<u64>, Option<u64>),
        default: Backoff,
        (min_ceiling, max_ceiling): (u64, u64),
    ) -> Option<Backoff> {
        let min = min_ms.unwrap_or(default.min.as_millis() as u64);
        let max = max_ms.unwrap_or(default.max.as_millis() as u64);
        let min_key = format!("{section}.reconnect_min_ms");
        let max_key = format!("{section}.reconnect_max_ms");
        let min_ok = self.range(&min_key, min, 10, min_ceiling);
        let max_ok = self.range(&max_key, max, 10, max_ceiling);
        let ordered = max >= min;
        if max_ok && !ordered {
            self.fail(
                &max_key,
                Some(max.to_string()),
                format!("must not be below {min_key} ({min})"),
            );
        }
        (min_ok && max_ok && ordered).then(|| Backoff {
            min: Duration::from_millis(min),
            max: Duration::from_millis(max),
        })
    }

    /// A finite `min <= value <= max`, or a problem.
    pub fn fraction(&mut self, key: &str, value: f32, min: f32, max: f32) -> bool {
        if value.is_finite() && (min..=max).contains(&value) {
            true
        } else {
            self.fail(
                key,
                Some(value.to_string()),
                format!("must be between {min} and {max}"),
            );
            false
        }
    }

    /// Names that go into MQTT topics: letters, digits, `-`, `_`, `.`.
    pub fn name(&mut self, key: &str, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            self.fail(
                key,
                Some(format!("{value:?}")),
                "must be 1 to 64 characters among letters, digits, '-', '_' and '.' (it is used in MQTT topics)",
            );
        }
    }

    /// Class names, each known and listed once.
    pub fn classes(&mut self, key: &str, names: &[String]) -> Vec<Class> {
        let mut classes = Vec::new();
        for name in names {
            match name.parse::<Class>() {
                Ok(class) if classes.contains(&class) => {
                    self.fail(key, Some(format!("{name:?}")), "is listed twice")
                }
                Ok(class) => classes.push(class),
                Err(reason) => self.fail(key, Some(format!("{name:?}")), reason),
            }
        }
        classes
    }

    /// A polygon of frame pixels (a zone's or a mask's, `what` in the
    /// message): every corner a point, at least three, enclosing an area.
    pub fn polygon(&mut self, key: &str, corners: &[[f32; 2]], what: &str) -> Vec<Point> {
        let polygon: Vec<Point> = corners.iter().map(|&p| self.point(key, p)).collect();
        if polygon.len() < 3 {
            self.fail(
                key,
                Some(format!("{} point(s)", polygon.len())),
                format!("a {what} needs at least three corners"),
            );
        } else if signed_area2(&polygon).abs() < 1.0 {
            self.fail(key, None, "the corners enclose no area");
        }
        polygon
    }

    /// A point `[x, y]` in frame pixels.
    pub fn point(&mut self, key: &str, p: [f32; 2]) -> Point {
        if !(p[0].is_finite() && p[1].is_finite() && p[0] >= 0.0 && p[1] >= 0.0) {
            self.fail(
                key,
                Some(format!("{p:?}")),
                "must be [x, y] in frame pixels, not negative",
            );
        }
        p
    }

    /// A path: `${NAME}` references expanded, resolved against the
    /// configuration's folder.
    pub fn path(&mut self, key: &str, raw: &str) -> Option<PathBuf> {
        match expand_vars(raw, |name| std::env::var(name).ok()) {
            Ok(expanded) => Some(self.base.join(expanded)),
            Err(reason) => {
                self.fail(key, Some(format!("{raw:?}")), reason);
                None
            }
        }
    }

    /// A path that must name an existing file.
    pub fn file(&mut self, key: &str, raw: &str) -> Option<PathBuf> {
        let path = self.path(key, raw)?;
        if !path.is_file() {
            self.fail(
                key,
                Some(format!("{raw:?}")),
                format!("{}: no such file", path.display()),
            );
        }
        Some(path)
    }

    /// A library: a bare file name is left for the system loader to find.
    pub fn library(&mut self, key: &str, raw: &str) -> Option<PathBuf> {
        if raw.contains('/') || raw.contains("${") {
            self.path(key, raw)
        } else if raw.is_empty() {
            self.fail(key, Some("\"\"".into()), "must name a library");
            None
        } else {
            Some(PathBuf::from(raw))
        }
    }
}

/// Replaces `${NAME}` with the value `lookup` gives for NAME, and
/// `${NAME:-fallback}` with it too, or with the fallback (itself expanded)
/// when NAME is unset or empty; an unknown or malformed reference is an
/// error naming it.
pub fn expand_vars(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    expand_with(text, &lookup)
}

fn expand_with(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // The matching brace, past any nested ${...} in a fallback.
        let mut depth = 1;
        let mut end = None;
        let bytes = after.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
                depth += 1;
                i += 2;
                continue;
            }
            if bytes[i] == b'}' {
                depth -= 1;
                if depth == 0 {
                    end = Some(i);
                    break;
                }
            }
            i += 1;
        }
        let end = end.ok_or_else(|| "has an unclosed ${...}".to_string())?;
        let inner = &after[..end];
        let (name, fallback) = match inner.split_once(":-") {
            Some((name, fallback)) => (name, Some(fallback)),
            None => (inner, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("${{{inner}}} is not a valid variable reference"));
        }
        let value = match (lookup(name), fallback) {
            (Some(value), Some(fallback)) if value.is_empty() => expand_with(fallback, lookup)?,
            (Some(value), _) => value,
            (None, Some(fallback)) => expand_with(fallback, lookup)?,
            (None, None) => return Err(format!("environment variable {name} is not set")),
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
