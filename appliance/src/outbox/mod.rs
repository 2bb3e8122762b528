//! Store-and-forward: events wait on local storage (SQLite, see [`store`])
//! until the broker has acknowledged them.
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
//! - **Write first, then book.** The ledger and the id counter move only
//!   once the store has taken a write: a failed write leaves no phantom
//!   entry and gives no id.
//! - **Delete on acknowledgement.** [`Outbox::ack`] deletes an event once the
//!   broker's PUBACK arrived. The deletion gets no fsync of its own: it
//!   becomes durable with the next commit of new events (or at stop). A
//!   crash before that means the event is sent again, with the same id and
//!   content (the at-least-once contract).
//! - **Bounded.** Every event fits in [`events::MAX_EVENT_BYTES`] (a `flow`
//!   is split into parts, anything else too large is replaced by an
//!   `event_too_large` alert; see [`bound`]). Size (`outbox.max_bytes`,
//!   measured as the store's real size on disk, and the free space of the
//!   filesystem) and age (`outbox.retention_s`, on the boot clock: see
//!   [`clock`]) limits delete the oldest events; each deletion is followed
//!   by a `dropped` event naming the ids and time range, so the gap is
//!   visible.
//! - **Unreadable records.** A stored record this firmware cannot read (a
//!   newer firmware's schema after a rollback, damaged bytes) is set aside
//!   (a bounded table of its own, kept for diagnosis) and a `dropped` event
//!   with reason `unreadable` names its id; everything else is published.
//! - **Disk errors.** A write or commit that fails on the disk (ENOSPC,
//!   EIO) loses the transaction in progress. The outbox then stops
//!   writing, and the flusher reopens the store (retrying with a growing delay while it fails); once
//!   open, an `outbox_disk_error` alert says what failed and how many
//!   events could not be stored meanwhile. The daemon keeps running.
//! - **Corruption.** A database that cannot be read (damaged, of a newer
//!   layout, or a sled store of an earlier firmware) is moved aside
//!   (`<path>.corrupt-<unix-seconds>`, the newest [`KEEP_CORRUPT`] kept,
//!   none longer than `outbox.retention_s`: the daemon sweeps them), a
//!   fresh one is started and an `alert` event (`outbox_corrupted`) says
//!   so. A store that opens but has lost committed data (found through the
//!   id reservation below) raises `outbox_lost_events`.
//!
//! Ids are contiguous: the next id is written in the same atomic batch as
//! the events, so a restart continues where the last committed event left
//! off, and an id given to an event lost in the durability window is given
//! again (that event was never offered, so no consumer saw it). A small
//! reservation file (`id-reservation`, rewritten once per 4096 ids with
//! fsync and rename) records which ids may have been given, so that after
//! corruption ids continue above every id a consumer may have seen.

pub mod bound;
pub mod clock;
pub mod ledger;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::events::{self, Alert, Body, Dropped, Event, Origin};
use crate::sync::lock;
use clock::{BootId, Clock, Now, SystemClock};
use ledger::{DropReason, Gap, Ledger, Limits, Times};
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
/// Corrupted stores moved aside that are kept (the newest).
pub const KEEP_CORRUPT: usize = 2;
/// Free space left on the outbox's filesystem for everything else (logs,
/// the system): the outbox shrinks before the filesystem fills.
pub const FREE_RESERVE: u64 = 4 << 20;
/// Size on disk from which the ratio of the store's size to its events'
/// bytes is used to cap the events ([`disk_cap`]).
pub const SCALE_FROM: u64 = 1 << 20;
/// How often the real size on disk and the free space are measured.
const CAPACITY_EVERY: Duration = Duration::from_secs(1);
/// First and longest delay between attempts to reopen a failed store.
const RECOVER_MIN: Duration = Duration::from_millis(500);
const RECOVER_MAX: Duration = Duration::from_secs(30);
/// A repeated log line is written at most once per this period.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Stored value, current format: this byte, the wall-clock time (ms,
/// big-endian u64), the boot-clock time (ms, u64), the boot id (16 bytes),
/// then the JSON event. The first format (8 bytes of wall-clock time then
/// the JSON) starts with a 0 byte, as every time before the year 10 million
/// does; any other first byte is a format this firmware does not know.
const FORMAT_V1: u8 = 1;
const HEADER_V1: usize = 1 + 8 + 8 + 16;

/// What can go wrong with the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("{path}: cannot open the outbox: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("{path}: the outbox is held by a running daemon (or another `luciole` command); stop it first, or wait")]
    Held { path: PathBuf },
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
    #[error(
        "{path}: the outbox's disk failed ({reason}); events are not stored until it is reopened"
    )]
    Unavailable { path: PathBuf, reason: String },
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
    /// The store's page cache (SQLite's), bytes.
    pub cache_bytes: u64,
}

