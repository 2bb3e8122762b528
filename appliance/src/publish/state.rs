//! The publisher's bookkeeping, without sockets, threads or clock: which
//! events are in flight on the current connection, which packet id each
//! one got, what to offer next, and what an acknowledgement deletes.
//!
//! The I/O loop in [`super`] feeds it what happened (connected, a publish
//! got its packet id, a PUBACK arrived, the connection failed) and asks it
//! what to do ([`Flight::next_offer`]); every rule below is checked by the
//! unit tests at the end of this file without a broker.
//!
//! - **Ordered replay.** On each connection the cursor starts just below
//!   the oldest event still held, so the backlog is offered again from its
//!   oldest event, in id order, and newer events queue behind it.
//! - **Bounded window.** Never more than `window` publishes unacknowledged
//!   (the retained presence message counts as one).
//! - **Committed only.** Nothing above the outbox's committed id is
//!   offered (write before offer).
//! - **Packet ids.** A PUBACK names a packet id, not an event: rumqttc
//!   sends publishes in the order they were queued and reports each packet
//!   id as it goes out, so each offer waits in order until its id is
//!   known.
//! - **One event cannot stall the rest.** An MQTT 3.1.1 broker that will
//!   not take a packet (larger than its own limit) closes the connection
//!   without saying which. After a connection lost before it stayed up
//!   with events in flight, the events it carried are sent again one at a
//!   time; an event that alone in flight loses the connection
//!   [`STRIKES`] times in a row is named by [`Flight::lost`] so that the
//!   publisher sets it aside (and reports it) instead of retrying it
//!   forever.

use std::collections::{HashMap, VecDeque};

/// Connections lost in a row, each right after one event was sent alone,
/// before that event is given up on.
pub const STRIKES: u32 = 3;

/// What one QoS 1 publish carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// The retained presence message (`online` or `offline`).
    Presence,
    /// The event with this outbox id.
    Event(u64),
}

impl Message {
    fn event(&self) -> Option<u64> {
        match self {
            Message::Event(id) => Some(*id),
            Message::Presence => None,
        }
    }
}

/// What to read from the outbox next: up to `limit` committed events with
/// ids above `after`, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub after: u64,
    pub limit: usize,
}

/// The bookkeeping of one publisher across its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flight {
    window: usize,
    connected: bool,
    /// Queued for sending, waiting for their packet id, in queue order.
    unnumbered: VecDeque<Message>,
    /// Sent, waiting for their PUBACK.
    by_pkid: HashMap<u16, Message>,
    /// Highest event id offered on this connection.
    cursor: u64,
    /// After a connection lost before it stayed up: events up to this id
    /// are offered one at a time (0: none).
    careful_until: u64,
    /// The event that was alone in flight when the last connections were
    /// lost, and how many times in a row.
    strikes: Option<(u64, u32)>,
}

impl Flight {
    /// A disconnected publisher allowing `window` unacknowledged publishes
    /// (at least one).
    pub fn new(window: u16) -> Self {
        Self {
            window: usize::from(window.max(1)),
            connected: false,
            unnumbered: VecDeque::new(),
            by_pkid: HashMap::new(),
            cursor: 0,
            careful_until: 0,
            strikes: None,
        }
    }

    /// The broker accepted a connection. Offers start again from the
    /// oldest event the outbox holds (`oldest_held`), or after every
    /// committed one when it holds none.
    pub fn connected(&mut self, oldest_held: Option<u64>, committed: u64) {
        self.forget();
        self.connected = true;
        self.cursor = oldest_held.map_or(committed, |id| id.saturating_sub(1));
    }

    /// The connection failed: whatever was in flight is forgotten, to be
    /// offered again from the oldest held event after reconnecting.
    pub fn failed(&mut self) {
        self.forget();
        self.connected = false;
    }

