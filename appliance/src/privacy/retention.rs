//! Retention for the images written on the pole: installer snapshots and
//! camera captures live only in `privacy.images_dir`, and every image file
//! there (at any depth) older than `privacy.image_retention_s` is deleted
//! by the next sweep (each `snapshot` and `capture` sweeps before it
//! writes, the daemon at start and every minute). The sweep deletes only
//! what Luciole writes there (`.png` and `.jpg` files, capture indexes
//! `frames.jsonl`, then folders they leave empty), never follows a link,
//! and refuses to walk `/`, so a mistaken `images_dir` cannot cost a
//! configuration or an outbox.
//!
//! Each image command first leaves a record in the folder's audit spool
//! (`.audit/`): it cannot write into the outbox of a daemon that may be
//! running, so the daemon turns each record into an `audit` event at its
//! next sweep and deletes it. The record is written before any image: a
//! command that cannot write it writes nothing.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::events::Audit;

/// The audit spool's folder inside the images folder (never swept by age:
/// its records are deleted once they are events).
pub const SPOOL: &str = ".audit";

/// `privacy.images_dir` and `privacy.image_retention_s`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSettings {
    /// The only folder images are written into.
    pub dir: PathBuf,
    /// How long an image is kept.
    pub retention: Duration,
}

impl Default for ImageSettings {
    /// `/var/lib/luciole/images`, kept 24 hours.
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/luciole/images"),
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// What can go wrong placing, sweeping or auditing images.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{out}: outside privacy.images_dir ({dir}): images are written only there, where they are deleted after privacy.image_retention_s")]
    Outside { out: PathBuf, dir: PathBuf },
    #[error("privacy.images_dir = \"/\": the sweep would walk the whole system; name a folder of its own")]
    Root,
}

/// File names the sweep may delete: what snapshots and captures write.
fn is_image_file(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase());
    match name.as_deref() {
        Some("frames.jsonl") => true,
        Some(name) => [".png", ".jpg", ".jpeg"].iter().any(|e| name.ends_with(e)),
        None => false,
    }
}

fn io(path: &Path, err: impl std::fmt::Display) -> RetentionError {
    RetentionError::Io {
        path: path.to_path_buf(),
        reason: err.to_string(),
    }
}

/// Gives `path`, just made by this process, the owner of its folder when
/// this process runs as root (an installer's command on the pole's
/// console), so that the daemon, which owns the images folder's parent,
/// can sweep and read what is made there.
pub fn hand_over(path: &Path) -> Result<(), RetentionError> {
    use std::os::unix::fs::MetadataExt;
    let made = std::fs::symlink_metadata(path).map_err(|e| io(path, e))?;
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let folder = std::fs::metadata(parent).map_err(|e| io(parent, e))?;
    if made.uid() != 0 || folder.uid() == 0 {
        return Ok(());
    }
    // Not following a link: a link put there meanwhile is not a way to
    // have another file given away.
    std::os::unix::fs::lchown(path, Some(folder.uid()), Some(folder.gid()))
        .map_err(|e| io(path, format!("cannot give it to the folder's owner: {e}")))
}

/// Creates the folder `path` (0700; with `parents`, the missing folders
/// above it too) and gives it to the owner of the folder above
/// ([`hand_over`]).
fn private_dir(path: &Path, parents: bool) -> Result<(), RetentionError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(parents)
        .mode(0o700)
        .create(path)
        .map_err(|e| io(path, format!("cannot create folder: {e}")))?;
    hand_over(path)
}

impl ImageSettings {
    /// Creates the folder (0700, the owner of its parent) if missing and
    /// returns its canonical path.
    pub fn prepare(&self) -> Result<PathBuf, RetentionError> {
        if self.dir == Path::new("/") {
            return Err(RetentionError::Root);
        }
        if !self.dir.is_dir() {
            private_dir(&self.dir, true)?;
        }
        self.dir.canonicalize().map_err(|e| io(&self.dir, e))
    }

