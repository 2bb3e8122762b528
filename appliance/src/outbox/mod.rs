//! Store-and-forward: events wait on local storage (sled) until the broker
//! has acknowledged them.
//!
//! - **Write before offer.** [`Outbox::push`] gives the event its id and
//!   writes it; [`Outbox::commit`] makes the writes durable. The flusher
//!   thread ([`Outbox::spawn_flusher`]) sleeps until something is written,
//!   then commits `outbox.flush_ms` later, so writes are grouped and an idle
//!   pole does not wake up. Only committed events are offered to the
//!   publisher ([`Outbox::committed_after`]), so an id a consumer has seen
//!   is never reused after a crash; each commit that makes new events
//!   publishable signals the publisher ([`Outbox::on_commit`]). Durability
//!   window: an event pushed less than `flush_ms` (plus one fsync) before a
//!   power cut can be lost; nothing older.
//! - **Delete on acknowledgement.** [`Outbox::ack`] deletes an event once the
//!   broker's PUBACK arrived. A crash before that deletion is durable means
//!   the event is sent again, with the same id.
//! - **Bounded.** Size (`outbox.max_bytes`) and age (`outbox.retention_s`)
//!   limits delete the oldest events; each deletion is followed by a
//!   `dropped` event naming the ids and time range, so the gap is visible.
//! - **Corruption.** A database sled cannot open (or whose records do not
//!   decode) is moved aside (`<path>.corrupt-<unix-seconds>`), a fresh one
//!   is started and an `alert` event (`outbox_corrupted`) says so. A store
//!   that opens but has lost committed data (found through the id
//!   reservation below) raises `outbox_lost_events`.
//!
//! Ids are contiguous: the next id is written in the same atomic batch as
//! the events, so a restart continues where the last committed event left
//! off, and an id given to an event lost in the durability window is given
//! again (that event was never offered, so no consumer saw it). A small
//! reservation file (`id-reservation`, rewritten once per 4096 ids with
//! fsync and rename) records which ids may have been given, so that after
//! corruption ids continue above every id a consumer may have seen.

pub mod ledger;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::events::{self, Alert, Body, Dropped, Event, Origin};
use crate::sync::lock;
use ledger::{Gap, Ledger, Limits};
use store::{Store, StoreError};

/// File inside the store folder recording which ids were surely
/// committed (`floor`) and which may have been given (`ceiling`); rewritten
/// once per [`ID_BLOCK`] ids. It lets a store that lost data, or was
/// replaced after corruption, continue above every id a consumer may have
/// seen.
const RESERVATION_FILE: &str = "id-reservation";
/// Ids reserved per reservation write.
const ID_BLOCK: u64 = 4096;
/// Room kept for the `dropped` event that follows an overflow.
const DROPPED_RESERVE: u64 = 512;

/// What can go wrong with the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("{path}: cannot open the outbox: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("{path}: cannot move the corrupted outbox aside to {aside}: {source}")]
    MoveAside {
        path: PathBuf,
        aside: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: outbox storage failed: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("{path}: stored event {id} is damaged ({len} bytes)")]
    Damaged { path: PathBuf, id: u64, len: usize },
    #[error("{path}: cannot write the id reservation: {source}")]
    Reservation {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no outbox here (has the daemon run with this configuration?)")]
    Missing { path: PathBuf },
    #[error(transparent)]
    Event(#[from] events::EventError),
    /// A store error before the outbox's path is attached (internal).
    #[error("outbox storage failed: {0}")]
    Bare(#[from] StoreError),
}

/// Where the outbox lives and how big it may grow (the `[outbox]`
/// section, validated).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxSettings {
    /// The database folder.
    pub path: PathBuf,
    /// Size and age limits.
    pub limits: Limits,
    /// Longest time between a push and its durable commit.
    pub flush_every: Duration,
}

impl Default for OutboxSettings {
    /// `/var/lib/luciole/outbox`, at most 256 MiB, events kept 24 hours,
    /// committed every 50 ms.
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/lib/luciole/outbox"),
            limits: Limits {
                max_bytes: 256 << 20,
                retention_ms: 24 * 3600 * 1000,
            },
            flush_every: Duration::from_millis(50),
        }
    }
}

/// What `luciole events` prints first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub count: u64,
    pub bytes: u64,
    pub oldest: Option<Event>,
    pub newest: Option<Event>,
}

struct State {
    ledger: Ledger,
    next_id: u64,
    /// Ids below this may have been given (see [`RESERVATION_FILE`]).
    ceiling: u64,
}

