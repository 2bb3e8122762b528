//! Retention for the images written on the pole: installer snapshots and
//! camera captures live only in `privacy.images_dir`, and whatever there is
//! older than `privacy.image_retention_s` is deleted by the next sweep
//! (each `snapshot` and `capture` sweeps before it writes, the daemon at
//! start and every minute).
//!
//! Each image written also leaves a record in the folder's audit spool
//! (`.audit/`): the command cannot write into the outbox of a daemon that
//! may be running, so the daemon turns each record into an `audit` event
//! at its next sweep and deletes it. An image whose record cannot be
//! written is deleted again: there is no image without its audit.

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
    #[error("--out {out}: outside privacy.images_dir ({dir}): images are written only there, where they are deleted after privacy.image_retention_s")]
    Outside { out: PathBuf, dir: PathBuf },
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
    std::os::unix::fs::chown(path, Some(folder.uid()), Some(folder.gid()))
        .map_err(|e| io(path, format!("cannot give it to the folder's owner: {e}")))
}

impl ImageSettings {
    /// Creates the folder (0700, the owner of its parent) if missing and
    /// returns its canonical path.
    pub fn prepare(&self) -> Result<PathBuf, RetentionError> {
        if !self.dir.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .map_err(|e| io(&self.dir, format!("cannot create the images folder: {e}")))?;
            hand_over(&self.dir)?;
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
        while !existing.exists() {
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
}

/// What a sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Images (files or capture folders) deleted.
    pub deleted: Vec<PathBuf>,
    /// Those that could not be deleted, with the reason.
    pub failed: Vec<String>,
}

/// Deletes every entry of `dir` (the audit spool aside) last modified more
/// than `retention` before `now`. A missing folder holds nothing.
pub fn sweep(dir: &Path, retention: Duration, now: SystemTime) -> Swept {
    let mut swept = Swept::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return swept;
    };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_name() == SPOOL {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let modified = meta.modified().unwrap_or(now);
        let age = now.duration_since(modified).unwrap_or_default();
        if age <= retention {
            continue;
        }
        let removed = if meta.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => swept.deleted.push(path),
            Err(err) => swept.failed.push(format!("{}: {err}", path.display())),
        }
    }
    swept
}

/// Records that an image was written: one JSON file in the spool, written
/// whole (temporary file, then renamed) and readable by its owner only.
pub fn spool(dir: &Path, record: &Audit, now_ms: u64) -> Result<PathBuf, RetentionError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let spool = dir.join(SPOOL);
    if !spool.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&spool)
            .map_err(|e| io(&spool, e))?;
        hand_over(&spool)?;
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
    let Ok(entries) = std::fs::read_dir(&spool) else {
        return Vec::new();
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
        // A link out of the folder is followed, and refused.
        std::os::unix::fs::symlink(&root, dir.join("link")).unwrap();
        assert!(settings.place(Some(&dir.join("link/c.png")), "x").is_err());
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
    fn a_sweep_deletes_only_what_is_older_than_the_retention() {
        let dir = scratch("sweep");
        std::fs::write(dir.join("old.png"), b"x").unwrap();
        std::fs::create_dir(dir.join("old-capture")).unwrap();
        std::fs::write(dir.join("old-capture/frame-1.png"), b"x").unwrap();
        std::fs::write(dir.join("new.png"), b"x").unwrap();
        spool(&dir, &audit("kept"), 1).unwrap();
        let day = Duration::from_secs(86_400);
        let now = SystemTime::now();
        let old = std::fs::FileTimes::new().set_modified(now - 2 * day);
        for name in ["old.png", "old-capture"] {
            std::fs::File::open(dir.join(name))
                .unwrap()
                .set_times(old)
                .unwrap();
        }
        let swept = sweep(&dir, day, now);
        let mut deleted: Vec<_> = swept
            .deleted
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        deleted.sort();
        assert_eq!(deleted, ["old-capture", "old.png"]);
        assert!(swept.failed.is_empty());
        assert!(dir.join("new.png").exists());
        // The spool is never swept by age, even when old.
        let swept = sweep(&dir, Duration::ZERO, now + day);
        assert_eq!(swept.deleted, vec![dir.join("new.png")]);
        assert_eq!(spooled(&dir).len(), 1);
        assert_eq!(sweep(&dir.join("missing"), day, now), Swept::default());
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