    /// The connection was lost, after staying up long enough to count as
    /// stable or not (`short_lived`). Like [`Flight::failed`]; besides, a
    /// short-lived connection that had sent events makes the next ones
    /// offer those events one at a time, and an event that was alone in
    /// flight at [`STRIKES`] such losses in a row is returned: the broker
    /// will not take it, and the caller sets it aside.
    pub fn lost(&mut self, short_lived: bool) -> Option<u64> {
        let sent: Vec<u64> = self.by_pkid.values().filter_map(Message::event).collect();
        let mut culprit = None;
        if !short_lived {
            self.careful_until = 0;
            self.strikes = None;
        } else if !sent.is_empty() {
            if let ([id], true) = (sent.as_slice(), self.careful()) {
                let count = match self.strikes {
                    Some((suspect, n)) if suspect == *id => n + 1,
                    _ => 1,
                };
                self.strikes = Some((*id, count));
                if count >= STRIKES {
                    self.strikes = None;
                    culprit = Some(*id);
                }
            }
            self.careful_until = self.careful_until.max(self.cursor);
        }
        self.failed();
        culprit
    }

    /// Offering one event at a time: some events up to `careful_until`
    /// are still to be offered or acknowledged.
    fn careful(&self) -> bool {
        self.careful_until > 0
            && (self.cursor < self.careful_until
                || self
                    .unnumbered
                    .iter()
                    .chain(self.by_pkid.values())
                    .filter_map(Message::event)
                    .any(|id| id <= self.careful_until))
    }

    /// Publishes allowed in flight now.
    fn room(&self) -> usize {
        let window = if self.careful() { 1 } else { self.window };
        window.saturating_sub(self.outstanding())
    }

    fn forget(&mut self) {
        self.unnumbered.clear();
        self.by_pkid.clear();
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Publishes queued or sent and not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        self.unnumbered.len() + self.by_pkid.len()
    }

    /// What to read and offer now, given the outbox's committed id: nothing
    /// while disconnected, with a full window, or with nothing new.
    pub fn next_offer(&self, committed: u64) -> Option<Offer> {
        let room = self.room();
        (self.connected && room > 0 && self.cursor < committed).then_some(Offer {
            after: self.cursor,
            limit: room,
        })
    }

    /// Records that event `id` was queued for publishing. Refused (false,
    /// nothing recorded) while disconnected, with a full window, or for an
    /// id at or below the cursor: offers only move forward.
    pub fn offered(&mut self, id: u64) -> bool {
        if !self.connected || self.room() == 0 || id <= self.cursor {
            return false;
        }
        self.unnumbered.push_back(Message::Event(id));
        self.cursor = id;
        true
    }

    /// Event `id` will not be offered (it was set aside before sending):
    /// the cursor moves past it. Refused (false) while disconnected or for
    /// an id at or below the cursor.
    pub fn skipped(&mut self, id: u64) -> bool {
        if !self.connected || id <= self.cursor {
            return false;
        }
        self.cursor = id;
        true
    }