/// The event store. Shared between the producers, the flusher and the
/// publisher behind an `Arc`.
pub struct Outbox {
    path: PathBuf,
    db: Store,
    origin: Origin,
    state: Mutex<State>,
    committed: AtomicU64,
    /// Deletions not yet made durable.
    deletions: AtomicBool,
    /// Wakes the flusher when something was written (coalesced: capacity 1).
    written: (Sender<()>, Receiver<()>),
    /// One coalescing channel per [`Outbox::on_commit`] listener.
    commit_listeners: Mutex<Vec<Sender<()>>>,
}

/// Stored value: 8 bytes of time (ms, big-endian) then the JSON event.
fn split_value<'a>(path: &Path, id: u64, value: &'a [u8]) -> Result<(u64, &'a [u8]), OutboxError> {
    if value.len() < 9 {
        return Err(OutboxError::Damaged {
            path: path.to_owned(),
            id,
            len: value.len(),
        });
    }
    Ok((
        u64::from_be_bytes(value[..8].try_into().unwrap()),
        &value[8..],
    ))
}

impl Outbox {
    /// Opens (or creates) the outbox at `settings.path`. A corrupted
    /// database is moved aside and replaced; the `alert` event saying so is
    /// already in the new outbox when this returns.
    pub fn open(settings: &OutboxSettings, origin: Origin) -> Result<Outbox, OutboxError> {
        Self::open_with(settings, origin, true)
    }

    /// Opens an existing outbox to look at it: nothing is created, and a
    /// corrupted one is reported, not moved.
    pub fn inspect(settings: &OutboxSettings, origin: Origin) -> Result<Outbox, OutboxError> {
        if !settings.path.is_dir() {
            return Err(OutboxError::Missing {
                path: settings.path.clone(),
            });
        }
        Self::open_with(settings, origin, false)
    }

    fn open_with(
        settings: &OutboxSettings,
        origin: Origin,
        repair: bool,
    ) -> Result<Outbox, OutboxError> {
        let path = settings.path.clone();
        let reservation = read_reservation(&path);
        let opened = Self::open_db(&path).and_then(|db| Self::check(&path, &db).map(|()| db));
        let (db, aside) = match opened {
            Ok(db) => (db, None),
            Err(err) if !repair => return Err(err),
            Err(OutboxError::Open { source, .. }) if source.is_unreadable() => {
                return Self::repair(settings, origin, reservation)
            }
            Err(OutboxError::Damaged { .. }) => return Self::repair(settings, origin, reservation),
            Err(err) => return Err(err),
        };
        Self::finish_open(settings, origin, db, aside, reservation)
    }

    /// Moves an unreadable store aside and starts a fresh one.
    fn repair(
        settings: &OutboxSettings,
        origin: Origin,
        reservation: Option<Reservation>,
    ) -> Result<Outbox, OutboxError> {
        let path = settings.path.clone();
        let (db, aside) = {
            {
                let aside = PathBuf::from(format!(
                    "{}.corrupt-{}",
                    path.display(),
                    events::now_ms() / 1000
                ));
                std::fs::rename(&path, &aside).map_err(|source| OutboxError::MoveAside {
                    path: path.clone(),
                    aside: aside.clone(),
                    source,
                })?;
                tracing::error!(path = %path.display(), aside = %aside.display(), "outbox corrupted: moved aside, starting a fresh one");
                (Self::open_db(&path)?, Some(aside))
            }
        };
        Self::finish_open(settings, origin, db, aside, reservation)
    }

