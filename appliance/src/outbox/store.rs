//! The outbox on disk: sled, holding events by id with the next id beside
//! them; writes become durable only on [`Store::flush`].
//!
//! sled 0.34's own `flush` writes its log with `sync_file_range`, which
//! neither records the file's new size and blocks (metadata) nor flushes
//! the drive's cache; only its periodic flusher thread, turned off here,
//! calls `fsync`. A power cut then lost everything since the filesystem's
//! last journal commit (ext4: up to 5 s), and on a new store everything,
//! since sled never syncs its `conf` file nor the folder. So
//! [`Store::flush`] follows sled's flush with an `fdatasync` of the log
//! file, and [`Store::open`] syncs sled's files and folders once (found by
//! the power-loss test under QEMU, `tests/hil/faults power`).
//!
//! sled was chosen over redb by measurement (the figures are in
//! `appliance/benches/outbox.rs`): faster durable publishing and backlog
//! drains, about a quarter of the bytes written per event at a pole's pace,
//! and a store a thirtieth of the size for the same backlog.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long [`Store::open`] waits for a lock held by a handle that is
/// still closing. sled releases its file lock only when its last
/// background write finishes, a moment after the handle is dropped, so an
/// immediate reopen in the same process can find it still held.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("the store is locked by another handle or process (still locked after {0:?})")]
    Locked(Duration),
    /// A write refused on purpose (unit tests of the write-first rule).
    #[cfg(test)]
    #[error("injected write failure")]
    Injected,
    #[error("cannot sync {path} to disk: {source}")]
    Sync {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the store's files cannot be read as a database at all (as
    /// opposed to a permission, lock or disk problem).
    pub fn is_unreadable(&self) -> bool {
        matches!(
            self,
            StoreError::Sled(sled::Error::Corruption { .. } | sled::Error::Unsupported(_))
        )
    }

    /// Whether this is a disk error (ENOSPC, EIO, ...). sled keeps such an
    /// error as a permanent state: every later operation of the same
    /// handle fails until the store is opened again.
    pub fn is_disk(&self) -> bool {
        match self {
            StoreError::Sled(sled::Error::Io(io)) => !is_lock_conflict_io(io),
            StoreError::Sled(sled::Error::ReportableBug(_)) => true,
            // After a failed fsync what reached the disk is unknown: treat
            // it like sled's own I/O errors (reopen).
            StoreError::Sync { .. } => true,
            #[cfg(test)]
            StoreError::Injected => true,
            _ => false,
        }
    }
}

/// Whether sled refused to open because another handle holds its file
/// lock. sled reports this only as an I/O error of kind `Other` with a
/// fixed message, so the message is what is matched.
fn is_lock_conflict(err: &sled::Error) -> bool {
    matches!(err, sled::Error::Io(io) if is_lock_conflict_io(io))
}

fn is_lock_conflict_io(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::Other && io.to_string().starts_with("could not acquire lock")
}

/// Name of the tree holding records set aside because they could not be
/// read (kept for diagnosis, bounded by [`ASIDE_MAX`]).
const ASIDE_TREE: &[u8] = b"set-aside";
/// Most records kept set aside; the oldest go first.
pub const ASIDE_MAX: usize = 32;

/// Key prefix of events (followed by the big-endian id).
const EVENT_PREFIX: u8 = b'e';
/// Key of the next id.
const NEXT_ID_KEY: &[u8] = b"m:next_id";

fn event_key(id: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = EVENT_PREFIX;
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

fn event_id(key: &[u8]) -> Option<u64> {
    match key {
        [EVENT_PREFIX, id @ ..] => Some(u64::from_be_bytes(id.try_into().ok()?)),
        _ => None,
    }
}

/// An open store.
pub struct Store {
    db: sled::Db,
    aside: sled::Tree,
    /// Unit tests: every write fails while set.
    #[cfg(test)]
    pub fail_writes: std::sync::atomic::AtomicBool,
    /// sled's log file, synced after each of sled's flushes.
    log: std::fs::File,
    log_path: std::path::PathBuf,
}

/// sled's log file inside the store folder.
const LOG_FILE: &str = "db";

/// `fsync`s a file or folder (a folder: so that the names it holds are
/// durable).
fn sync_path(path: &Path) -> Result<(), StoreError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| StoreError::Sync {
            path: path.to_owned(),
            source,
        })
}