    /// The broker refused one publish in flight without naming it, and
    /// `still_held` are the packet ids still unacknowledged besides: returns
    /// (and forgets) the events sent whose packet id is not among them.
    pub fn refused(&mut self, still_held: &[u16]) -> Vec<u64> {
        let gone: Vec<u16> = self
            .by_pkid
            .keys()
            .copied()
            .filter(|pkid| !still_held.contains(pkid))
            .collect();
        let mut ids: Vec<u64> = gone
            .into_iter()
            .filter_map(|pkid| self.by_pkid.remove(&pkid)?.event())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Records that the presence message was queued (it is acknowledged
    /// like an event, but deletes nothing).
    pub fn offered_presence(&mut self) {
        if self.connected {
            self.unnumbered.push_back(Message::Presence);
        }
    }

    /// The outbox holds no committed event between the cursor and
    /// `committed` (the last read returned fewer than it could): moves the
    /// cursor there so that nothing is left to offer.
    pub fn reached(&mut self, committed: u64) {
        if self.connected {
            self.cursor = self.cursor.max(committed);
        }
    }

    /// The oldest queued publish went out with packet id `pkid`.
    pub fn sent(&mut self, pkid: u16) {
        if let Some(message) = self.unnumbered.pop_front() {
            self.by_pkid.insert(pkid, message);
        }
    }

    /// The broker acknowledged `pkid`: returns the event to delete, if the
    /// packet carried one. An unknown packet id changes nothing.
    pub fn acked(&mut self, pkid: u16) -> Option<u64> {
        let id = self.by_pkid.remove(&pkid)?.event()?;
        if self.strikes.is_some_and(|(suspect, _)| suspect == id) {
            self.strikes = None;
        }
        Some(id)
    }

    /// Nothing is in flight and everything committed up to `committed` was
    /// offered: a stopping publisher may say goodbye.
    pub fn settled(&self, committed: u64) -> bool {
        self.outstanding() == 0 && self.cursor >= committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offers everything `next_offer` allows from a store holding the
    /// committed ids in `held`, as the I/O loop does; returns the ids.
    fn offer_from(flight: &mut Flight, held: &[u64], committed: u64) -> Vec<u64> {
        let mut offered = Vec::new();
        while let Some(offer) = flight.next_offer(committed) {
            let batch: Vec<u64> = held
                .iter()
                .copied()
                .filter(|id| *id > offer.after && *id <= committed)
                .take(offer.limit)
                .collect();
            for &id in &batch {
                assert!(flight.offered(id));
                offered.push(id);
            }
            if batch.len() < offer.limit {
                flight.reached(committed);
            }
        }
        offered
    }

    /// Numbers every queued publish, as rumqttc does when it sends them.
    fn send_all(flight: &mut Flight, first_pkid: u16) -> Vec<u16> {
        let pkids: Vec<u16> = (first_pkid..).take(flight.unnumbered.len()).collect();
        for &pkid in &pkids {
            flight.sent(pkid);
        }
        pkids
    }

    #[test]
    fn nothing_is_offered_while_disconnected() {
        let mut flight = Flight::new(8);
        assert_eq!(flight.next_offer(10), None);
        assert!(!flight.offered(1));
        flight.offered_presence();
        assert_eq!(flight.outstanding(), 0);
    }

    #[test]
    fn only_committed_events_are_offered_in_id_order() {
        let mut flight = Flight::new(8);
        flight.connected(Some(1), 3);
        assert_eq!(offer_from(&mut flight, &[1, 2, 3, 4, 5], 3), vec![1, 2, 3]);
        assert_eq!(flight.next_offer(3), None);
        assert_eq!(
            flight.next_offer(5),
            Some(Offer { after: 3, limit: 5 }),
            "a commit makes more publishable"
        );
        assert!(!flight.offered(2), "offers only move forward");
    }

    #[test]
    fn the_window_is_never_exceeded() {
        let mut flight = Flight::new(4);
        flight.connected(Some(1), 100);
        flight.offered_presence();
        let held: Vec<u64> = (1..=100).collect();
        assert_eq!(offer_from(&mut flight, &held, 100), vec![1, 2, 3]);
        assert_eq!(flight.outstanding(), 4);
        assert!(!flight.offered(4), "a full window refuses offers");
        let pkids = send_all(&mut flight, 1);
        assert_eq!(flight.acked(pkids[0]), None, "the presence deletes nothing");
        assert_eq!(flight.acked(pkids[1]), Some(1));
        assert_eq!(offer_from(&mut flight, &held, 100), vec![4, 5]);
        assert_eq!(flight.outstanding(), 4);
    }

    #[test]
    fn acknowledgements_name_the_event_their_packet_carried() {
        let mut flight = Flight::new(8);
        flight.connected(Some(7), 9);
        offer_from(&mut flight, &[7, 8, 9], 9);
        flight.sent(40);
        flight.sent(41);
        // Acknowledged out of order, and before the last one got its id.
        assert_eq!(flight.acked(41), Some(8));
        flight.sent(42);
        assert_eq!(flight.acked(40), Some(7));
        assert_eq!(flight.acked(42), Some(9));
        assert_eq!(flight.outstanding(), 0);
    }

    #[test]
    fn an_ack_for_an_unknown_packet_changes_nothing() {
        let mut flight = Flight::new(8);
        flight.connected(Some(1), 2);
        offer_from(&mut flight, &[1, 2], 2);
        flight.sent(1);
        let before = flight.clone();
        assert_eq!(flight.acked(9), None);
        assert_eq!(flight, before);
        assert_eq!(flight.acked(1), Some(1));
        assert_eq!(flight.acked(1), None, "a repeated ack changes nothing");
    }

    #[test]
    fn after_a_failure_the_backlog_is_offered_again_from_the_oldest_held_event() {
        let mut flight = Flight::new(3);
        flight.connected(Some(1), 6);
        let mut held: Vec<u64> = (1..=6).collect();
        assert_eq!(offer_from(&mut flight, &held, 6), vec![1, 2, 3]);
        send_all(&mut flight, 1);
        assert_eq!(flight.acked(1), Some(1));
        held.retain(|id| *id != 1);
        flight.failed();
        assert_eq!(flight.outstanding(), 0, "in-flight state is forgotten");
        assert_eq!(flight.next_offer(6), None);
        assert_eq!(
            flight.acked(2),
            None,
            "acks of the lost connection are void"
        );
        // Reconnected: 2 and 3 were never acknowledged and come first.
        flight.connected(held.first().copied(), 6);
        assert_eq!(offer_from(&mut flight, &held, 6), vec![2, 3, 4]);
    }

    #[test]
    fn an_empty_outbox_offers_only_what_is_committed_after_connecting() {
        let mut flight = Flight::new(8);
        flight.connected(None, 41);
        assert_eq!(flight.next_offer(41), None);
        assert_eq!(offer_from(&mut flight, &[42, 43], 43), vec![42, 43]);
    }

    #[test]
    fn events_deleted_before_their_turn_are_skipped_without_waiting_for_them() {
        let mut flight = Flight::new(8);
        flight.connected(Some(1), 10);
        // 3 to 9 were dropped by the size limit while waiting.
        assert_eq!(offer_from(&mut flight, &[1, 2, 10], 10), vec![1, 2, 10]);
        flight.connected(Some(11), 20);
        assert_eq!(offer_from(&mut flight, &[], 20), Vec::<u64>::new());
        assert_eq!(flight.next_offer(20), None, "the gap does not stall offers");
        assert!(flight.settled(20));
    }

    #[test]
    fn a_refusal_names_the_event_rumqttc_no_longer_holds() {
        let mut flight = Flight::new(8);
        flight.connected(Some(1), 4);
        flight.offered_presence();
        offer_from(&mut flight, &[1, 2, 3, 4], 4);
        send_all(&mut flight, 1);
        assert_eq!(flight.acked(2), Some(1));
        // Presence (1), events 3 (4) and 4 (5) still held: the publish
        // with packet id 3, event 2, was refused.
        assert_eq!(flight.refused(&[1, 4, 5]), vec![2]);
        assert_eq!(flight.outstanding(), 3);
        assert_eq!(flight.refused(&[1, 4, 5]), Vec::<u64>::new());
    }

    #[test]
    fn an_event_set_aside_before_sending_moves_the_cursor_past_it() {
        let mut flight = Flight::new(8);
        assert!(!flight.skipped(1), "not while disconnected");
        flight.connected(Some(1), 3);
        assert!(flight.offered(1));
        assert!(flight.skipped(2));
        assert!(!flight.skipped(2));
        assert_eq!(offer_from(&mut flight, &[1, 2, 3], 3), vec![3]);
        assert_eq!(flight.outstanding(), 2);
    }

    #[test]
    fn a_connection_lost_at_once_sends_its_events_again_one_at_a_time() {
        let mut flight = Flight::new(8);
        flight.connected(Some(1), 10);
        let held: Vec<u64> = (1..=10).collect();
        assert_eq!(offer_from(&mut flight, &held, 10).len(), 8);
        send_all(&mut flight, 1);
        assert_eq!(flight.lost(true), None);
        flight.connected(Some(1), 10);
        assert_eq!(offer_from(&mut flight, &held, 10), vec![1], "one at a time");
        send_all(&mut flight, 1);
        assert_eq!(flight.acked(1), Some(1));
        assert_eq!(offer_from(&mut flight, &held[1..], 10), vec![2]);
        // Past the events of the lost connection, the whole window again.
        for id in 2..8 {
            send_all(&mut flight, id as u16);
            assert_eq!(flight.acked(id as u16), Some(id));
            assert_eq!(
                offer_from(&mut flight, &held[id as usize..], 10),
                vec![id + 1]
            );
        }
        send_all(&mut flight, 8);
        assert_eq!(flight.acked(8), Some(8));
        assert_eq!(offer_from(&mut flight, &held[8..], 10), vec![9, 10]);
    }

    #[test]
    fn an_event_alone_in_flight_at_each_loss_is_named_after_the_strikes() {
        let mut flight = Flight::new(8);
        let held: Vec<u64> = (1..=5).collect();
        flight.connected(Some(1), 5);
        offer_from(&mut flight, &held, 5);
        send_all(&mut flight, 1);
        assert_eq!(flight.lost(true), None, "several in flight: no suspect yet");
        let mut named = None;
        for attempt in 1..=STRIKES {
            flight.connected(Some(1), 5);
            assert_eq!(offer_from(&mut flight, &held, 5), vec![1]);
            send_all(&mut flight, 1);
            named = flight.lost(true);
            if attempt < STRIKES {
                assert_eq!(named, None, "attempt {attempt}");
            }
        }
        assert_eq!(named, Some(1));
    }

    #[test]
    fn losses_of_stable_connections_or_before_anything_was_sent_name_nobody() {
        let mut flight = Flight::new(8);
        for _ in 0..10 {
            flight.connected(Some(1), 1);
            offer_from(&mut flight, &[1], 1);
            send_all(&mut flight, 1);
            assert_eq!(flight.lost(false), None);
            flight.connected(Some(1), 1);
            assert_eq!(flight.lost(true), None, "nothing sent yet");
        }
        // An acknowledgement clears the suspicion.
        for _ in 0..(STRIKES - 1) {
            flight.connected(Some(1), 2);
            offer_from(&mut flight, &[1, 2], 2);
            send_all(&mut flight, 1);
            assert_eq!(flight.lost(true), None);
        }
        flight.connected(Some(1), 2);
        offer_from(&mut flight, &[1, 2], 2);
        send_all(&mut flight, 1);
        assert_eq!(flight.acked(1), Some(1));
        offer_from(&mut flight, &[2], 2);
        send_all(&mut flight, 2);
        assert_eq!(flight.lost(true), None, "event 2 has one strike");
    }

    #[test]
    fn a_publisher_is_settled_once_everything_committed_was_acknowledged() {
        let mut flight = Flight::new(8);
        flight.connected(Some(1), 2);
        flight.offered_presence();
        assert!(!flight.settled(2));
        offer_from(&mut flight, &[1, 2], 2);
        let pkids = send_all(&mut flight, 1);
        for pkid in pkids {
            assert!(!flight.settled(2));
            flight.acked(pkid);
        }
        assert!(flight.settled(2));
        assert!(!flight.settled(3), "a newer commit is still to be offered");
    }
}
