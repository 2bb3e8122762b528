//! The nonces of admitted orders, each remembered until its order expires:
//! an order replayed within its validity window finds its nonce here, and
//! an order replayed later is refused as expired. Bounded: at most
//! [`MAX_NONCES`] orders in force at once.

use std::collections::HashMap;
use std::path::Path;

use super::{Refusal, RemoteError};

/// The most orders in force at once (nonces remembered).
pub const MAX_NONCES: usize = 4096;

/// Nonces seen, with the expiry of their order (UTC ms).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nonces {
    seen: HashMap<String, i64>,
}

/// Whether `nonce` has the accepted shape: 16 to 64 characters
/// `[A-Za-z0-9_-]`.
pub fn well_formed(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Nonces {
    /// Remembers `nonce` until `expires_ms`, or refuses it if it is still
    /// remembered. Forgets the nonces of expired orders first.
    pub fn remember(&mut self, nonce: &str, expires_ms: i64, now_ms: i64) -> Result<(), Refusal> {
        self.seen.retain(|_, expiry| *expiry > now_ms);
        if self.seen.contains_key(nonce) {
            return Err(Refusal::Replayed);
        }
        if self.seen.len() >= MAX_NONCES {
            return Err(Refusal::Busy);
        }
        self.seen.insert(nonce.to_string(), expires_ms);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Reads the nonces kept in `path` (one `nonce expiry_ms` per line); a
    /// missing file is an empty set.
    pub fn load(path: &Path) -> Result<Nonces, RemoteError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Nonces::default()),
            Err(e) => {
                return Err(RemoteError::State {
                    path: path.to_owned(),
                    reason: format!("cannot read: {e}"),
                })
            }
        };
        let mut seen = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let parsed = line
                .split_once(' ')
                .and_then(|(nonce, expiry)| Some((nonce, expiry.parse::<i64>().ok()?)))
                .filter(|(nonce, _)| well_formed(nonce));
            let Some((nonce, expiry)) = parsed else {
                return Err(RemoteError::State {
                    path: path.to_owned(),
                    reason: format!("line {}: expected `NONCE EXPIRY_MS`", n + 1),
                });
            };
            seen.insert(nonce.to_string(), expiry);
        }
        Ok(Nonces { seen })
    }

    /// Writes the nonces to `path` atomically (a temporary file renamed
    /// over it, synced), so a power cut leaves the old set or the new one.
    pub fn save(&self, path: &Path) -> Result<(), RemoteError> {
        let mut lines: Vec<_> = self.seen.iter().collect();
        lines.sort();
        let text: String = lines
            .into_iter()
            .map(|(nonce, expiry)| format!("{nonce} {expiry}\n"))
            .collect();
        write_atomically(path, text.as_bytes()).map_err(|e| RemoteError::State {
            path: path.to_owned(),
            reason: format!("cannot write: {e}"),
        })
    }
}

/// Writes `bytes` to `path` through a synced temporary file renamed over
/// it, then syncs the folder: readers see the old content or the new, never
/// a mix, even after a power cut.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = folder.join(format!(".{name}.new"));
    {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(folder)?.sync_all()
}
