//! The outbox on disk: one SQLite database in WAL mode, holding events by
//! id with the next id beside them; writes become durable only on
//! [`Store::flush`].
//!
//! Every write since the last flush sits in one open transaction, so
//! [`Store::flush`] is one `COMMIT`: SQLite appends the changed pages to
//! its write-ahead log and `fsync`s it (`synchronous = FULL`), and that is
//! the only fsync per commit. The events and the next id share one table
//! (`records`, the next id under key 0), so a pole whose events are
//! acknowledged as fast as they come changes one page per commit. SQLite
//! replaced sled for that: it writes 2 to 7 times fewer bytes per event,
//! which is what wears an SD card, within 1.1 to 3 times a plain
//! append-only file (docs/performance.md).
//!
//! The database is opened with an exclusive lock (`locking_mode =
//! EXCLUSIVE`): a second process (a `luciole events` while the daemon
//! runs) is refused with [`StoreError::Locked`], and SQLite keeps its log
//! index in memory instead of a shared-memory file. The write-ahead log is
//! folded into the database every [`CHECKPOINT_PAGES`] pages and trimmed
//! back to [`WAL_LIMIT`] bytes, so it stays small.
//!
//! A folder holding a store of another kind (sled, which the outbox used
//! before) or a database of a newer layout is unreadable
//! ([`StoreError::is_unreadable`]): the outbox moves it aside.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

/// How long [`Store::open`] waits for a lock held by another handle
/// before giving up with [`StoreError::Locked`].
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// The database file inside the store folder.
pub const DB_FILE: &str = "events.sqlite";
/// Layout of the database this firmware writes (`PRAGMA user_version`).
const LAYOUT: i64 = 1;
/// SQLite's page size. Each commit appends its changed pages to the log
/// and `fsync`s it; with pages of 1 KiB a commit of a few events dirties
/// one or two 4 KiB blocks of the filesystem instead of two or three with
/// 4 KiB pages (whose log frames, 24 bytes longer than a page, straddle
/// blocks): about 40 % fewer bytes written per event (docs/performance.md).
const PAGE_SIZE: u64 = 1024;
/// Pages in the write-ahead log before it is folded into the database.
pub const CHECKPOINT_PAGES: u64 = 256;
/// Size the write-ahead log is trimmed back to after a checkpoint (a log
/// grows past it only while one commit holds more pages).
pub const WAL_LIMIT: u64 = CHECKPOINT_PAGES * (PAGE_SIZE + 24) + 32;
/// Key of the next id in `records` (events have ids from 1).
const NEXT_ID_KEY: i64 = 0;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store is locked by another handle or process (still locked after {0:?})")]
    Locked(Duration),
    /// The folder holds something this firmware cannot read as its store.
    #[error("{0}")]
    Unsupported(String),
    /// A write refused on purpose (unit tests of the write-first rule).
    #[cfg(test)]
    #[error("injected write failure")]
    Injected,
    #[error("cannot sync {path} to disk: {source}")]
    Sync {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the store folder {path}: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    fn code(&self) -> Option<ErrorCode> {
        match self {
            StoreError::Sqlite(err) => err.sqlite_error_code(),
            _ => None,
        }
    }

    /// Whether the store's files cannot be read as a database at all (as
    /// opposed to a permission, lock or disk problem).
    pub fn is_unreadable(&self) -> bool {
        matches!(self, StoreError::Unsupported(_))
            || matches!(
                self.code(),
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
            )
    }

    /// Whether this is a disk error (ENOSPC, EIO, ...): the transaction in
    /// progress is lost, and the outbox reopens the store to learn what
    /// the disk holds.
    pub fn is_disk(&self) -> bool {
        match self {
            // After a failed fsync what reached the disk is unknown.
            StoreError::Sync { .. } | StoreError::Folder { .. } => true,
            #[cfg(test)]
            StoreError::Injected => true,
            _ => matches!(
                self.code(),
                Some(ErrorCode::SystemIoFailure | ErrorCode::DiskFull)
            ),
        }
    }
}

/// Name of the table holding records set aside because they could not be
/// read (kept for diagnosis, bounded by [`ASIDE_MAX`]).
const ASIDE_TABLE: &str = "set_aside";
/// Most records kept set aside; the oldest go first.
pub const ASIDE_MAX: usize = 32;

/// An open store.
pub struct Store {
    inner: Mutex<Inner>,
    file: PathBuf,
    /// Unit tests: every write fails while set.
    #[cfg(test)]
    pub fail_writes: std::sync::atomic::AtomicBool,
}