    /// Where an image goes: `out` when it lies inside the images folder
    /// (relative paths start from the working folder, as usual), else a
    /// refusal; without `out`, `default_name` in the folder.
    pub fn place(&self, out: Option<&Path>, default_name: &str) -> Result<PathBuf, RetentionError> {
        let dir = self.prepare()?;
        let Some(out) = out else {
            return Ok(dir.join(default_name));
        };
        let absolute = if out.is_absolute() {
            out.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| io(out, format!("no working folder: {e}")))?
                .join(out)
        };
        let outside = || RetentionError::Outside {
            out: out.to_path_buf(),
            dir: self.dir.clone(),
        };
        // The longest part that exists is resolved (links included); the
        // rest must be plain names.
        let mut existing = absolute.as_path();
        let mut rest = Vec::new();
        // A link counts as existing (a dangling one then fails to resolve):
        // it is never taken for a plain name.
        while std::fs::symlink_metadata(existing).is_err() {
            let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
                return Err(outside());
            };
            rest.push(name.to_os_string());
            existing = parent;
        }
        let mut resolved = existing.canonicalize().map_err(|e| io(existing, e))?;
        for name in rest.iter().rev() {
            if Path::new(name)
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                return Err(outside());
            }
            resolved.push(name);
        }
        if resolved == dir || !resolved.starts_with(&dir) || resolved.starts_with(dir.join(SPOOL)) {
            return Err(outside());
        }
        Ok(resolved)
    }

    /// Creates the folders from the images folder down to `path` (0700),
    /// each given to the owner of the one above it ([`hand_over`]), so the
    /// daemon can sweep inside them.
    pub fn make_dirs(&self, path: &Path) -> Result<(), RetentionError> {
        let dir = self.prepare()?;
        let Ok(below) = path.strip_prefix(&dir) else {
            return Err(RetentionError::Outside {
                out: path.to_path_buf(),
                dir: self.dir.clone(),
            });
        };
        let mut at = dir;
        for part in below.components() {
            at.push(part);
            if std::fs::symlink_metadata(&at).is_err() {
                private_dir(&at, false)?;
            }
        }
        Ok(())
    }
}

/// What a sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Images (files or capture folders) deleted.
    pub deleted: Vec<PathBuf>,
    /// Those that could not be deleted, with the reason.
    pub failed: Vec<String>,
}

/// Deletes every image file under `dir` (the audit spool aside, links
/// not followed) last modified more than `retention` before `now`, then
/// the folders that this leaves empty. A missing folder holds nothing.
pub fn sweep(dir: &Path, retention: Duration, now: SystemTime) -> Swept {
    let mut swept = Swept::default();
    if dir == Path::new("/") {
        swept.failed.push(RetentionError::Root.to_string());
        return swept;
    }
    sweep_into(dir, true, retention, now, &mut swept);
    swept
}

/// Sweeps `dir`; whether it is empty afterwards because of this sweep.
fn sweep_into(
    dir: &Path,
    top: bool,
    retention: Duration,
    now: SystemTime,
    swept: &mut Swept,
) -> bool {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return false,
        Err(err) => {
            swept.failed.push(format!("{}: {err}", dir.display()));
            return false;
        }
    };
    let (mut left, mut deleted) = (0usize, 0usize);
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if top && entry.file_name() == SPOOL {
            left += 1;
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if sweep_into(&path, false, retention, now, swept) {
                match std::fs::remove_dir(&path) {
                    Ok(()) => {
                        deleted += 1;
                        continue;
                    }
                    Err(err) => swept.failed.push(format!("{}: {err}", path.display())),
                }
            }
            left += 1;
            continue;
        }
        let age = now
            .duration_since(meta.modified().unwrap_or(now))
            .unwrap_or_default();
        if !meta.is_file() || !is_image_file(&path) || age <= retention {
            left += 1;
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                swept.deleted.push(path);
                deleted += 1;
            }
            Err(err) => {
                swept.failed.push(format!("{}: {err}", path.display()));
                left += 1;
            }
        }
    }
    left == 0 && deleted > 0
}

