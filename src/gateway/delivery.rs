//! A socket's outgoing queue, bounded the way a live screen needs it.
//!
//! State messages (the latest row of a call, of an agent's day, of a
//! wallet: `lad_consumers::live::delivery`) are *conflated*: a newer one for
//! the same entity replaces the one still queued, so a socket that falls
//! behind a burst catches up to the latest state instead of replaying every
//! step, and the queue holds at most one entry per entity. Events (a
//! transcript line, a delta, a charge) are never merged: they count against
//! a byte budget, and a socket whose budget is spent on them is cut (4008).
//!
//! The replaced message's slot is left as a hole and the new one goes to the
//! back, so frames still leave in position order; holes are compacted away
//! once they are half the queue. A socket that keeps up (a few frames
//! queued) pays nothing for this: the map of waiting entities is only built
//! once the queue is [`BEHIND_AT`] long, and dropped when it empties.

use axum::extract::ws::Utf8Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// One frame on its way to a socket.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub frame: Utf8Bytes,
    /// The entity of a state message (`None` for events and replies).
    pub key: Option<Arc<str>>,
    /// Its offset in `lad.live.v1`, when it was read from there.
    pub offset: Option<i64>,
}

impl Outgoing {
    /// A frame that is never merged: replies, errors, events.
    pub fn event(frame: impl Into<Utf8Bytes>) -> Outgoing {
        Outgoing {
            frame: frame.into(),
            key: None,
            offset: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Replaced a queued message for the same entity.
    Conflated,
    /// Refused: the events queued would exceed the budget.
    OverBudget,
}

/// Holes tolerated before a compaction is considered.
const MIN_HOLES_TO_COMPACT: usize = 64;
/// Frames queued from which a socket counts as behind and its state
/// messages are merged.
pub const BEHIND_AT: usize = 32;

#[derive(Debug)]
pub struct DeliveryQueue {
    /// `None`: a state message replaced by a newer one.
    slots: VecDeque<Option<Outgoing>>,
    /// The sequence number of `slots[0]`; a slot's number never changes
    /// while it is queued, except in a compaction.
    head: u64,
    /// Entity → the sequence number of its queued message, while the
    /// socket is behind.
    keyed: Option<HashMap<Arc<str>, u64>>,
    behind_at: usize,
    holes: usize,
    event_bytes: usize,
    budget: usize,
}

impl DeliveryQueue {
    /// `budget`: bytes of events that may wait. One event is always
    /// accepted into an empty budget, so a large `subscribed` frame (a big
    /// snapshot) never cuts a socket by itself.
    pub fn new(budget: usize) -> DeliveryQueue {
        DeliveryQueue::behind_from(budget, BEHIND_AT)
    }

    fn behind_from(budget: usize, behind_at: usize) -> DeliveryQueue {
        DeliveryQueue {
            slots: VecDeque::new(),
            head: 0,
            keyed: None,
            behind_at,
            holes: 0,
            event_bytes: 0,
            budget,
        }
    }

    pub fn push(&mut self, item: Outgoing) -> Pushed {
        let Some(key) = item.key.clone() else {
            let len = item.frame.len();
            if self.event_bytes > 0 && self.event_bytes + len > self.budget {
                return Pushed::OverBudget;
            }
            self.event_bytes += len;
            self.slots.push_back(Some(item));
            return Pushed::Queued;
        };
        if self.keyed.is_none() && self.slots.len() + 1 >= self.behind_at {
            self.index_entities();
        }
        let seq = self.head + self.slots.len() as u64;
        let replaced = match self.keyed.as_mut().and_then(|k| k.insert(key, seq)) {
            Some(old) => {
                self.slots[(old - self.head) as usize] = None;
                self.holes += 1;
                true
            }
            None => false,
        };
        self.slots.push_back(Some(item));
        self.compact_if_sparse();
        if replaced {
            Pushed::Conflated
        } else {
            Pushed::Queued
        }
    }

    pub fn pop(&mut self) -> Option<Outgoing> {
        while let Some(slot) = self.slots.pop_front() {
            let seq = self.head;
            self.head += 1;
            let Some(item) = slot else {
                self.holes -= 1;
                continue;
            };
            match (&item.key, &mut self.keyed) {
                (Some(key), Some(keyed)) => {
                    if keyed.get(key) == Some(&seq) {
                        keyed.remove(key);
                    }
                }
                (Some(_), None) => {}
                (None, _) => self.event_bytes -= item.frame.len(),
            }
            if self.slots.is_empty() {
                // Caught up: no longer behind.
                self.keyed = None;
            }
            return Some(item);
        }
        None
    }

    /// Messages waiting (holes not counted).
    pub fn len(&self) -> usize {
        self.slots.len() - self.holes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of events waiting (what the budget bounds).
    pub fn event_bytes(&self) -> usize {
        self.event_bytes
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Everything queued, in order, leaving the queue empty.
    pub fn drain(&mut self) -> impl Iterator<Item = Outgoing> + '_ {
        std::iter::from_fn(move || self.pop())
    }

    /// The socket fell behind: from now on a state message replaces the
    /// one queued for its entity, starting with those already queued.
    fn index_entities(&mut self) {
        let mut keyed = HashMap::new();
        for i in 0..self.slots.len() {
            let Some(Outgoing { key: Some(key), .. }) = &self.slots[i] else {
                continue;
            };
            if let Some(old) = keyed.insert(key.clone(), self.head + i as u64) {
                self.slots[(old - self.head) as usize] = None;
                self.holes += 1;
            }
        }
        self.keyed = Some(keyed);
    }

    fn compact_if_sparse(&mut self) {
        if self.holes < MIN_HOLES_TO_COMPACT || self.holes * 2 < self.slots.len() {
            return;
        }
        self.slots.retain(Option::is_some);
        self.holes = 0;
        if let Some(keyed) = &mut self.keyed {
            for (i, slot) in self.slots.iter().enumerate() {
                if let Some(Outgoing { key: Some(key), .. }) = slot {
                    keyed.insert(key.clone(), self.head + i as u64);
                }
            }
        }
        // A busy socket's queue must not keep a burst's worth of capacity.
        if self.slots.capacity() > 4 * self.slots.len().max(16) {
            self.slots.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(key: &str, text: &str) -> Outgoing {
        Outgoing {
            frame: text.to_owned().into(),
            key: Some(key.into()),
            offset: None,
        }
    }

    fn frames(q: &mut DeliveryQueue) -> Vec<String> {
        q.drain().map(|o| o.frame.as_str().to_owned()).collect()
    }

    #[test]
    fn a_newer_state_replaces_the_queued_one_and_moves_to_the_back() {
        let mut q = DeliveryQueue::behind_from(1024, 1);
        assert_eq!(q.push(state("call/1", "c1 started")), Pushed::Queued);
        assert_eq!(q.push(Outgoing::event("line 1")), Pushed::Queued);
        assert_eq!(q.push(state("call/2", "c2 started")), Pushed::Queued);
        assert_eq!(q.push(state("call/1", "c1 ended")), Pushed::Conflated);
        assert_eq!(q.len(), 3);
        assert_eq!(frames(&mut q), ["line 1", "c2 started", "c1 ended"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_state_already_sent_is_not_replaced() {
        let mut q = DeliveryQueue::behind_from(1024, 1);
        q.push(state("call/1", "a"));
        assert_eq!(q.pop().unwrap().frame.as_str(), "a");
        assert_eq!(q.push(state("call/1", "b")), Pushed::Queued);
        assert_eq!(frames(&mut q), ["b"]);
    }

    #[test]
    fn events_are_bounded_in_bytes_and_state_is_not() {
        let mut q = DeliveryQueue::new(10);
        assert_eq!(q.push(Outgoing::event("123456")), Pushed::Queued);
        assert_eq!(q.push(Outgoing::event("12345")), Pushed::OverBudget);
        assert_eq!(q.push(Outgoing::event("1234")), Pushed::Queued);
        assert_eq!(q.event_bytes(), 10);
        for i in 0..100 {
            assert_eq!(
                q.push(state(&format!("k{i}"), "a state row")),
                Pushed::Queued
            );
        }
        q.pop();
        assert_eq!(q.event_bytes(), 4, "popping frees the budget");
        assert_eq!(q.push(Outgoing::event("123456")), Pushed::Queued);
    }

    #[test]
    fn one_event_fits_an_empty_budget_whatever_its_size() {
        let mut q = DeliveryQueue::new(4);
        assert_eq!(q.push(Outgoing::event("a big snapshot")), Pushed::Queued);
        assert_eq!(q.push(Outgoing::event("x")), Pushed::OverBudget);
    }

    #[test]
    fn a_long_burst_of_one_entity_keeps_one_entry_and_the_order() {
        let mut q = DeliveryQueue::new(1024);
        for i in 0..10_000 {
            q.push(state(&format!("call/{}", i % 3), &format!("{i}")));
            if i % 1000 == 0 {
                q.push(Outgoing::event(format!("e{i}")));
            }
        }
        assert!(q.slots.len() <= 3 + 10 + 2 * MIN_HOLES_TO_COMPACT);
        let out = frames(&mut q);
        assert_eq!(out.len(), 13);
        assert_eq!(&out[10..], ["9997", "9998", "9999"]);
        assert!(out[..10].iter().all(|f| f.starts_with('e')));
        assert!(q.keyed.is_none() && q.holes == 0, "caught up");
    }

    #[test]
    fn a_socket_that_keeps_up_merges_nothing_until_it_falls_behind() {
        let mut q = DeliveryQueue::behind_from(1024, 4);
        q.push(state("call/1", "a"));
        q.push(state("call/1", "b"));
        assert!(q.keyed.is_none(), "two queued: keeping up");
        assert_eq!(q.push(state("call/2", "c")), Pushed::Queued);
        // The fourth makes it behind: what is queued is merged too.
        assert_eq!(q.push(state("call/1", "d")), Pushed::Conflated);
        assert_eq!(frames(&mut q), ["c", "d"]);
        assert!(q.keyed.is_none());
    }
}