struct Inner {
    conn: Connection,
    /// Whether a transaction is open (writes since the last flush).
    open: bool,
}

impl Inner {
    /// Runs `f` inside the open transaction (opening one if needed), all of
    /// it or nothing.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        if !self.open {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.open = true;
        }
        self.conn.execute_batch("SAVEPOINT write")?;
        match f(&self.conn) {
            Ok(value) => {
                self.conn.execute_batch("RELEASE write")?;
                Ok(value)
            }
            Err(err) => {
                // SQLite may have rolled the whole transaction back itself
                // (a full disk, an I/O error).
                if self.conn.is_autocommit() {
                    self.open = false;
                } else {
                    let _ = self.conn.execute_batch("ROLLBACK TO write; RELEASE write");
                }
                Err(err)
            }
        }
    }
}

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

fn to_key(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens or creates the store in folder `path`. Nothing written is
    /// durable before [`Store::flush`]. A lock still held after
    /// [`LOCK_WAIT`] is [`StoreError::Locked`] (another daemon is using the
    /// store). `cache_bytes` bounds SQLite's page cache.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        if path.join("conf").exists() && !path.join(DB_FILE).exists() {
            return Err(StoreError::Unsupported(format!(
                "{} holds a sled store of an earlier firmware, not {DB_FILE}",
                path.display()
            )));
        }
        let created = !path.join(DB_FILE).exists();
        std::fs::create_dir_all(path).map_err(|source| StoreError::Folder {
            path: path.to_owned(),
            source,
        })?;
        let file = path.join(DB_FILE);
        let conn = Connection::open(&file)?;
        conn.busy_timeout(LOCK_WAIT)?;
        let store = Store {
            inner: Mutex::new(Inner { conn, open: false }),
            file: file.clone(),
            #[cfg(test)]
            fail_writes: std::sync::atomic::AtomicBool::new(false),
        };
        store.prepare(cache_bytes).map_err(|err| match err {
            StoreError::Sqlite(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) =>
            {
                StoreError::Locked(LOCK_WAIT)
            }
            other => other,
        })?;
        if created {
            // The new database, its name and the folder's must survive a
            // power cut like the events committed into it. A checkpoint
            // writes and fsyncs the database file through SQLite's own
            // handle: opening and closing another handle on that file here
            // would drop this process's lock on it (POSIX locks belong to
            // the process and go with any of its descriptors' close), and a
            // second process could then open the store.
            store
                .inner()
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            sync_path(path)?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_path(parent)?;
            }
        }
        Ok(store)
    }

    /// Settings, the exclusive lock, the layout check and the tables.
    fn prepare(&self, cache_bytes: u64) -> Result<(), StoreError> {
        let inner = self.inner();
        let conn = &inner.conn;
        // Before anything touches the file: the lock mode decides whether
        // the log index lives in shared memory.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        // A new database only: an existing one keeps its page size.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unsupported(format!(
                "{}: SQLite refused write-ahead logging (journal mode {mode})",
                self.file.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", WAL_LIMIT)?;
        conn.pragma_update(None, "cache_size", -((cache_bytes / 1024).max(64) as i64))?;
        // Takes the exclusive lock now, and checks the layout.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let layout: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let result = match layout {
            0 => conn
                .execute_batch(&format!(
                    "CREATE TABLE IF NOT EXISTS records (key INTEGER PRIMARY KEY, body BLOB NOT NULL);
                     CREATE TABLE IF NOT EXISTS {ASIDE_TABLE} (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
                     PRAGMA user_version = {LAYOUT};"
                ))
                .map_err(StoreError::from),
            LAYOUT => Ok(()),
            other => Err(StoreError::Unsupported(format!(
                "{}: database layout {other} is newer than this firmware's ({LAYOUT})",
                self.file.display()
            ))),
        };
        match result {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(err) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(err);
            }
        }
        Ok(())
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
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
        let inner = self.inner();
        let mut stmt = inner
            .conn
            .prepare_cached(
                "SELECT key, body FROM records WHERE key BETWEEN ?1 AND ?2 ORDER BY key LIMIT ?3",
            )
            .map_err(StoreError::from)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = stmt
            .query(params![to_key(from.max(1)), to_key(to), limit])
            .map_err(StoreError::from)?;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            let key: i64 = row.get(0).map_err(StoreError::from)?;
            let body = row.get_ref(1).map_err(StoreError::from)?;
            let bytes = body
                .as_blob()
                .map_err(|e| StoreError::from(rusqlite::Error::from(e)))?;
            f(key as u64, bytes)?;
        }
        Ok(())
    }

    /// One event.
    pub fn get(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = self.inner();
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT body FROM records WHERE key = ?1 AND key > 0")?;
        Ok(stmt.query_row([to_key(id)], |r| r.get(0)).optional()?)
    }

    /// The stored next id, if any was ever stored.
    pub fn next_id(&self) -> Result<Option<u64>, StoreError> {
        let inner = self.inner();
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT body FROM records WHERE key = ?1")?;
        let next: Option<i64> = stmt.query_row([NEXT_ID_KEY], |r| r.get(0)).optional()?;
        Ok(next.map(|n| n as u64))
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
        self.inner().write(|conn| {
            let mut remove = conn.prepare_cached("DELETE FROM records WHERE key = ?1")?;
            for id in removes {
                remove.execute([to_key(*id)])?;
            }
            let mut insert =
                conn.prepare_cached("INSERT OR REPLACE INTO records (key, body) VALUES (?1, ?2)")?;
            for (id, value) in inserts {
                insert.execute(params![to_key(*id), value])?;
            }
            insert.execute(params![NEXT_ID_KEY, to_key(next_id)])?;
            Ok(())
        })?;
        Ok(())
    }

    /// Removes one event; not durable until [`Store::flush`].
    pub fn remove(&self, id: u64) -> Result<(), StoreError> {
        self.writable()?;
        self.inner().write(|conn| {
            conn.prepare_cached("DELETE FROM records WHERE key = ?1")?
                .execute([to_key(id)])
        })?;
        Ok(())
    }

    /// Makes every earlier write durable (one commit, one fsync of the
    /// write-ahead log; nothing when nothing was written).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.writable()?;
        let mut inner = self.inner();
        if !inner.open {
            return Ok(());
        }
        let result = inner.conn.execute_batch("COMMIT");
        if result.is_ok() || inner.conn.is_autocommit() {
            inner.open = false;
        } else {
            // A commit that failed (a disk error) may leave the
            // transaction open: give it up, the outbox reopens the store.
            let _ = inner.conn.execute_batch("ROLLBACK");
            inner.open = !inner.conn.is_autocommit();
        }
        result?;
        Ok(())
    }

    /// Moves an event that cannot be read to the set-aside table (keeping
    /// at most [`ASIDE_MAX`] there, the newest), removing it from the
    /// events. Not durable until [`Store::flush`].
    pub fn set_aside(&self, id: u64, value: &[u8]) -> Result<(), StoreError> {
        self.writable()?;
        self.inner().write(|conn| {
            conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO {ASIDE_TABLE} (id, body) VALUES (?1, ?2)"
            ))?
            .execute(params![to_key(id), value])?;
            conn.prepare_cached(&format!(
                "DELETE FROM {ASIDE_TABLE} WHERE id NOT IN
                 (SELECT id FROM {ASIDE_TABLE} ORDER BY id DESC LIMIT {ASIDE_MAX})"
            ))?
            .execute([])?;
            conn.prepare_cached("DELETE FROM records WHERE key = ?1")?
                .execute([to_key(id)])
        })?;
        Ok(())
    }

    /// Ids of the records set aside, oldest first.
    pub fn set_aside_ids(&self) -> Result<Vec<u64>, StoreError> {
        let inner = self.inner();
        let mut stmt = inner
            .conn
            .prepare_cached(&format!("SELECT id FROM {ASIDE_TABLE} ORDER BY id"))?;
        let ids = stmt
            .query_map([], |r| r.get::<_, i64>(0))?
            .map(|id| id.map(|id| id as u64))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(ids)
    }

    /// The store's files' real size on disk: the database and its
    /// write-ahead log.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        let mut wal = self.file.clone().into_os_string();
        wal.push("-wal");
        Ok([self.file.as_os_str(), wal.as_os_str()]
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum())
    }

    /// Bytes of the database's pages in use (not the free pages SQLite
    /// keeps for reuse, nor the write-ahead log, at most about
    /// [`WAL_LIMIT`]): what grows with the events held.
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        let inner = self.inner();
        let pages: i64 = inner
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))?;
        let free: i64 = inner
            .conn
            .pragma_query_value(None, "freelist_count", |r| r.get(0))?;
        Ok((pages - free).max(0) as u64 * PAGE_SIZE)
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
