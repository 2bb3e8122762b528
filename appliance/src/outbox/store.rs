//! The key-value stores the outbox can sit on: sled (the default) and redb
//! (kept as the measured alternative). Both hold events by id with the next
//! id beside them; writes become durable only on [`Store::flush`].

use std::path::{Path, PathBuf};

/// Which embedded database holds the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// sled 0.34: log-structured; a flush writes the log tail.
    #[default]
    Sled,
    /// redb 2: copy-on-write B-tree; writes commit without fsync
    /// (`Durability::None`), a flush is a durable commit.
    Redb,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sled => "sled",
            Backend::Redb => "redb",
        }
    }
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("redb: {0}")]
    Redb(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the store's files cannot be read as a database at all (as
    /// opposed to a permission, lock or disk problem).
    pub fn is_unreadable(&self) -> bool {
        match self {
            StoreError::Sled(sled::Error::Corruption { .. } | sled::Error::Unsupported(_)) => true,
            StoreError::Redb(text) => text.starts_with("corrupted"),
            _ => false,
        }
    }
}

fn redb_err(err: impl std::fmt::Display) -> StoreError {
    StoreError::Redb(err.to_string())
}

/// redb database errors that mean the file is not a readable database.
fn redb_open_err(err: redb::DatabaseError) -> StoreError {
    match err {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(text)) => {
            StoreError::Redb(format!("corrupted: {text}"))
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::Redb(format!("corrupted: {e}"))
        }
        redb::DatabaseError::UpgradeRequired(v) => {
            StoreError::Redb(format!("corrupted: unknown file format {v}"))
        }
        other => redb_err(other),
    }
}

const EVENTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
const REDB_FILE: &str = "events.redb";

/// Key prefix of sled events (followed by the big-endian id).
const EVENT_PREFIX: u8 = b'e';
/// sled key of the next id.
const NEXT_ID_KEY: &[u8] = b"m:next_id";

fn sled_key(id: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = EVENT_PREFIX;
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

fn sled_id(key: &[u8]) -> Option<u64> {
    (key.len() == 9 && key[0] == EVENT_PREFIX)
        .then(|| u64::from_be_bytes(key[1..].try_into().unwrap()))
}

/// An open store.
pub enum Store {
    Sled(sled::Db),
    Redb(redb::Database),
}

impl Store {
    /// Opens or creates the store in folder `path`.
    pub fn open(path: &Path, backend: Backend) -> Result<Store, StoreError> {
        match backend {
            Backend::Sled => Ok(Store::Sled(
                sled::Config::new().path(path).flush_every_ms(None).open()?,
            )),
            Backend::Redb => {
                std::fs::create_dir_all(path).map_err(|source| StoreError::Io {
                    path: path.to_owned(),
                    source,
                })?;
                let db = redb::Database::create(path.join(REDB_FILE)).map_err(redb_open_err)?;
                let txn = db.begin_write().map_err(redb_err)?;
                txn.open_table(EVENTS).map_err(redb_err)?;
                txn.open_table(META).map_err(redb_err)?;
                txn.commit().map_err(redb_err)?;
                Ok(Store::Redb(db))
            }
        }
    }

    /// Calls `f` with every event, oldest first; stops at its first error.
    pub fn for_each<E: From<StoreError>>(
        &self,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.for_range(1, u64::MAX, usize::MAX, &mut f)
    }

    /// Calls `f` with up to `limit` events with ids in `from..=to`.
    pub fn for_range<E: From<StoreError>>(
        &self,
        from: u64,
        to: u64,
        limit: usize,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut seen = 0;
        match self {
            Store::Sled(db) => {
                for item in db.range(sled_key(from)..=sled_key(to)) {
                    let (key, value) = item.map_err(StoreError::from)?;
                    let Some(id) = sled_id(&key) else { continue };
                    f(id, &value)?;
                    seen += 1;
                    if seen >= limit {
                        break;
                    }
                }
            }
            Store::Redb(db) => {
                let txn = db.begin_read().map_err(redb_err)?;
                let table = txn.open_table(EVENTS).map_err(redb_err)?;
                for item in table.range(from..=to).map_err(redb_err)? {
                    let (key, value) = item.map_err(redb_err)?;
                    f(key.value(), value.value())?;
                    seen += 1;
                    if seen >= limit {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// One event.
    pub fn get(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Store::Sled(db) => Ok(db.get(sled_key(id))?.map(|v| v.to_vec())),
            Store::Redb(db) => {
                let txn = db.begin_read().map_err(redb_err)?;
                let table = txn.open_table(EVENTS).map_err(redb_err)?;
                let value = table.get(id).map_err(redb_err)?;
                Ok(value.map(|v| v.value().to_vec()))
            }
        }
    }

    /// The stored next id, if any was ever stored.
    pub fn next_id(&self) -> Result<Option<u64>, StoreError> {
        match self {
            Store::Sled(db) => Ok(db
                .get(NEXT_ID_KEY)?
                .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))),
            Store::Redb(db) => {
                let txn = db.begin_read().map_err(redb_err)?;
                let table = txn.open_table(META).map_err(redb_err)?;
                let value = table.get("next_id").map_err(redb_err)?;
                Ok(value.map(|v| v.value()))
            }
        }
    }

    /// Inserts and removes events and stores the next id, atomically; not
    /// durable until [`Store::flush`].
    pub fn apply(
        &self,
        inserts: &[(u64, Vec<u8>)],
        removes: &[u64],
        next_id: u64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sled(db) => {
                let mut batch = sled::Batch::default();
                for id in removes {
                    batch.remove(&sled_key(*id));
                }
                for (id, value) in inserts {
                    batch.insert(&sled_key(*id), value.as_slice());
                }
                batch.insert(NEXT_ID_KEY, &next_id.to_be_bytes());
                db.apply_batch(batch)?;
            }
            Store::Redb(db) => {
                let mut txn = db.begin_write().map_err(redb_err)?;
                txn.set_durability(redb::Durability::None);
                {
                    let mut events = txn.open_table(EVENTS).map_err(redb_err)?;
                    for id in removes {
                        events.remove(*id).map_err(redb_err)?;
                    }
                    for (id, value) in inserts {
                        events.insert(*id, value.as_slice()).map_err(redb_err)?;
                    }
                    let mut meta = txn.open_table(META).map_err(redb_err)?;
                    meta.insert("next_id", next_id).map_err(redb_err)?;
                }
                txn.commit().map_err(redb_err)?;
            }
        }
        Ok(())
    }

    /// Removes one event; not durable until [`Store::flush`].
    pub fn remove(&self, id: u64) -> Result<(), StoreError> {
        match self {
            Store::Sled(db) => {
                db.remove(sled_key(id))?;
            }
            Store::Redb(db) => {
                let mut txn = db.begin_write().map_err(redb_err)?;
                txn.set_durability(redb::Durability::None);
                txn.open_table(EVENTS)
                    .map_err(redb_err)?
                    .remove(id)
                    .map_err(redb_err)?;
                txn.commit().map_err(redb_err)?;
            }
        }
        Ok(())
    }

    /// Makes every earlier write durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        match self {
            Store::Sled(db) => {
                db.flush()?;
            }
            Store::Redb(db) => {
                let mut txn = db.begin_write().map_err(redb_err)?;
                txn.set_durability(redb::Durability::Immediate);
                txn.commit().map_err(redb_err)?;
            }
        }
        Ok(())
    }
}