/// Records that an image is being written: one JSON file in the spool,
/// written whole (temporary file, then renamed) and readable by its owner
/// only.
pub fn spool(dir: &Path, record: &Audit, now_ms: u64) -> Result<PathBuf, RetentionError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let spool = dir.join(SPOOL);
    if !spool.is_dir() {
        private_dir(&spool, true)?;
    }
    let name = format!("{now_ms:013}-{}.json", std::process::id());
    let tmp = spool.join(format!(".{name}.tmp"));
    let path = spool.join(name);
    let text = serde_json::to_vec(record).expect("an audit record always serialises");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(|e| io(&tmp, e))?;
    hand_over(&tmp)?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    Ok(path)
}

/// The spool's records, oldest first. A record that cannot be read comes
/// back as an audit saying so, with the file's name (it is still deleted
/// once reported: nothing else could read it later).
pub fn spooled(dir: &Path) -> Vec<(PathBuf, Audit)> {
    let spool = dir.join(SPOOL);
    let entries = match std::fs::read_dir(&spool) {
        Ok(entries) => entries,
        Err(err) => {
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::error!(spool = %spool.display(), "cannot read the images' audit spool: {err}");
            }
            return Vec::new();
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let audit = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<Audit>(&bytes).map_err(|e| e.to_string())
                })
                .unwrap_or_else(|err| Audit {
                    key: None,
                    role: Some("console".into()),
                    command: None,
                    outcome: "failed".into(),
                    code: Some("spool_unreadable".into()),
                    detail: format!(
                        "{}: an image's audit record could not be read: {err}",
                        path.display()
                    ),
                });
            (path, audit)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("luciole-retention-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn audit(detail: &str) -> Audit {
        Audit {
            key: None,
            role: Some("console".into()),
            command: Some("snapshot".into()),
            outcome: "done".into(),
            code: None,
            detail: detail.into(),
        }
    }

    #[test]
    fn only_paths_inside_the_images_folder_are_placed() {
        let root = scratch("place");
        let settings = ImageSettings {
            dir: root.join("images"),
            retention: Duration::from_secs(60),
        };
        let dir = settings.prepare().unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(settings.place(None, "a.png").unwrap(), dir.join("a.png"));
        assert_eq!(
            settings.place(Some(&dir.join("new/b.png")), "x").unwrap(),
            dir.join("new/b.png")
        );
        for bad in [
            root.join("elsewhere.png"),
            dir.join("../escape.png"),
            dir.join("missing/../../escape.png"),
            dir.clone(),
            dir.join(SPOOL).join("x.json"),
        ] {
            let err = settings.place(Some(&bad), "x").unwrap_err();
            assert!(
                matches!(err, RetentionError::Outside { .. }),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().contains("privacy.images_dir"), "{err}");
        }
        // A link out of the folder is followed, and refused; a dangling
        // one is not taken for a new name.
        std::os::unix::fs::symlink(&root, dir.join("link")).unwrap();
        assert!(settings.place(Some(&dir.join("link/c.png")), "x").is_err());
        std::os::unix::fs::symlink(root.join("nowhere.png"), dir.join("dangling.png")).unwrap();
        assert!(settings
            .place(Some(&dir.join("dangling.png")), "x")
            .is_err());
        // Folders made below it are the folder owner's (see hand_over).
        settings.make_dirs(&dir.join("a/b")).unwrap();
        assert!(dir.join("a/b").is_dir());
        assert!(settings.make_dirs(&root.join("c")).is_err());
        let slash = ImageSettings {
            dir: PathBuf::from("/"),
            retention: Duration::from_secs(60),
        };
        assert!(matches!(slash.prepare(), Err(RetentionError::Root)));
    }

    #[test]
    fn what_root_makes_in_the_folder_goes_to_the_folder_s_owner() {
        use std::os::unix::fs::MetadataExt;
        let root = scratch("owner");
        let ours = std::fs::metadata(&root).unwrap().uid();
        if ours == 0 {
            std::os::unix::fs::chown(&root, Some(4321), Some(4321)).unwrap();
        }
        let settings = ImageSettings {
            dir: root.join("images"),
            retention: Duration::from_secs(60),
        };
        let dir = settings.prepare().unwrap();
        let record = spool(&dir, &audit("x"), 1).unwrap();
        // As root (CI, an installer) the daemon's folder owner gets them;
        // as anyone else nothing changes.
        let expected = if ours == 0 { 4321 } else { ours };
        for path in [&dir, &dir.join(SPOOL), &record] {
            assert_eq!(std::fs::metadata(path).unwrap().uid(), expected, "{path:?}");
        }
    }

    #[test]
    fn a_sweep_deletes_only_old_images_at_any_depth_and_nothing_else() {
        let dir = scratch("sweep");
        let outside = scratch("sweep-outside");
        std::fs::create_dir_all(dir.join("aim/older")).unwrap();
        std::fs::create_dir_all(dir.join("old-capture")).unwrap();
        for name in [
            "old.png",
            "new.png",
            "old-capture/frame-000001.png",
            "old-capture/frames.jsonl",
            "aim/frame-000001.png",
            "aim/older/frame-000001.jpg",
            "pole.toml",
        ] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        std::fs::write(outside.join("old.png"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
        spool(&dir, &audit("kept"), 1).unwrap();
        let day = Duration::from_secs(86_400);
        let now = SystemTime::now();
        let old = std::fs::FileTimes::new().set_modified(now - 2 * day);
        for name in [
            "old.png",
            "old-capture/frame-000001.png",
            "old-capture/frames.jsonl",
            "aim/older/frame-000001.jpg",
            "pole.toml",
        ] {
            std::fs::File::options()
                .append(true)
                .open(dir.join(name))
                .unwrap()
                .set_times(old)
                .unwrap();
        }
        std::fs::File::open(outside.join("old.png"))
            .unwrap()
            .set_times(old)
            .unwrap();
        let swept = sweep(&dir, day, now);
        let mut deleted: Vec<_> = swept
            .deleted
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().to_path_buf())
            .collect();
        deleted.sort();
        let expected: Vec<PathBuf> = [
            "aim/older/frame-000001.jpg",
            "old-capture/frame-000001.png",
            "old-capture/frames.jsonl",
            "old.png",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(deleted, expected);
        assert!(swept.failed.is_empty(), "{:?}", swept.failed);
        // Emptied folders go; the rest stays: new images, other files,
        // what a link points to.
        assert!(!dir.join("old-capture").exists() && !dir.join("aim/older").exists());
        for kept in ["new.png", "aim/frame-000001.png", "pole.toml"] {
            assert!(dir.join(kept).exists(), "{kept}");
        }
        assert!(outside.join("old.png").exists());
        // The spool is never swept by age, even when old.
        sweep(&dir, Duration::ZERO, now + day);
        assert!(!dir.join("new.png").exists());
        assert_eq!(spooled(&dir).len(), 1);
        assert_eq!(sweep(&dir.join("missing"), day, now), Swept::default());
        assert!(!sweep(Path::new("/"), day, now).failed.is_empty());
    }

    #[test]
    fn spooled_records_come_back_in_order_and_unreadable_ones_are_reported() {
        let dir = scratch("spool");
        let first = spool(&dir, &audit("first"), 10).unwrap();
        spool(&dir, &audit("second"), 20).unwrap();
        std::fs::write(dir.join(SPOOL).join("0000000000030-1.json"), b"{not json").unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&first).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let records = spooled(&dir);
        let details: Vec<_> = records.iter().map(|(_, a)| a.detail.clone()).collect();
        assert_eq!(details[..2], ["first", "second"]);
        assert_eq!(records[2].1.code.as_deref(), Some("spool_unreadable"));
        assert!(
            records[2].1.detail.contains("0000000000030-1.json"),
            "{}",
            records[2].1.detail
        );
    }
}