    /// Rebuilds the bookkeeping from an open store and settles the next id.
    fn finish_open(
        settings: &OutboxSettings,
        origin: Origin,
        db: Store,
        aside: Option<PathBuf>,
        reservation: Option<Reservation>,
    ) -> Result<Outbox, OutboxError> {
        let path = settings.path.clone();
        let store = |source| OutboxError::Store {
            path: path.clone(),
            source,
        };
        let mut ledger = Ledger::new(settings.limits);
        let mut last = 0;
        db.for_each(|id, value| {
            let (time_ms, json) = split_value(&path, id, value)?;
            let bytes = (9 + value.len()) as u64;
            match reported_gap(id, json)? {
                Some(gap) => ledger.insert_report(id, bytes, time_ms, &gap),
                None => ledger.insert(id, bytes, time_ms),
            }
            last = id;
            Ok::<(), OutboxError>(())
        })
        .map_err(|err| match err {
            OutboxError::Bare(source) => store(source),
            other => other,
        })?;
        let stored_next = db.next_id().map_err(store)?;
        let found_next = stored_next.unwrap_or(1).max(last + 1);
        // A store that comes back below what the reservation file proves
        // was committed lost data silently: say so and skip past every id
        // that may have been given.
        let lost = aside.is_none()
            && reservation.is_some_and(|r| stored_next.is_none() || found_next < r.floor);
        let next_id = match reservation {
            Some(r) if lost || aside.is_some() => found_next.max(r.ceiling),
            // Moved aside with no reservation: continue from the clock,
            // above any id a day's worth of events could have reached.
            None if aside.is_some() => found_next.max(events::now_ms() << 10),
            _ => found_next,
        };
        // The store holds its next id durably before the reservation is
        // written: from then on, a store without one has lost data. (A
        // fresh store killed before its first commit would otherwise look
        // like one that lost everything.)
        if stored_next.is_none() {
            db.apply(&[], &[], next_id)
                .and_then(|()| db.flush())
                .map_err(store)?;
        }
        let ceiling = next_id + ID_BLOCK;
        write_reservation(&path, next_id, ceiling)?;
        let outbox = Outbox {
            path: path.clone(),
            db,
            origin,
            state: Mutex::new(State {
                ledger,
                next_id,
                ceiling,
            }),
            committed: AtomicU64::new(next_id - 1),
            deletions: AtomicBool::new(false),
            written: crossbeam_channel::bounded(1),
            commit_listeners: Mutex::new(Vec::new()),
        };
        let alert = match (&aside, lost) {
            (Some(aside), _) => Some(Alert {
                code: "outbox_corrupted".into(),
                message: format!(
                    "the event store could not be read; it was moved to {} and a new one started; events it held were not delivered",
                    aside.display()
                ),
            }),
            (None, true) => Some(Alert {
                code: "outbox_lost_events".into(),
                message: format!(
                    "the event store came back without events it had committed: ids {} to {} may be missing",
                    found_next,
                    next_id - 1
                ),
            }),
            (None, false) => None,
        };
        if let Some(alert) = alert {
            tracing::error!(code = %alert.code, "{}", alert.message);
            outbox.push(Body::Alert(alert))?;
            outbox.commit()?;
        }
        Ok(outbox)
    }