impl Default for OutboxSettings {
    /// `/var/lib/luciole/outbox`, at most 256 MiB, events kept 24 hours,
    /// committed every second, a 16 MiB page cache.
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/lib/luciole/outbox"),
            limits: Limits {
                max_bytes: 256 << 20,
                retention_ms: 24 * 3600 * 1000,
            },
            flush_every: Duration::from_millis(1000),
            cache_bytes: 16 << 20,
        }
    }
}

/// What `luciole events` prints first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub count: u64,
    pub bytes: u64,
    /// The store's real size on disk.
    pub size_on_disk: u64,
    /// The byte limit in force (the configured one, or less when the disk
    /// is the tighter bound).
    pub max_bytes: u64,
    pub oldest: Option<Event>,
    pub newest: Option<Event>,
    /// Records that could not be read (set aside at the daemon's next
    /// start), and records already set aside.
    pub unreadable: Vec<Unreadable>,
    pub set_aside: Vec<u64>,
}

/// A stored record this firmware cannot read.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Unreadable {
    pub id: u64,
    pub reason: String,
}

/// One held event as `luciole events --json` shows it: the event and how
/// the outbox ages it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Held {
    pub event: Event,
    /// The boot the event was made in (hex), if recorded.
    pub boot: Option<String>,
    /// Whether that boot is this one.
    pub this_boot: bool,
    /// Age on the boot clock (ms); for an event of an earlier boot, the
    /// time since this boot began (a lower bound).
    pub age_ms: u64,
    /// Time left before retention deletes it (ms).
    pub expires_in_ms: u64,
}

/// A decoded stored value.
struct Record<'a> {
    wall_ms: u64,
    stamp: Option<(BootId, u64)>,
    json: &'a [u8],
}

/// Splits a stored value; `Err` says why it cannot be read.
fn read_value(value: &[u8]) -> Result<Record<'_>, String> {
    let u64_at = |at: usize| u64::from_be_bytes(value[at..at + 8].try_into().unwrap());
    match value.first() {
        Some(0) if value.len() >= 9 => Ok(Record {
            wall_ms: u64_at(0),
            stamp: None,
            json: &value[8..],
        }),
        Some(&FORMAT_V1) if value.len() > HEADER_V1 => Ok(Record {
            wall_ms: u64_at(1),
            stamp: Some((value[17..33].try_into().unwrap(), u64_at(9))),
            json: &value[HEADER_V1..],
        }),
        Some(0 | &FORMAT_V1) | None => Err(format!("truncated record ({} bytes)", value.len())),
        Some(other) => Err(format!(
            "stored in a format this firmware does not know ({other})"
        )),
    }
}

/// A stored value as an event, or why it cannot be read.
fn decode_value(id: u64, value: &[u8]) -> Result<(Record<'_>, Event), String> {
    let record = read_value(value)?;
    let event = Event::decode(id, record.json).map_err(|e| match e {
        events::EventError::Decode { source, .. } => {
            format!("not an event this firmware knows: {source}")
        }
    })?;
    if event.schema > events::SCHEMA_VERSION {
        return Err(format!(
            "schema {} is newer than this firmware's {}",
            event.schema,
            events::SCHEMA_VERSION
        ));
    }
    Ok((record, event))
}

fn encode_value(now: &Now, json: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(HEADER_V1 + json.len());
    value.push(FORMAT_V1);
    value.extend_from_slice(&now.wall_ms.to_be_bytes());
    value.extend_from_slice(&now.boot_ms.to_be_bytes());
    value.extend_from_slice(&now.boot);
    value.extend_from_slice(json);
    value
}

/// Bytes an event takes in the ledger: key and value.
fn held_bytes(value: &[u8]) -> u64 {
    (9 + value.len()) as u64
}

/// Events that could not be stored while the disk failed.
#[derive(Debug, Clone, Copy, Default)]
struct Unstored {
    count: u64,
    from_ms: u64,
    to_ms: u64,
}

impl Unstored {
    fn add(&mut self, wall_ms: u64) {
        if self.count == 0 {
            self.from_ms = wall_ms;
        }
        self.count += 1;
        self.to_ms = wall_ms;
    }
}

struct State {
    ledger: Ledger,
    next_id: u64,
    /// Ids below this may have been given (see [`RESERVATION_FILE`]).
    ceiling: u64,
    /// The disk error that stopped writing, until the store is reopened.
    broken: Option<String>,
    unstored: Unstored,
    /// Acknowledged ids whose deletion failed: deleted after a reopen.
    pending_acks: Vec<u64>,
    /// When the disk capacity was last measured.
    measured: Option<Instant>,
    /// The disk cap last written to the log, if it bound.
    logged_cap: Option<u64>,
}

