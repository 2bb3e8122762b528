//! The outbox's bookkeeping without the store: which events are held, how
//! many bytes they take, how old they are, and what must go when a limit is
//! reached. Time is passed in, so every rule is checked without sleeping.

use std::collections::BTreeMap;

/// Why events were deleted before the broker had them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The outbox reached its size limit; the oldest made room.
    Overflow,
    /// Events were older than the retention.
    Expired,
}

impl DropReason {
    /// The `reason` field of a `dropped` event.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Overflow => "overflow",
            DropReason::Expired => "expired",
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
    /// Time of the oldest lost event, ms since the Unix epoch.
    pub from_ms: u64,
    /// Time of the newest lost event, ms since the Unix epoch.
    pub to_ms: u64,
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
    /// Events older than this many milliseconds are deleted.
    pub retention_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    bytes: u64,
    time_ms: u64,
    covers: Option<Covers>,
}

/// Held events by id, with their total size.
#[derive(Debug)]
pub struct Ledger {
    entries: BTreeMap<u64, Entry>,
    bytes: u64,
    limits: Limits,
}

impl Ledger {
    pub fn new(limits: Limits) -> Self {
        Self {
            entries: BTreeMap::new(),
            bytes: 0,
            limits,
        }
    }

    /// The limits this ledger enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Records a held event.
    pub fn insert(&mut self, id: u64, bytes: u64, time_ms: u64) {
        self.put(
            id,
            Entry {
                bytes,
                time_ms,
                covers: None,
            },
        );
    }

    /// Records a held `dropped` event reporting `gap`.
    pub fn insert_report(&mut self, id: u64, bytes: u64, time_ms: u64, gap: &Gap) {
        let covers = Some(Covers {
            first_id: gap.first_id,
            count: gap.count,
            from_ms: gap.from_ms,
        });
        self.put(
            id,
            Entry {
                bytes,
                time_ms,
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

    /// Deletes the events older than the retention at `now_ms`.
    pub fn expire(&mut self, now_ms: u64) -> Option<Gap> {
        let cutoff = now_ms.saturating_sub(self.limits.retention_ms);
        self.evict_while(DropReason::Expired, |_, entry| entry.time_ms < cutoff)
    }

    /// Deletes the oldest events until `incoming` more bytes fit.
    pub fn make_room(&mut self, incoming: u64) -> Option<Gap> {
        let max = self.limits.max_bytes;
        let mut bytes = self.bytes;
        self.evict_while(DropReason::Overflow, |_, entry| {
            let over = bytes + incoming > max;
            if over {
                bytes -= entry.bytes;
            }
            over
        })
    }

    fn evict_while(
        &mut self,
        reason: DropReason,
        mut evict: impl FnMut(u64, &Entry) -> bool,
    ) -> Option<Gap> {
        let ids: Vec<u64> = self
            .entries
            .iter()
            .take_while(|(id, entry)| evict(**id, entry))
            .map(|(id, _)| *id)
            .collect();
        let mut gap: Option<Gap> = None;
        for id in ids {
            let entry = self.entries.remove(&id).expect("listed above");
            self.bytes -= entry.bytes;
            let gap = gap.get_or_insert(Gap {
                reason,
                ids: Vec::new(),
                first_id: id,
                last_id: id,
                count: 0,
                from_ms: entry.time_ms,
                to_ms: entry.time_ms,
            });
            gap.ids.push(id);
            gap.count += 1;
            gap.last_id = id;
            gap.from_ms = gap.from_ms.min(entry.time_ms);
            gap.to_ms = gap.to_ms.max(entry.time_ms);
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
            l.insert(id, 100, 1000 + id);
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
        l.insert(1, 100, 0);
        l.insert(2, 100, 0);
        assert!(l.remove(1));
        assert!(!l.remove(1));
        assert_eq!(l.make_room(100), None);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn events_older_than_the_retention_expire_and_younger_ones_stay() {
        let mut l = ledger(u64::MAX, 1000);
        l.insert(5, 10, 100);
        l.insert(6, 10, 900);
        l.insert(7, 10, 1500);
        let gap = l.expire(1901).unwrap();
        assert_eq!(gap.reason, DropReason::Expired);
        assert_eq!(gap.ids, vec![5, 6]);
        assert_eq!(l.expire(1901), None);
        assert_eq!(l.span(), Some((7, 7)));
    }

    #[test]
    fn deleting_a_dropped_report_folds_its_gap_into_the_next_one() {
        let mut l = ledger(300, u64::MAX);
        l.insert(1, 100, 10);
        l.insert(2, 100, 20);
        let first = l.make_room(250).unwrap();
        assert_eq!((first.first_id, first.last_id, first.count), (1, 2, 2));
        l.insert_report(3, 100, 30, &first);
        l.insert(4, 100, 40);
        l.insert(5, 100, 50);
        let second = l.make_room(100).unwrap();
        assert_eq!(second.ids, vec![3]);
        assert_eq!((second.first_id, second.last_id, second.count), (1, 3, 3));
        assert_eq!((second.from_ms, second.to_ms), (10, 30));
    }

    #[test]
    fn an_event_larger_than_the_limit_empties_the_ledger() {
        let mut l = ledger(100, u64::MAX);
        l.insert(1, 60, 0);
        let gap = l.make_room(500).unwrap();
        assert_eq!(gap.ids, vec![1]);
        assert!(l.is_empty());
        assert_eq!(l.bytes(), 0);
    }
}
