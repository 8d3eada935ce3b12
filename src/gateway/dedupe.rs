//! Dropping repeated live records.
//!
//! The outbox relay may publish an outbox row again after a crash (its
//! records keep their ids `"{row}.{i}"`). Within one partition the records
//! of a row arrive in `i` order (the relay's producer is idempotent, so
//! per-partition order holds), so "i at most the largest seen for this row
//! in this partition" means a repeat. Row ids are not monotonic in publish
//! order (ids are drawn at insert, rows publish at commit), which is why
//! this remembers rows rather than a high-water mark.

use lad_consumers::live::OutboxId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

/// The rows seen recently, per partition. A republish comes from the rows
/// of one failed drain (at most 64), so a few thousand rows is ample.
pub struct OutboxIdWindow {
    largest: HashMap<(i32, u64), u32>,
    order: VecDeque<(i32, u64)>,
    capacity: usize,
}

impl OutboxIdWindow {
    pub fn new(capacity: usize) -> OutboxIdWindow {
        OutboxIdWindow {
            largest: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// True the first time; false for a repeat.
    pub fn first_time(&mut self, partition: i32, id: OutboxId) -> bool {
        let key = (partition, id.row);
        if let Some(largest) = self.largest.get_mut(&key) {
            if id.index <= *largest {
                return false;
            }
            *largest = id.index;
            return true;
        }
        self.largest.insert(key, id.index);
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.largest.remove(&old);
            }
        }
        true
    }
}

/// A bounded set that forgets its oldest members.
pub struct RecentSet<K> {
    members: HashSet<K>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Copy + Eq + Hash> RecentSet<K> {
    pub fn new(capacity: usize) -> RecentSet<K> {
        RecentSet {
            members: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn insert(&mut self, k: K) {
        if self.members.insert(k) {
            self.order.push_back(k);
            if self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.members.remove(&old);
                }
            }
        }
    }

    pub fn contains(&self, k: &K) -> bool {
        self.members.contains(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> OutboxId {
        OutboxId::parse(s).unwrap()
    }

    #[test]
    fn a_republished_row_is_dropped_and_new_records_of_it_pass() {
        let mut w = OutboxIdWindow::new(16);
        assert!(w.first_time(0, id("5.0")));
        assert!(w.first_time(0, id("5.2")));
        assert!(
            w.first_time(1, id("5.1")),
            "another partition has its own order"
        );
        assert!(!w.first_time(0, id("5.0")));
        assert!(!w.first_time(0, id("5.2")));
        assert!(!w.first_time(1, id("5.1")));
        assert!(w.first_time(0, id("5.3")));
        // Rows may come out of id order (commit order differs from id order).
        assert!(w.first_time(0, id("4.0")));
        assert!(!w.first_time(0, id("4.0")));
    }

    #[test]
    fn the_window_is_bounded() {
        let mut w = OutboxIdWindow::new(2);
        for row in 0..3 {
            assert!(w.first_time(0, OutboxId { row, index: 0 }));
        }
        assert_eq!(w.largest.len(), 2);
        assert!(w.first_time(0, OutboxId { row: 0, index: 0 }), "forgotten");
    }

    #[test]
    fn recent_sets_forget_the_oldest() {
        let mut s = RecentSet::new(2);
        s.insert(1);
        s.insert(2);
        s.insert(2);
        assert!(s.contains(&1));
        s.insert(3);
        assert!(!s.contains(&1) && s.contains(&2) && s.contains(&3));
    }
}