/// The event store. Shared between the producers, the flusher and the
/// publisher behind an `Arc`.
pub struct Outbox {
    path: PathBuf,
    settings: OutboxSettings,
    db: RwLock<Option<Store>>,
    origin: Origin,
    clock: Box<dyn Clock>,
    state: Mutex<State>,
    committed: AtomicU64,
    /// Deletions not yet made durable.
    deletions: AtomicBool,
    /// Wakes the flusher when new events were written (coalesced:
    /// capacity 1). Deletions do not: they ride on the next commit.
    written: (Sender<()>, Receiver<()>),
    /// One coalescing channel per [`Outbox::on_commit`] listener.
    commit_listeners: Mutex<Vec<Sender<()>>>,
    log: LogLimit,
}

/// Rate limit for repeated log lines: one line per [`LOG_EVERY`], with the
/// number of lines held back.
struct LogLimit(Mutex<Option<(Instant, u64)>>);

impl LogLimit {
    fn new() -> Self {
        Self(Mutex::new(None))
    }

    /// Whether to log now, and how many lines were held back before.
    fn allow(&self) -> Option<u64> {
        let mut last = lock(&self.0);
        match &mut *last {
            Some((at, held)) if at.elapsed() < LOG_EVERY => {
                *held += 1;
                None
            }
            slot => {
                let held = slot.as_ref().map_or(0, |(_, held)| *held);
                *slot = Some((Instant::now(), 0));
                Some(held)
            }
        }
    }
}

/// What a scan of the store found.
struct Scan {
    ledger: Ledger,
    last: u64,
    unreadable: Vec<(u64, Vec<u8>, String)>,
}

impl Outbox {
    /// Opens (or creates) the outbox at `settings.path`. A corrupted
    /// database is moved aside and replaced, unreadable records are set
    /// aside; the events saying so are already in the outbox when this
    /// returns.
    pub fn open(settings: &OutboxSettings, origin: Origin) -> Result<Outbox, OutboxError> {
        Self::open_with_clock(settings, origin, Box::new(SystemClock::new()))
    }

    /// [`Outbox::open`] with the given clock.
    pub fn open_with_clock(
        settings: &OutboxSettings,
        origin: Origin,
        clock: Box<dyn Clock>,
    ) -> Result<Outbox, OutboxError> {
        let path = settings.path.clone();
        let reservation = read_reservation(&path);
        match Self::open_db(settings) {
            Ok(db) => Self::finish_open(settings, origin, clock, db, None, reservation),
            Err(OutboxError::Open { source, .. }) if source.is_unreadable() => {
                let (db, aside) = Self::repair(settings)?;
                Self::finish_open(settings, origin, clock, db, Some(aside), reservation)
            }
            Err(err) => Err(err),
        }
    }

    /// Opens an existing outbox to look at it: nothing is created or
    /// changed, and a corrupted one is reported, not moved.
    pub fn inspect(settings: &OutboxSettings, origin: Origin) -> Result<Outbox, OutboxError> {
        if !settings.path.is_dir() {
            return Err(OutboxError::Missing {
                path: settings.path.clone(),
            });
        }
        let clock: Box<dyn Clock> = Box::new(SystemClock::new());
        let db = Self::open_db(settings)?;
        let now = clock.now();
        let scan = Self::scan(settings, &db, &now)?;
        let next_id = db
            .next_id()
            .map_err(|source| OutboxError::Store {
                path: settings.path.clone(),
                source,
            })?
            .unwrap_or(1)
            .max(scan.last + 1);
        Ok(Self::assemble(
            settings,
            origin,
            clock,
            db,
            scan.ledger,
            next_id,
            next_id,
        ))
    }

    /// Moves an unreadable store aside (bounding the older ones) and starts
    /// a fresh one.
    fn repair(settings: &OutboxSettings) -> Result<(Store, PathBuf), OutboxError> {
        let path = &settings.path;
        let aside = PathBuf::from(format!(
            "{}.corrupt-{}",
            path.display(),
            events::now_ms() / 1000
        ));
        std::fs::rename(path, &aside).map_err(|source| OutboxError::MoveAside {
            path: path.clone(),
            aside: aside.clone(),
            source,
        })?;
        tracing::error!(path = %path.display(), aside = %aside.display(), "outbox corrupted: moved aside, starting a fresh one");
        prune_aside(settings);
        Ok((Self::open_db(settings)?, aside))
    }