    fn open_db(path: &Path) -> Result<Store, OutboxError> {
        Store::open(path).map_err(|source| OutboxError::Open {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads every stored value once, so damage shows at open, not later.
    fn check(path: &Path, db: &Store) -> Result<(), OutboxError> {
        db.for_each(|id, value| {
            let (_, json) = split_value(path, id, value)?;
            if serde_json::from_slice::<serde::de::IgnoredAny>(json).is_err() {
                return Err(OutboxError::Damaged {
                    path: path.to_owned(),
                    id,
                    len: value.len(),
                });
            }
            Ok(())
        })
        .map_err(|err| match err {
            OutboxError::Bare(source) if source.is_unreadable() => OutboxError::Open {
                path: path.to_owned(),
                source,
            },
            OutboxError::Bare(source) => OutboxError::Store {
                path: path.to_owned(),
                source,
            },
            other => other,
        })
    }

    /// The database folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn store_err(&self, source: StoreError) -> OutboxError {
        OutboxError::Store {
            path: self.path.clone(),
            source,
        }
    }

    /// Puts this outbox's path on a bare store error.
    fn located(&self, err: OutboxError) -> OutboxError {
        match err {
            OutboxError::Bare(source) => self.store_err(source),
            other => other,
        }
    }

    /// Writes an event made now; returns its id. Not durable until the next
    /// [`Outbox::commit`].
    pub fn push(&self, body: Body) -> Result<u64, OutboxError> {
        self.push_at(body, events::now_ms())
    }

    /// Writes an event made at `now_ms`, first deleting what the limits
    /// require and recording each deletion as a `dropped` event.
    pub fn push_at(&self, body: Body, now_ms: u64) -> Result<u64, OutboxError> {
        let mut state = lock(&self.state);
        let mut removes = Vec::new();
        let mut inserts = Vec::new();
        let mut records = Vec::new();
        let expired = state.ledger.expire(now_ms);
        let event = self.origin.event(0, now_ms, body);
        let size = 9 + 8 + event.encode().len() as u64;
        let reserve = if state.ledger.bytes() + size > state.ledger.limits().max_bytes {
            DROPPED_RESERVE
        } else {
            0
        };
        let overflow = state.ledger.make_room(size + reserve);
        for gap in [expired, overflow].into_iter().flatten() {
            removes.extend_from_slice(&gap.ids);
            records.push((Body::Dropped(dropped_body(&gap)), Some(gap)));
        }
        records.push((event.body, None));
        let needed = state.next_id + records.len() as u64;
        if needed > state.ceiling {
            let ceiling = needed + ID_BLOCK;
            write_reservation(&self.path, self.committed() + 1, ceiling)?;
            state.ceiling = ceiling;
        }
        let mut last = 0;
        for (body, gap) in records {
            let id = state.next_id;
            state.next_id += 1;
            let json = self.origin.event(id, now_ms, body).encode();
            let mut value = Vec::with_capacity(8 + json.len());
            value.extend_from_slice(&now_ms.to_be_bytes());
            value.extend_from_slice(&json);
            let bytes = (9 + value.len()) as u64;
            match &gap {
                Some(gap) => state.ledger.insert_report(id, bytes, now_ms, gap),
                None => state.ledger.insert(id, bytes, now_ms),
            }
            inserts.push((id, value));
            last = id;
        }
        self.db
            .apply(&inserts, &removes, state.next_id)
            .map_err(|e| self.store_err(e))?;
        drop(state);
        self.wrote();
        Ok(last)
    }

    /// Wakes the flusher (a signal already waiting is enough).
    fn wrote(&self) {
        let _ = self.written.0.try_send(());
    }

    /// Makes every write so far durable; returns the last durable id. When
    /// that makes new events publishable, every [`Outbox::on_commit`]
    /// listener is signalled.
    pub fn commit(&self) -> Result<u64, OutboxError> {
        let upto = lock(&self.state).next_id - 1;
        self.deletions.store(false, Ordering::SeqCst);
        self.db.flush().map_err(|e| self.store_err(e))?;
        if self.committed.fetch_max(upto, Ordering::SeqCst) < upto {
            lock(&self.commit_listeners).retain(|listener| {
                !matches!(listener.try_send(()), Err(TrySendError::Disconnected(_)))
            });
        }
        Ok(upto)
    }

    /// A channel that receives a signal after each commit that made new
    /// events publishable. Signals coalesce: one waiting signal stands for
    /// any number of commits, so a listener that wakes up reads everything
    /// committed so far ([`Outbox::committed`]). A dropped receiver is
    /// forgotten at the next commit.
    pub fn on_commit(&self) -> Receiver<()> {
        let (signal, listener) = crossbeam_channel::bounded(1);
        lock(&self.commit_listeners).push(signal);
        listener
    }

    /// The last id made durable by [`Outbox::commit`].
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    /// Whether writes (new events or deletions) are waiting for a commit.
    pub fn uncommitted(&self) -> bool {
        self.deletions.load(Ordering::SeqCst) || lock(&self.state).next_id - 1 > self.committed()
    }

    /// Up to `limit` committed events with ids above `after`, oldest first,
    /// as `(id, kind, JSON bytes)`.
    pub fn committed_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String, Vec<u8>)>, OutboxError> {
        let upto = self.committed();
        if after >= upto || limit == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        self.db
            .for_range(after + 1, upto, limit, |id, value| {
                let (_, json) = split_value(&self.path, id, value)?;
                let kind = Event::decode(id, json)?.body.kind().to_string();
                out.push((id, kind, json.to_vec()));
                Ok::<(), OutboxError>(())
            })
            .map_err(|e| self.located(e))?;
        Ok(out)
    }

    /// Deletes an event the broker acknowledged.
    pub fn ack(&self, id: u64) -> Result<(), OutboxError> {
        let mut state = lock(&self.state);
        if state.ledger.remove(id) {
            self.db.remove(id).map_err(|e| self.store_err(e))?;
            // The next commit makes the deletion durable too.
            self.deletions.store(true, Ordering::SeqCst);
            drop(state);
            self.wrote();
        }
        Ok(())
    }

    /// Events held (not yet acknowledged).
    pub fn depth(&self) -> u64 {
        lock(&self.state).ledger.len()
    }

    /// Oldest held id, if any.
    pub fn oldest_id(&self) -> Option<u64> {
        lock(&self.state).ledger.span().map(|(a, _)| a)
    }

    /// Count, size, oldest and newest event.
    pub fn summary(&self) -> Result<Summary, OutboxError> {
        let (count, bytes, span) = {
            let state = lock(&self.state);
            (
                state.ledger.len(),
                state.ledger.bytes(),
                state.ledger.span(),
            )
        };
        let load = |id| self.get(id);
        Ok(Summary {
            count,
            bytes,
            oldest: span.map(|(a, _)| load(a)).transpose()?.flatten(),
            newest: span.map(|(_, b)| load(b)).transpose()?.flatten(),
        })
    }

    /// One held event.
    pub fn get(&self, id: u64) -> Result<Option<Event>, OutboxError> {
        let Some(value) = self.db.get(id).map_err(|e| self.store_err(e))? else {
            return Ok(None);
        };
        let (_, json) = split_value(&self.path, id, &value)?;
        Ok(Some(Event::decode(id, json)?))
    }

    /// Every held event, oldest first.
    pub fn all(&self) -> impl Iterator<Item = Result<Event, OutboxError>> {
        let mut out = Vec::new();
        let scanned = self.db.for_each(|id, value| {
            out.push(
                split_value(&self.path, id, value)
                    .and_then(|(_, json)| Event::decode(id, json).map_err(Into::into)),
            );
            Ok::<(), OutboxError>(())
        });
        if let Err(err) = scanned {
            out.push(Err(self.located(err)));
        }
        out.into_iter()
    }

    /// Starts the thread that commits: it sleeps until something is
    /// written (an event or a deletion), waits `every` so that what comes
    /// meanwhile shares the commit, commits, and sleeps again. Stopping it
    /// ([`Flusher::stop`], or dropping it) commits what is left.
    pub fn spawn_flusher(self: &Arc<Self>, every: Duration) -> std::io::Result<Flusher> {
        let outbox = Arc::clone(self);
        let written = self.written.1.clone();
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("outbox-flush".into())
            .spawn(move || outbox.flush_until(&written, &stopped, every))?;
        Ok(Flusher {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The flusher's loop; `stopped` disconnects when it must end.
    fn flush_until(&self, written: &Receiver<()>, stopped: &Receiver<()>, every: Duration) {
        loop {
            let running = crossbeam_channel::select! {
                recv(written) -> _ => matches!(
                    stopped.recv_timeout(every),
                    Err(RecvTimeoutError::Timeout)
                ),
                recv(stopped) -> _ => false,
            };
            if self.uncommitted() {
                if let Err(err) = self.commit() {
                    tracing::error!("{err}");
                }
            }
            if !running {
                break;
            }
        }
    }
}

/// The running flusher thread of an outbox ([`Outbox::spawn_flusher`]).
pub struct Flusher {
    /// Dropped to stop the thread.
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    /// Commits what is left and ends the thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the outbox flusher panicked");
            }
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.halt();
    }
}

#[derive(Debug, Clone, Copy)]
struct Reservation {
    floor: u64,
    ceiling: u64,
}

fn read_reservation(dir: &Path) -> Option<Reservation> {
    let text = std::fs::read_to_string(dir.join(RESERVATION_FILE)).ok()?;
    let mut words = text.split_whitespace().map(str::parse::<u64>);
    Some(Reservation {
        floor: words.next()?.ok()?,
        ceiling: words.next()?.ok()?,
    })
}

/// Temp file, fsync, rename, fsync of the folder: the file is always
/// whole, and durable when this returns.
fn write_reservation(dir: &Path, floor: u64, ceiling: u64) -> Result<(), OutboxError> {
    use std::io::Write;
    let err = |source| OutboxError::Reservation {
        path: dir.join(RESERVATION_FILE),
        source,
    };
    let tmp = dir.join(format!("{RESERVATION_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    writeln!(file, "{floor} {ceiling}").map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, dir.join(RESERVATION_FILE)).map_err(err)?;
    // The rename is durable only once the folder is synced.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}

/// The gap a stored `dropped` event reports, so that a restart keeps the
/// folding rule of [`ledger::Gap`].
fn reported_gap(id: u64, json: &[u8]) -> Result<Option<Gap>, OutboxError> {
    const MARK: &[u8] = b"\"kind\":\"dropped\"";
    if !json.windows(MARK.len()).any(|w| w == MARK) {
        return Ok(None);
    }
    let Body::Dropped(d) = Event::decode(id, json)?.body else {
        return Ok(None);
    };
    Ok(Some(Gap {
        reason: ledger::DropReason::Overflow,
        ids: Vec::new(),
        first_id: d.first_id,
        last_id: d.last_id,
        count: d.count,
        from_ms: events::parse_rfc3339_ms(&d.from).unwrap_or(0),
        to_ms: events::parse_rfc3339_ms(&d.to).unwrap_or(0),
    }))
}

fn dropped_body(gap: &Gap) -> Dropped {
    Dropped {
        reason: gap.reason.name().into(),
        count: gap.count,
        first_id: gap.first_id,
        last_id: gap.last_id,
        from: events::rfc3339_ms(gap.from_ms),
        to: events::rfc3339_ms(gap.to_ms),
    }
}

#[cfg(test)]
mod tests;
