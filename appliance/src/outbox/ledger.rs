//! The outbox's bookkeeping without the store: which events are held, how
//! many bytes they take, how old they are, and what must go when a limit is
//! reached. Time is passed in, so every rule is checked without sleeping.
//!
//! Two times are kept per event: its wall-clock time (what a `dropped`
//! event reports) and its age time on the monotonic boot clock of this
//! boot (what retention measures; see `outbox::clock`). Deletions are
//! planned first ([`Ledger::plan`]) and applied ([`Ledger::forget`]) only
//! once the store has taken the write, so a failed write changes nothing.

use std::collections::BTreeMap;

/// Why events were deleted before the broker had them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The outbox reached its size limit; the oldest made room.
    Overflow,
    /// Events were older than the retention.
    Expired,
    /// A stored event could not be read (newer firmware's format, damaged
    /// bytes) and was set aside.
    Unreadable,
}

impl DropReason {
    /// The `reason` field of a `dropped` event.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Overflow => "overflow",
            DropReason::Expired => "expired",
            DropReason::Unreadable => "unreadable",
        }
    }
}

/// Events deleted in one go: what a `dropped` event reports. When an
/// earlier `dropped` event is itself deleted, the gap it reported is folded
/// into this one, so no loss goes unreported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub reason: DropReason,
    /// The ids to delete from the store now, oldest first.
    pub ids: Vec<u64>,
    /// Smallest id lost, including gaps folded in.
    pub first_id: u64,
    /// Largest id lost.
    pub last_id: u64,
    /// Events lost, including gaps folded in.
    pub count: u64,
    /// Wall-clock time of the oldest lost event, ms since the Unix epoch.
    pub from_ms: u64,
    /// Wall-clock time of the newest lost event, ms since the Unix epoch.
    pub to_ms: u64,
    /// Bytes the deleted events held (not including folded gaps).
    pub freed: u64,
}

/// What a held `dropped` event reports, kept so that deleting it folds its
/// gap into the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Covers {
    first_id: u64,
    count: u64,
    from_ms: u64,
}

/// Size and age limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of stored events (keys and values) held at once.
    pub max_bytes: u64,
    /// Events older than this many milliseconds (on the boot clock) are
    /// deleted.
    pub retention_ms: u64,
}

/// When an event was made: wall clock (reported) and boot clock of this
/// boot (aged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// Wall-clock time, ms since the Unix epoch.
    pub wall_ms: u64,
    /// Monotonic boot-clock time of this boot, ms.
    pub age_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    bytes: u64,
    times: Times,
    covers: Option<Covers>,
}

/// Held events by id, with their total size.
#[derive(Debug)]
pub struct Ledger {
    entries: BTreeMap<u64, Entry>,
    bytes: u64,
    limits: Limits,
    /// Byte cap from the disk (real size on disk, free space), below
    /// `limits.max_bytes` when the disk is the tighter bound.
    disk_cap: u64,
}

impl Ledger {
    pub fn new(limits: Limits) -> Self {
        Self {
            entries: BTreeMap::new(),
            bytes: 0,
            limits,
            disk_cap: u64::MAX,
        }
    }

    /// The limits this ledger enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Sets the byte cap the disk imposes (see [`Ledger::max_bytes`]).
    pub fn set_disk_cap(&mut self, cap: u64) {
        self.disk_cap = cap;
    }

    /// Most bytes held now: the configured limit or the disk's cap,
    /// whichever is smaller.
    pub fn max_bytes(&self) -> u64 {
        self.limits.max_bytes.min(self.disk_cap)
    }

    /// Records a held event.
    pub fn insert(&mut self, id: u64, bytes: u64, times: Times) {
        self.put(
            id,
            Entry {
                bytes,
                times,
                covers: None,
            },
        );
    }

    /// Records a held `dropped` event reporting `gap`.
    pub fn insert_report(&mut self, id: u64, bytes: u64, times: Times, gap: &Gap) {
        let covers = Some(Covers {
            first_id: gap.first_id,
            count: gap.count,
            from_ms: gap.from_ms,
        });
        self.put(
            id,
            Entry {
                bytes,
                times,
                covers,
            },
        );
    }

