//! Finding the line of a key in the configuration text, so that validation
//! problems point at the place to fix.

use toml::de::{DeTable, DeValue};

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Looks up dotted key paths in the parsed document.
pub struct Locator<'a> {
    text: &'a str,
    root: Option<DeValue<'a>>,
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Self {
        let root = DeTable::parse(text)
            .ok()
            .map(|t| DeValue::Table(t.into_inner()));
        Self { text, root }
    }

    /// The line of the value at `path` (`camera.fps`,
    /// `analytics.lines[1].from`), or of the deepest table on the way when
    /// the key is absent.
    pub fn line(&mut self, path: &str) -> Option<usize> {
        let mut current = self.root.as_ref()?;
        let mut line = None;
        let path = path.replace('[', ".").replace(']', "");
        for part in path.split('.') {
            let next = match part.parse::<usize>() {
                Ok(index) => current.get(index),
                Err(_) => current.get(part),
            };
            match next {
                Some(next) => {
                    line = Some(line_of(self.text, next.span().start));
                    current = next.get_ref();
                }
                None => break,
            }
        }
        line
    }
}