    /// Reads every stored record: the ledger of the readable ones and the
    /// list of the others.
    fn scan(settings: &OutboxSettings, db: &Store, now: &Now) -> Result<Scan, OutboxError> {
        let path = &settings.path;
        let mut ledger = Ledger::new(settings.limits);
        let mut last = 0;
        let mut unreadable = Vec::new();
        db.for_each(|id, value| {
            last = id;
            match decode_value(id, value) {
                Ok((record, event)) => {
                    let times = Times {
                        wall_ms: record.wall_ms,
                        age_ms: clock::age_time(now, record.stamp),
                    };
                    let bytes = held_bytes(value);
                    match reported_gap(&event) {
                        Some(gap) => ledger.insert_report(id, bytes, times, &gap),
                        None => ledger.insert(id, bytes, times),
                    }
                }
                Err(reason) => unreadable.push((id, value.to_vec(), reason)),
            }
            Ok::<(), StoreError>(())
        })
        .map_err(|source| {
            if source.is_unreadable() {
                OutboxError::Open {
                    path: path.clone(),
                    source,
                }
            } else {
                OutboxError::Store {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        Ok(Scan {
            ledger,
            last,
            unreadable,
        })
    }

    fn assemble(
        settings: &OutboxSettings,
        origin: Origin,
        clock: Box<dyn Clock>,
        db: Store,
        ledger: Ledger,
        next_id: u64,
        ceiling: u64,
    ) -> Outbox {
        Outbox {
            path: settings.path.clone(),
            settings: settings.clone(),
            db: RwLock::new(Some(db)),
            origin,
            clock,
            state: Mutex::new(State {
                ledger,
                next_id,
                ceiling,
                broken: None,
                unstored: Unstored::default(),
                pending_acks: Vec::new(),
                measured: None,
                logged_cap: None,
            }),
            committed: AtomicU64::new(next_id - 1),
            deletions: AtomicBool::new(false),
            written: crossbeam_channel::bounded(1),
            commit_listeners: Mutex::new(Vec::new()),
            log: LogLimit::new(),
        }
    }

    /// Rebuilds the bookkeeping from an open store and settles the next id.
    fn finish_open(
        settings: &OutboxSettings,
        origin: Origin,
        clock: Box<dyn Clock>,
        db: Store,
        aside: Option<PathBuf>,
        reservation: Option<Reservation>,
    ) -> Result<Outbox, OutboxError> {
        let path = settings.path.clone();
        let store = |source| OutboxError::Store {
            path: path.clone(),
            source,
        };
        let now = clock.now();
        let scan = Self::scan(settings, &db, &now)?;
        let last = scan.last;
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
        let outbox = Self::assemble(settings, origin, clock, db, scan.ledger, next_id, ceiling);
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
        }
        if !scan.unreadable.is_empty() {
            outbox.set_aside(scan.unreadable)?;
        }
        outbox.commit()?;
        outbox.measure_capacity(true);
        Ok(outbox)
    }

    fn open_db(settings: &OutboxSettings) -> Result<Store, OutboxError> {
        let path = &settings.path;
        Store::open(path, settings.cache_bytes).map_err(|source| match source {
            StoreError::Locked(_) => OutboxError::Held { path: path.clone() },
            source => OutboxError::Open {
                path: path.clone(),
                source,
            },
        })
    }

    /// The database folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open store (None only during a reopen or after one failed).
    fn db(&self) -> RwLockReadGuard<'_, Option<Store>> {
        self.db.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the store, putting this outbox's path on its error.
    /// (Takes no lock but the store's: callers may hold the state.)
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, OutboxError> {
        let db = self.db();
        let Some(store) = db.as_ref() else {
            return Err(OutboxError::Unavailable {
                path: self.path.clone(),
                reason: "the store is closed for a reopen".into(),
            });
        };
        f(store).map_err(|source| OutboxError::Store {
            path: self.path.clone(),
            source,
        })
    }

    /// Notes a disk error in `result` (which stops writing until the
    /// flusher reopens the store). Not with the state held.
    fn noted<T>(&self, result: Result<T, OutboxError>) -> Result<T, OutboxError> {
        if let Err(OutboxError::Store { source, .. }) = &result {
            if source.is_disk() {
                self.broke(&source.to_string());
            }
        }
        result
    }

    fn is_disk(err: &OutboxError) -> bool {
        matches!(err, OutboxError::Store { source, .. } if source.is_disk())
    }

    fn unavailable(&self) -> OutboxError {
        OutboxError::Unavailable {
            path: self.path.clone(),
            reason: lock(&self.state)
                .broken
                .clone()
                .unwrap_or_else(|| "store closed".into()),
        }
    }

    /// Notes a disk error; the flusher reopens the store.
    fn broke(&self, reason: &str) {
        self.broke_locked(&mut lock(&self.state), reason);
    }

    fn broke_locked(&self, state: &mut State, reason: &str) {
        if state.broken.is_none() {
            tracing::error!(path = %self.path.display(), "outbox disk error: {reason}; writing stopped until the store is reopened");
            state.broken = Some(reason.to_string());
        }
        self.wrote();
    }

    /// Logs a repeated error at most once a minute.
    fn log_limited(&self, err: &dyn std::fmt::Display) {
        if let Some(held) = self.log.allow() {
            if held > 0 {
                tracing::error!("{err} ({held} similar line(s) not shown)");
            } else {
                tracing::error!("{err}");
            }
        }
    }

    /// Whether the store has failed and waits to be reopened.
    pub fn broken(&self) -> bool {
        lock(&self.state).broken.is_some()
    }

    /// Writes an event made now; returns its id. Not durable until the next
    /// [`Outbox::commit`].
    pub fn push(&self, body: Body) -> Result<u64, OutboxError> {
        self.push_at(body, self.clock.now())
    }

    /// Writes an event made at `now`, first deleting what the limits
    /// require and recording each deletion as a `dropped` event. An event
    /// too large is split or replaced ([`bound::bound`]). The ledger and
    /// the id counter move only once the store has taken the write.
    pub fn push_at(&self, body: Body, now: Now) -> Result<u64, OutboxError> {
        let bodies = bound::bound(&self.origin, body, now.wall_ms);
        let mut state = lock(&self.state);
        if state.broken.is_some() {
            state.unstored.add(now.wall_ms);
            drop(state);
            let err = self.unavailable();
            self.log_limited(&err);
            return Err(err);
        }
        let written = self.write_locked(&mut state, bodies, Vec::new(), &now);
        match written {
            Ok(last) => {
                drop(state);
                self.wrote();
                Ok(last)
            }
            Err(err) => {
                if Self::is_disk(&err) {
                    self.broke_locked(&mut state, &err.to_string());
                    state.unstored.add(now.wall_ms);
                }
                Err(err)
            }
        }
    }

    /// Writes `bodies` (with the `dropped` events the limits require) and
    /// removes `extra_removes`, in one batch; then books it all.
    fn write_locked(
        &self,
        state: &mut State,
        bodies: Vec<Body>,
        extra_removes: Vec<u64>,
        now: &Now,
    ) -> Result<u64, OutboxError> {
        let sizes: u64 = bodies
            .iter()
            .map(|b| {
                let json = self.origin.event(u64::MAX, now.wall_ms, b.clone()).encode();
                HEADER_V1 as u64 + 9 + json.len() as u64
            })
            .sum();
        let reserve = if state.ledger.bytes() + sizes > state.ledger.max_bytes() {
            DROPPED_RESERVE
        } else {
            0
        };
        let plan = state.ledger.plan(now.boot_ms, sizes + reserve);
        let mut removes = extra_removes;
        let mut records: Vec<(Body, Option<&Gap>)> = Vec::new();
        for gap in &plan {
            removes.extend_from_slice(&gap.ids);
            records.push((Body::Dropped(dropped_body(gap)), Some(gap)));
        }
        records.extend(bodies.into_iter().map(|b| (b, None)));
        let mut next_id = state.next_id;
        let needed = next_id + records.len() as u64;
        if needed > state.ceiling {
            let ceiling = needed + ID_BLOCK;
            write_reservation(&self.path, self.committed() + 1, ceiling)?;
            state.ceiling = ceiling;
        }
        let mut inserts = Vec::with_capacity(records.len());
        let mut books = Vec::with_capacity(records.len());
        for (body, gap) in records {
            let id = next_id;
            next_id += 1;
            let json = self.origin.event(id, now.wall_ms, body).encode();
            let value = encode_value(now, &json);
            books.push((id, held_bytes(&value), gap));
            inserts.push((id, value));
        }
        self.with_db(|db| db.apply(&inserts, &removes, next_id))?;
        // The store has it: now the bookkeeping.
        state.next_id = next_id;
        for gap in &plan {
            state.ledger.forget(gap);
        }
        for id in &removes {
            state.ledger.remove(*id);
        }
        let times = Times {
            wall_ms: now.wall_ms,
            age_ms: now.boot_ms,
        };
        for (id, bytes, gap) in books {
            match gap {
                Some(gap) => state.ledger.insert_report(id, bytes, times, gap),
                None => state.ledger.insert(id, bytes, times),
            }
        }
        Ok(next_id - 1)
    }

    /// Moves unreadable records to the set-aside tree and writes one
    /// `dropped` event (reason `unreadable`) naming them.
    fn set_aside(&self, records: Vec<(u64, Vec<u8>, String)>) -> Result<(), OutboxError> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let mut gap: Option<Gap> = None;
        for (id, value, reason) in &records {
            if let Err(err) = self.with_db(|db| db.set_aside(*id, value)) {
                if Self::is_disk(&err) {
                    self.broke_locked(&mut state, &err.to_string());
                }
                return Err(err);
            }
            state.ledger.remove(*id);
            let time = read_value(value).map_or(now.wall_ms, |r| r.wall_ms);
            let gap = gap.get_or_insert(Gap {
                reason: DropReason::Unreadable,
                ids: Vec::new(),
                first_id: *id,
                last_id: *id,
                count: 0,
                from_ms: time,
                to_ms: time,
                freed: 0,
            });
            gap.count += 1;
            gap.first_id = gap.first_id.min(*id);
            gap.last_id = gap.last_id.max(*id);
            gap.from_ms = gap.from_ms.min(time);
            gap.to_ms = gap.to_ms.max(time);
            if let Some(held) = self.log.allow() {
                tracing::error!(
                    path = %self.path.display(),
                    id,
                    "stored event cannot be read: {reason}; set aside and reported by a `dropped` event ({held} similar line(s) not shown)"
                );
            }
        }
        if let Some(gap) = gap {
            let body = Body::Dropped(dropped_body(&gap));
            if let Err(err) = self.write_locked(&mut state, vec![body], Vec::new(), &now) {
                if Self::is_disk(&err) {
                    self.broke_locked(&mut state, &err.to_string());
                }
                return Err(err);
            }
        }
        drop(state);
        self.wrote();
        Ok(())
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
        let deletions = self.deletions.swap(false, Ordering::SeqCst);
        if let Err(err) = self.noted(self.with_db(Store::flush)) {
            if deletions {
                self.deletions.store(true, Ordering::SeqCst);
            }
            return Err(err);
        }
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

    /// Whether new events are waiting for a commit (deletions wait for
    /// the next commit of events, or [`Outbox::commit`]).
    pub fn uncommitted(&self) -> bool {
        lock(&self.state).next_id - 1 > self.committed()
    }

    /// Up to `limit` committed events with ids above `after`, oldest first,
    /// as `(id, kind, JSON bytes)`. A record that cannot be read is set
    /// aside (and reported by a `dropped` event) and skipped.
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
        let mut unreadable = Vec::new();
        let read = self.with_db(|db| {
            db.for_range(after + 1, upto, usize::MAX, |id, value| {
                if out.len() >= limit {
                    return Err(Stop::Enough);
                }
                match decode_value(id, value) {
                    Ok((record, event)) => {
                        out.push((id, event.body.kind().to_string(), record.json.to_vec()))
                    }
                    Err(reason) => unreadable.push((id, value.to_vec(), reason)),
                }
                Ok(())
            })
            .or_else(|stop| match stop {
                Stop::Enough => Ok(()),
                Stop::Store(err) => Err(err),
            })
        });
        self.noted(read)?;
        if !unreadable.is_empty() {
            self.set_aside(unreadable)?;
        }
        Ok(out)
    }

    /// Deletes an event the broker acknowledged. The deletion is made
    /// durable by the next commit; it does not wake the flusher.
    pub fn ack(&self, id: u64) -> Result<(), OutboxError> {
        let mut state = lock(&self.state);
        if state.ledger.age_time(id).is_none() {
            return Ok(());
        }
        if state.broken.is_some() {
            state.pending_acks.push(id);
            return Ok(());
        }
        match self.with_db(|db| db.remove(id)) {
            Ok(()) => {
                state.ledger.remove(id);
                self.deletions.store(true, Ordering::SeqCst);
                Ok(())
            }
            Err(err) => {
                state.pending_acks.push(id);
                if Self::is_disk(&err) {
                    self.broke_locked(&mut state, &err.to_string());
                    return Ok(());
                }
                Err(err)
            }
        }
    }

    /// Events held (not yet acknowledged).
    pub fn depth(&self) -> u64 {
        lock(&self.state).ledger.len()
    }

    /// Oldest held id, if any.
    pub fn oldest_id(&self) -> Option<u64> {
        lock(&self.state).ledger.span().map(|(a, _)| a)
    }

    /// Count, size, oldest and newest event, and what cannot be read.
    pub fn summary(&self) -> Result<Summary, OutboxError> {
        let (count, bytes, max_bytes, span) = {
            let state = lock(&self.state);
            (
                state.ledger.len(),
                state.ledger.bytes(),
                state.ledger.max_bytes(),
                state.ledger.span(),
            )
        };
        let load = |id| self.get(id);
        let mut unreadable = Vec::new();
        self.with_db(|db| {
            db.for_each(|id, value| {
                if let Err(reason) = decode_value(id, value) {
                    unreadable.push(Unreadable { id, reason });
                }
                Ok::<(), StoreError>(())
            })
        })?;
        Ok(Summary {
            count,
            bytes,
            size_on_disk: self.with_db(Store::size_on_disk)?,
            max_bytes,
            oldest: span.map(|(a, _)| load(a)).transpose()?.flatten(),
            newest: span.map(|(_, b)| load(b)).transpose()?.flatten(),
            unreadable,
            set_aside: self.with_db(Store::set_aside_ids)?,
        })
    }

    /// One held, readable event.
    pub fn get(&self, id: u64) -> Result<Option<Event>, OutboxError> {
        let Some(value) = self.with_db(|db| db.get(id))? else {
            return Ok(None);
        };
        Ok(decode_value(id, &value).ok().map(|(_, event)| event))
    }

    /// Every held readable event, oldest first.
    pub fn all(&self) -> impl Iterator<Item = Result<Event, OutboxError>> {
        self.held()
            .into_iter()
            .map(|held| held.map(|held| held.event))
    }

    /// Every held readable event, oldest first, with how it is aged.
    pub fn held(&self) -> Vec<Result<Held, OutboxError>> {
        let now = self.clock.now();
        let retention = self.settings.limits.retention_ms;
        let mut out = Vec::new();
        let scanned = self.with_db(|db| {
            db.for_each(|id, value| {
                if let Ok((record, event)) = decode_value(id, value) {
                    let age = now.boot_ms - clock::age_time(&now, record.stamp);
                    out.push(Ok(Held {
                        event,
                        boot: record.stamp.map(|(boot, _)| hex(&boot)),
                        this_boot: record.stamp.is_some_and(|(boot, _)| boot == now.boot),
                        age_ms: age,
                        expires_in_ms: retention.saturating_sub(age),
                    }));
                }
                Ok::<(), StoreError>(())
            })
        });
        if let Err(err) = scanned {
            out.push(Err(err));
        }
        out
    }

    /// Measures the store's real size on disk and the free space of its
    /// filesystem, and tightens the byte limit when the disk is the closer
    /// bound (at most once per [`CAPACITY_EVERY`] unless `now`).
    fn measure_capacity(&self, force: bool) {
        {
            let mut state = lock(&self.state);
            if !force
                && state
                    .measured
                    .is_some_and(|at| at.elapsed() < CAPACITY_EVERY)
            {
                return;
            }
            state.measured = Some(Instant::now());
        }
        let Ok(on_disk) = self.with_db(Store::used_bytes) else {
            return;
        };
        let free = match rustix::fs::statvfs(&self.path) {
            Ok(fs) => fs.f_bavail.saturating_mul(fs.f_frsize),
            Err(_) => u64::MAX,
        };
        let mut state = lock(&self.state);
        let cap = disk_cap(
            state.ledger.bytes(),
            on_disk,
            free,
            self.settings.limits.max_bytes,
        );
        // Logged when it first binds and when it moves by a tenth since.
        let moved = state
            .logged_cap
            .is_none_or(|last| cap.abs_diff(last) > last / 10);
        if cap < self.settings.limits.max_bytes && moved {
            state.logged_cap = Some(cap);
            tracing::warn!(
                on_disk,
                free,
                cap,
                "outbox limited by the disk: {cap} bytes of events held at most"
            );
        }
        state.ledger.set_disk_cap(cap);
    }

    /// Reopens a store that failed; on success, writes an
    /// `outbox_disk_error` alert. Returns whether the store works again.
    fn recover(&self) -> bool {
        let mut state = lock(&self.state);
        let Some(reason) = state.broken.clone() else {
            return true;
        };
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        // The old handle's lock goes with it.
        drop(db.take());
        let store = match Store::open(&self.path, self.settings.cache_bytes) {
            Ok(store) => store,
            Err(err) => {
                // Not through the shared limiter: the failure that broke
                // the store has just used it, and the retry delay (growing
                // to RECOVER_MAX) already bounds these lines.
                tracing::error!("{}: cannot reopen the outbox: {err}", self.path.display());
                return false;
            }
        };
        let now = self.clock.now();
        let scan = match Self::scan(&self.settings, &store, &now) {
            Ok(scan) => scan,
            Err(err) => {
                tracing::error!("{}: cannot reopen the outbox: {err}", self.path.display());
                return false;
            }
        };
        let stored_next = store.next_id().ok().flatten().unwrap_or(1);
        *db = Some(store);
        drop(db);
        // What the store has is the truth: anything written after its last
        // durable commit and lost was never offered.
        let given = state.next_id;
        state.ledger = scan.ledger;
        state.ledger.set_disk_cap(u64::MAX);
        state.next_id = stored_next.max(scan.last + 1).max(self.committed() + 1);
        // Written but not yet durable when the disk failed, and not in the
        // store now: never offered (their ids are given again), but lost.
        let vanished = given.saturating_sub(state.next_id);
        state.broken = None;
        let unstored = std::mem::take(&mut state.unstored);
        let acks = std::mem::take(&mut state.pending_acks);
        let acks: Vec<u64> = acks
            .into_iter()
            .filter(|id| state.ledger.age_time(*id).is_some())
            .collect();
        let mut message = format!("the outbox's disk failed ({reason}); the store was reopened");
        if unstored.count > 0 {
            message += &format!(
                "; {} event(s) made from {} to {} could not be stored and are lost",
                unstored.count,
                events::rfc3339_ms(unstored.from_ms),
                events::rfc3339_ms(unstored.to_ms)
            );
        }
        if vanished > 0 {
            message += &format!(
                "; {vanished} event(s) written but not yet durable when it failed are lost"
            );
        }
        let alert = Body::Alert(Alert {
            code: "outbox_disk_error".into(),
            message: message.clone(),
        });
        match self.write_locked(&mut state, vec![alert], acks, &now) {
            Ok(_) => {
                drop(state);
                match self.commit() {
                    Ok(_) => {
                        tracing::warn!(path = %self.path.display(), "{message}");
                        self.measure_capacity(true);
                        true
                    }
                    Err(err) => {
                        self.log_limited(&err);
                        let mut state = lock(&self.state);
                        self.broke_locked(&mut state, &err.to_string());
                        state.unstored = unstored;
                        false
                    }
                }
            }
            Err(err) => {
                self.log_limited(&err);
                self.broke_locked(&mut state, &err.to_string());
                state.unstored = unstored;
                false
            }
        }
    }

    /// Starts the thread that commits: it sleeps until something is
    /// written, waits `every` so that what comes meanwhile shares the
    /// commit, commits, and sleeps again. It also measures the disk
    /// capacity and reopens a store that failed. Stopping it
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
        let mut retry = RECOVER_MIN;
        loop {
            if self.broken() {
                let running = matches!(stopped.recv_timeout(retry), Err(RecvTimeoutError::Timeout));
                if self.recover() {
                    retry = RECOVER_MIN;
                } else {
                    retry = (retry * 2).min(RECOVER_MAX);
                }
                if !running {
                    break;
                }
                continue;
            }
            let running = crossbeam_channel::select! {
                recv(written) -> _ => matches!(
                    stopped.recv_timeout(every),
                    Err(RecvTimeoutError::Timeout)
                ),
                recv(stopped) -> _ => false,
            };
            let finish = !running && self.deletions.load(Ordering::SeqCst);
            if self.uncommitted() || finish {
                if let Err(err) = self.commit() {
                    self.log_limited(&err);
                }
            }
            self.measure_capacity(false);
            if !running {
                break;
            }
        }
    }
}

/// Ends a store scan early.
enum Stop {
    Enough,
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(err: StoreError) -> Self {
        Stop::Store(err)
    }
}

/// The byte limit the disk allows: the store may take at most
/// `max_bytes` on disk and must leave [`FREE_RESERVE`] free (room, too,
/// for the store's write-ahead log, [`store::WAL_LIMIT`]); its logical
/// bytes (`held`) are scaled by how much larger it is on disk, once the
/// store is large enough ([`SCALE_FROM`]) for that ratio to mean
/// something: a nearly empty store is mostly its fixed pages.
pub fn disk_cap(held: u64, on_disk: u64, free: u64, max_bytes: u64) -> u64 {
    let allowed = max_bytes.min((on_disk + free).saturating_sub(FREE_RESERVE));
    if on_disk < SCALE_FROM || held == 0 {
        return allowed;
    }
    let cap = (held as u128 * allowed as u128 / on_disk as u128) as u64;
    // Room for at least a few events and their `dropped` report, so the
    // outbox never locks itself out.
    cap.max(4 * (events::MAX_EVENT_BYTES as u64 + DROPPED_RESERVE))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Applies [`prune_corrupt`] with the outbox's own limits: the newest
/// [`KEEP_CORRUPT`], none older than `outbox.retention_s`, now. At each
/// move aside, and by the daemon every minute.
pub fn prune_aside(settings: &OutboxSettings) {
    prune_corrupt(
        &settings.path,
        KEEP_CORRUPT,
        Duration::from_millis(settings.limits.retention_ms),
        events::now_ms() / 1000,
    );
}

/// Deletes all but the newest `keep` `<path>.corrupt-<seconds>` folders,
/// and those moved aside more than `max_age` before `now_s` (Unix seconds):
/// they hold events no older than that limit would have kept either.
pub fn prune_corrupt(path: &Path, keep: usize, max_age: Duration, now_s: u64) {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.corrupt-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    }) else {
        return;
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stamp = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((stamp, e.path()))
        })
        .collect();
    found.sort();
    let excess = found.len().saturating_sub(keep);
    let expired = |stamp: u64| stamp.saturating_add(max_age.as_secs()) < now_s;
    let doomed = found
        .into_iter()
        .enumerate()
        .filter(|(i, (stamp, _))| *i < excess || expired(*stamp))
        .map(|(_, entry)| entry);
    for (_, old) in doomed {
        match std::fs::remove_dir_all(&old) {
            Ok(()) => tracing::warn!(path = %old.display(), "old corrupted outbox deleted"),
            Err(err) => {
                tracing::error!(path = %old.display(), "cannot delete an old corrupted outbox: {err}")
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
fn reported_gap(event: &Event) -> Option<Gap> {
    let Body::Dropped(d) = &event.body else {
        return None;
    };
    Some(Gap {
        reason: DropReason::Overflow,
        ids: Vec::new(),
        first_id: d.first_id,
        last_id: d.last_id,
        count: d.count,
        from_ms: events::parse_rfc3339_ms(&d.from).unwrap_or(0),
        to_ms: events::parse_rfc3339_ms(&d.to).unwrap_or(0),
        freed: 0,
    })
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