    fn put(&mut self, id: u64, entry: Entry) {
        if let Some(old) = self.entries.insert(id, entry) {
            self.bytes -= old.bytes;
        }
        self.bytes += entry.bytes;
    }

    /// Forgets an event (acknowledged); false if it was not held.
    pub fn remove(&mut self, id: u64) -> bool {
        match self.entries.remove(&id) {
            Some(entry) => {
                self.bytes -= entry.bytes;
                true
            }
            None => false,
        }
    }

    /// Events held.
    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Oldest and newest held ids.
    pub fn span(&self) -> Option<(u64, u64)> {
        Some((
            *self.entries.keys().next()?,
            *self.entries.keys().next_back()?,
        ))
    }

    /// The age time of an event held (ms on the boot clock).
    pub fn age_time(&self, id: u64) -> Option<u64> {
        self.entries.get(&id).map(|e| e.times.age_ms)
    }

    /// Deletes the events older than the retention at `now_ms` (boot
    /// clock).
    pub fn expire(&mut self, now_ms: u64) -> Option<Gap> {
        let gap = self.plan(now_ms, 0).into_iter().next()?;
        self.forget(&gap);
        Some(gap)
    }

    /// Deletes the oldest events until `incoming` more bytes fit.
    pub fn make_room(&mut self, incoming: u64) -> Option<Gap> {
        let gap = self.plan_overflow(0, self.bytes, incoming)?;
        self.forget(&gap);
        Some(gap)
    }

    /// What must go before an event of `incoming` bytes is written at
    /// `now_ms` (boot clock): first what expired, then the oldest of the
    /// rest until it fits. Nothing is deleted: [`Ledger::forget`] each gap
    /// once the store has taken the write.
    pub fn plan(&self, now_ms: u64, incoming: u64) -> Vec<Gap> {
        let cutoff = now_ms.saturating_sub(self.limits.retention_ms);
        let expired = if now_ms >= self.limits.retention_ms {
            self.select(DropReason::Expired, 0, |_, entry| {
                entry.times.age_ms < cutoff
            })
        } else {
            None
        };
        let (skip, freed) = expired.as_ref().map_or((0, 0), |g| (g.ids.len(), g.freed));
        let overflow = if incoming > 0 {
            self.plan_overflow(skip, self.bytes - freed, incoming)
        } else {
            None
        };
        expired.into_iter().chain(overflow).collect()
    }

    fn plan_overflow(&self, skip: usize, held: u64, incoming: u64) -> Option<Gap> {
        let max = self.max_bytes();
        let mut bytes = held;
        self.select(DropReason::Overflow, skip, |_, entry| {
            let over = bytes + incoming > max;
            if over {
                bytes -= entry.bytes;
            }
            over
        })
    }

    /// Deletes the events of a planned gap.
    pub fn forget(&mut self, gap: &Gap) {
        for id in &gap.ids {
            self.remove(*id);
        }
    }

