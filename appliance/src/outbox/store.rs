//! The outbox on disk: sled, holding events by id with the next id beside
//! them; writes become durable only on [`Store::flush`].
//!
//! sled was chosen over redb by measurement (the figures are in
//! `appliance/benches/outbox.rs`): faster durable publishing and backlog
//! drains, about a quarter of the bytes written per event at a pole's pace,
//! and a store a thirtieth of the size for the same backlog.

use std::path::Path;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
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
}

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
}

impl Store {
    /// Opens or creates the store in folder `path`. sled never flushes on
    /// its own: [`Store::flush`] decides what is durable.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            db: sled::Config::new().path(path).flush_every_ms(None).open()?,
        })
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
        self.db.remove(event_key(id))?;
        Ok(())
    }

    /// Makes every earlier write durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}