impl Store {
    /// Opens or creates the store in folder `path`. sled never flushes on
    /// its own: [`Store::flush`] decides what is durable.
    /// A lock still held after [`LOCK_WAIT`] is [`StoreError::Locked`]
    /// (another daemon is using the store).
    /// `cache_bytes` is sled's page cache (its default, 1 GiB, is too much
    /// for a small board).
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let started = Instant::now();
        loop {
            let opened = sled::Config::new()
                .path(path)
                .cache_capacity(cache_bytes)
                .flush_every_ms(None)
                .open();
            match opened {
                Ok(db) => {
                    return Store::durable(db, path);
                }
                Err(err) if is_lock_conflict(&err) => {
                    if started.elapsed() >= LOCK_WAIT {
                        return Err(StoreError::Locked(LOCK_WAIT));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Calls `f` with every event, oldest first; stops at its first error.
    pub fn for_each<E: From<StoreError>>(
        &self,
        f: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.for_range(1, u64::MAX, usize::MAX, f)
    }

    /// Calls `f` with up to `limit` events with ids in `from..=to`.
    pub fn for_range<E: From<StoreError>>(
        &self,
        from: u64,
        to: u64,
        limit: usize,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let events = self
            .db
            .range(event_key(from)..=event_key(to))
            .filter_map(|item| match item {
                Ok((key, value)) => event_id(&key).map(|id| Ok((id, value))),
                Err(err) => Some(Err(err)),
            });
        for item in events.take(limit) {
            let (id, value) = item.map_err(StoreError::from)?;
            f(id, &value)?;
        }
        Ok(())
    }

    /// One event.
    pub fn get(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(event_key(id))?.map(|v| v.to_vec()))
    }

    /// The stored next id, if any was ever stored.
    pub fn next_id(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .db
            .get(NEXT_ID_KEY)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    /// Inserts and removes events and stores the next id, atomically; not
    /// durable until [`Store::flush`].
    pub fn apply(
        &self,
        inserts: &[(u64, Vec<u8>)],
        removes: &[u64],
        next_id: u64,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let mut batch = sled::Batch::default();
        for id in removes {
            batch.remove(&event_key(*id));
        }
        for (id, value) in inserts {
            batch.insert(&event_key(*id), value.as_slice());
        }
        batch.insert(NEXT_ID_KEY, &next_id.to_be_bytes());
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// Removes one event; not durable until [`Store::flush`].
    pub fn remove(&self, id: u64) -> Result<(), StoreError> {
        self.writable()?;
        self.db.remove(event_key(id))?;
        Ok(())
    }

    /// Makes every earlier write durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.writable()?;
        self.db.flush()?;
        self.log.sync_data().map_err(|source| StoreError::Sync {
            path: self.log_path.clone(),
            source,
        })
    }

    /// Makes what sled created at open durable: its configuration and log
    /// files, its folders, and the store folder's name in its parent.
    fn durable(db: sled::Db, path: &Path) -> Result<Store, StoreError> {
        let log_path = path.join(LOG_FILE);
        let log = std::fs::File::open(&log_path).map_err(|source| StoreError::Sync {
            path: log_path.clone(),
            source,
        })?;
        for file in [path.join("conf"), log_path.clone(), path.join("blobs")] {
            if file.exists() {
                sync_path(&file)?;
            }
        }
        sync_path(path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_path(parent)?;
        }
        let aside = db.open_tree(ASIDE_TREE)?;
        Ok(Store {
            db,
            aside,
            log,
            log_path,
            #[cfg(test)]
            fail_writes: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Moves an event that cannot be read to the set-aside tree (keeping
    /// at most [`ASIDE_MAX`] there, the newest), removing it from the
    /// events. Not durable until [`Store::flush`].
    pub fn set_aside(&self, id: u64, value: &[u8]) -> Result<(), StoreError> {
        self.writable()?;
        self.aside.insert(id.to_be_bytes(), value)?;
        while self.aside.len() > ASIDE_MAX {
            match self.aside.pop_min()? {
                Some(_) => {}
                None => break,
            }
        }
        self.db.remove(event_key(id))?;
        Ok(())
    }

    /// Ids of the records set aside, oldest first.
    pub fn set_aside_ids(&self) -> Result<Vec<u64>, StoreError> {
        let mut ids = Vec::new();
        for item in self.aside.iter().keys() {
            if let Ok(bytes) = <[u8; 8]>::try_from(item?.as_ref()) {
                ids.push(u64::from_be_bytes(bytes));
            }
        }
        Ok(ids)
    }

    /// The store's real size on disk (its files, not the logical bytes of
    /// its events).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    #[cfg(not(test))]
    fn writable(&self) -> Result<(), StoreError> {
        Ok(())
    }

    #[cfg(test)]
    fn writable(&self) -> Result<(), StoreError> {
        if self.fail_writes.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Injected);
        }
        Ok(())
    }
}