    fn select(
        &self,
        reason: DropReason,
        skip: usize,
        mut evict: impl FnMut(u64, &Entry) -> bool,
    ) -> Option<Gap> {
        let mut gap: Option<Gap> = None;
        for (&id, entry) in self
            .entries
            .iter()
            .skip(skip)
            .take_while(|(id, entry)| evict(**id, entry))
        {
            let time = entry.times.wall_ms;
            let gap = gap.get_or_insert(Gap {
                reason,
                ids: Vec::new(),
                first_id: id,
                last_id: id,
                count: 0,
                from_ms: time,
                to_ms: time,
                freed: 0,
            });
            gap.ids.push(id);
            gap.count += 1;
            gap.freed += entry.bytes;
            gap.last_id = id;
            gap.from_ms = gap.from_ms.min(time);
            gap.to_ms = gap.to_ms.max(time);
            if let Some(covers) = entry.covers {
                gap.first_id = gap.first_id.min(covers.first_id);
                gap.count += covers.count;
                gap.from_ms = gap.from_ms.min(covers.from_ms);
            }
        }
        gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Times {
        Times {
            wall_ms: ms,
            age_ms: ms,
        }
    }

    fn ledger(max_bytes: u64, retention_ms: u64) -> Ledger {
        Ledger::new(Limits {
            max_bytes,
            retention_ms,
        })
    }

    #[test]
    fn room_is_made_by_deleting_the_oldest_first() {
        let mut l = ledger(300, u64::MAX);
        for id in 1..=3 {
            l.insert(id, 100, t(1000 + id));
        }
        assert_eq!(l.make_room(0), None);
        let gap = l.make_room(150).unwrap();
        assert_eq!(gap.reason, DropReason::Overflow);
        assert_eq!(gap.ids, vec![1, 2]);
        assert_eq!((gap.from_ms, gap.to_ms), (1001, 1002));
        assert_eq!(l.bytes(), 100);
        assert_eq!(l.span(), Some((3, 3)));
    }

    #[test]
    fn acknowledged_events_free_their_bytes_and_leave_no_gap() {
        let mut l = ledger(200, u64::MAX);
        l.insert(1, 100, t(0));
        l.insert(2, 100, t(0));
        assert!(l.remove(1));
        assert!(!l.remove(1));
        assert_eq!(l.make_room(100), None);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn events_older_than_the_retention_expire_and_younger_ones_stay() {
        let mut l = ledger(u64::MAX, 1000);
        l.insert(5, 10, t(100));
        l.insert(6, 10, t(900));
        l.insert(7, 10, t(1500));
        let gap = l.expire(1901).unwrap();
        assert_eq!(gap.reason, DropReason::Expired);
        assert_eq!(gap.ids, vec![5, 6]);
        assert_eq!(l.expire(1901), None);
        assert_eq!(l.span(), Some((7, 7)));
    }

    #[test]
    fn deleting_a_dropped_report_folds_its_gap_into_the_next_one() {
        let mut l = ledger(300, u64::MAX);
        l.insert(1, 100, t(10));
        l.insert(2, 100, t(20));
        let first = l.make_room(250).unwrap();
        assert_eq!((first.first_id, first.last_id, first.count), (1, 2, 2));
        l.insert_report(3, 100, t(30), &first);
        l.insert(4, 100, t(40));
        l.insert(5, 100, t(50));
        let second = l.make_room(100).unwrap();
        assert_eq!(second.ids, vec![3]);
        assert_eq!((second.first_id, second.last_id, second.count), (1, 3, 3));
        assert_eq!((second.from_ms, second.to_ms), (10, 30));
    }

    #[test]
    fn an_event_larger_than_the_limit_empties_the_ledger() {
        let mut l = ledger(100, u64::MAX);
        l.insert(1, 60, t(0));
        let gap = l.make_room(500).unwrap();
        assert_eq!(gap.ids, vec![1]);
        assert!(l.is_empty());
        assert_eq!(l.bytes(), 0);
    }

    #[test]
    fn a_plan_deletes_nothing_until_forgotten_and_counts_expired_bytes_as_freed() {
        let mut l = ledger(300, 1000);
        l.insert(1, 100, t(0));
        l.insert(2, 100, t(1500));
        l.insert(3, 100, t(1600));
        let plan = l.plan(1200, 150);
        assert_eq!(plan.len(), 2);
        assert_eq!(
            (plan[0].reason, plan[0].ids.clone()),
            (DropReason::Expired, vec![1])
        );
        // 200 bytes held after the expiry: 150 more need one more to go.
        assert_eq!(
            (plan[1].reason, plan[1].ids.clone()),
            (DropReason::Overflow, vec![2])
        );
        assert_eq!(l.len(), 3);
        plan.iter().for_each(|g| l.forget(g));
        assert_eq!(l.span(), Some((3, 3)));
    }

    #[test]
    fn the_disk_cap_tightens_the_configured_limit() {
        let mut l = ledger(1000, u64::MAX);
        l.insert(1, 100, t(0));
        l.insert(2, 100, t(0));
        assert!(l.plan(0, 100).is_empty());
        l.set_disk_cap(250);
        assert_eq!(l.max_bytes(), 250);
        assert_eq!(l.plan(0, 100)[0].ids, vec![1]);
    }

    #[test]
    fn retention_measured_before_it_can_have_elapsed_expires_nothing() {
        let mut l = ledger(u64::MAX, 1000);
        l.insert(1, 10, t(0));
        assert!(l.plan(999, 0).is_empty());
        assert_eq!(l.plan(1001, 0)[0].ids, vec![1]);
    }
}
