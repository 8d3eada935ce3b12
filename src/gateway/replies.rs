//! Streamed assistant replies (contract §6): deltas are released in `seq`
//! order without gaps or repeats, and the text so far is kept so a late
//! subscriber starts from it. Pure; the item released with each delta is
//! whatever the caller attaches (the registry attaches the ready frame).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Deltas held while an earlier one is missing. Past this many, or past
/// [`GAP_WAIT`], the missing delta is given up: upstream publishes deltas
/// fire-and-forget, so one can be lost for good, and a reply that stalls
/// forever is worse than one with a hole (its `ai.reply.completed` carries
/// the full text anyway).
pub const MAX_HELD: usize = 32;
pub const GAP_WAIT: Duration = Duration::from_secs(1);
/// A reply's text stops growing past this; the snapshot says `truncated`.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// The fields of an `ai.reply.delta` record's data the gateway reads.
#[derive(Debug, Deserialize)]
pub struct DeltaData {
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub user_id: Uuid,
    pub seq: u64,
    pub delta: String,
}

/// The fields of an `ai.reply.completed` record's data the gateway reads.
#[derive(Debug, Deserialize)]
pub struct CompletedData {
    pub message_id: Uuid,
    pub user_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub user_id: Uuid,
    pub seq: u64,
    pub delta: String,
}

/// What a late subscriber gets for one reply in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplySoFar {
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub user_id: Uuid,
    /// The last delta included in `content`; the stream goes on after it.
    pub seq: u64,
    /// The `seq` of the next delta expected (`seq + 1`).
    pub next_seq: u64,
    /// The text so far.
    pub content: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

struct Held<T> {
    delta: String,
    item: T,
    at: Instant,
}

struct Reply<T> {
    conversation_id: Uuid,
    user_id: Uuid,
    text: String,
    truncated: bool,
    next_seq: u64,
    last_seq: Option<u64>,
    held: BTreeMap<u64, Held<T>>,
    touched: Instant,
}

impl<T> Reply<T> {
    fn accept(&mut self, seq: u64, delta: &str) {
        if self.text.len() + delta.len() <= MAX_TEXT_BYTES {
            self.text.push_str(delta);
        } else {
            self.truncated = true;
        }
        self.last_seq = Some(seq);
        self.next_seq = seq + 1;
    }

    fn release_ready(&mut self, out: &mut Vec<T>) {
        while let Some(h) = self.held.remove(&self.next_seq) {
            self.accept(self.next_seq, &h.delta);
            out.push(h.item);
        }
    }
}

/// The replies in progress on one user's assistant channel.
pub struct Replies<T> {
    by_message: HashMap<Uuid, Reply<T>>,
}

impl<T> Default for Replies<T> {
    fn default() -> Self {
        Replies {
            by_message: HashMap::new(),
        }
    }
}

impl<T> Replies<T> {
    /// Takes one delta; returns the items now deliverable, in `seq` order
    /// (none for a repeat or a delta held behind a gap).
    pub fn on_delta(&mut self, d: Delta, item: T, now: Instant) -> Vec<T> {
        let reply = self
            .by_message
            .entry(d.message_id)
            .or_insert_with(|| Reply {
                conversation_id: d.conversation_id,
                user_id: d.user_id,
                text: String::new(),
                truncated: false,
                next_seq: 0,
                last_seq: None,
                held: BTreeMap::new(),
                touched: now,
            });
        reply.touched = now;
        let mut out = Vec::new();
        if d.seq < reply.next_seq || reply.held.contains_key(&d.seq) {
            return out;
        }
        if d.seq == reply.next_seq {
            reply.accept(d.seq, &d.delta);
            out.push(item);
            reply.release_ready(&mut out);
        } else {
            reply.held.insert(
                d.seq,
                Held {
                    delta: d.delta,
                    item,
                    at: now,
                },
            );
        }
        while let Some((&first, oldest)) = reply.held.first_key_value() {
            if reply.held.len() <= MAX_HELD && now.duration_since(oldest.at) < GAP_WAIT {
                break;
            }
            reply.next_seq = first;
            reply.release_ready(&mut out);
        }
        out
    }

    /// The reply is complete: its state ends, held deltas are superseded.
    pub fn on_completed(&mut self, message_id: &Uuid) {
        self.by_message.remove(message_id);
    }

    pub fn snapshot(&self) -> Vec<ReplySoFar> {
        let mut replies: Vec<ReplySoFar> = self
            .by_message
            .iter()
            .filter_map(|(message_id, r)| {
                let seq = r.last_seq?;
                Some(ReplySoFar {
                    conversation_id: r.conversation_id,
                    message_id: *message_id,
                    user_id: r.user_id,
                    seq,
                    next_seq: seq + 1,
                    content: r.text.clone(),
                    truncated: r.truncated,
                })
            })
            .collect();
        replies.sort_by_key(|r| r.message_id);
        replies
    }

    pub fn is_empty(&self) -> bool {
        self.by_message.is_empty()
    }

    /// Forgets replies that saw no delta for `max_idle` (their completion
    /// was lost or their producer died), so they cannot pin memory.
    pub fn drop_stale(&mut self, now: Instant, max_idle: Duration) {
        self.by_message
            .retain(|_, r| now.duration_since(r.touched) < max_idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(message_id: Uuid, seq: u64) -> Delta {
        Delta {
            conversation_id: Uuid::nil(),
            message_id,
            user_id: Uuid::nil(),
            seq,
            delta: format!("[{seq}]"),
        }
    }

    fn feed(r: &mut Replies<u64>, m: Uuid, seqs: &[u64], now: Instant) -> Vec<u64> {
        seqs.iter()
            .flat_map(|s| r.on_delta(delta(m, *s), *s, now))
            .collect()
    }

    #[test]
    fn in_order_deltas_pass_straight_through() {
        let mut r = Replies::default();
        let m = Uuid::new_v4();
        assert_eq!(feed(&mut r, m, &[0, 1, 2], Instant::now()), vec![0, 1, 2]);
        let snap = r.snapshot();
        assert_eq!((snap[0].seq, snap[0].content.as_str()), (2, "[0][1][2]"));
    }

    #[test]
    fn out_of_order_deltas_wait_for_the_gap_and_repeats_vanish() {
        let mut r = Replies::default();
        let m = Uuid::new_v4();
        let now = Instant::now();
        assert_eq!(feed(&mut r, m, &[0, 2, 3], now), vec![0]);
        assert_eq!(feed(&mut r, m, &[3, 0], now), Vec::<u64>::new());
        assert_eq!(feed(&mut r, m, &[1], now), vec![1, 2, 3]);
        assert_eq!(feed(&mut r, m, &[2, 4], now), vec![4]);
        assert_eq!(r.snapshot()[0].content, "[0][1][2][3][4]");
    }

    #[test]
    fn a_reply_whose_first_delta_is_late_starts_when_it_comes() {
        let mut r = Replies::default();
        let m = Uuid::new_v4();
        let now = Instant::now();
        assert_eq!(feed(&mut r, m, &[1, 2], now), Vec::<u64>::new());
        assert!(r.snapshot().is_empty(), "nothing released yet");
        assert_eq!(feed(&mut r, m, &[0], now), vec![0, 1, 2]);
    }

    #[test]
    fn a_lost_delta_is_given_up_after_the_wait_or_when_too_many_are_held() {
        let mut r = Replies::default();
        let m = Uuid::new_v4();
        let t0 = Instant::now();
        assert_eq!(feed(&mut r, m, &[0, 2], t0), vec![0]);
        assert_eq!(feed(&mut r, m, &[3], t0 + GAP_WAIT), vec![2, 3]);

        let mut r = Replies::default();
        let seqs: Vec<u64> = (1..=MAX_HELD as u64 + 1).collect();
        let released = feed(&mut r, m, &seqs, t0);
        assert_eq!(released, seqs, "overflow skips the gap at seq 0");
    }

    #[test]
    fn completion_ends_the_reply_and_replies_are_independent() {
        let mut r = Replies::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let now = Instant::now();
        feed(&mut r, a, &[0], now);
        feed(&mut r, b, &[0, 1], now);
        assert_eq!(r.snapshot().len(), 2);
        r.on_completed(&a);
        let snap = r.snapshot();
        assert_eq!((snap.len(), snap[0].message_id, snap[0].seq), (1, b, 1));
        r.on_completed(&b);
        assert!(r.is_empty());
    }

    #[test]
    fn stale_replies_are_forgotten() {
        let mut r = Replies::default();
        let now = Instant::now();
        feed(&mut r, Uuid::new_v4(), &[0], now);
        r.drop_stale(now + Duration::from_secs(1), Duration::from_secs(5));
        assert!(!r.is_empty());
        r.drop_stale(now + Duration::from_secs(6), Duration::from_secs(5));
        assert!(r.is_empty());
    }

    #[test]
    fn text_stops_growing_at_the_cap() {
        let mut r: Replies<()> = Replies::default();
        let m = Uuid::new_v4();
        let big = "x".repeat(MAX_TEXT_BYTES);
        let now = Instant::now();
        for (seq, text) in [(0, big.as_str()), (1, "more")] {
            let d = Delta {
                delta: text.to_owned(),
                ..delta(m, seq)
            };
            assert_eq!(r.on_delta(d, (), now).len(), 1);
        }
        let snap = r.snapshot();
        assert_eq!(
            (snap[0].content.len(), snap[0].truncated, snap[0].seq),
            (MAX_TEXT_BYTES, true, 1)
        );
    }
}
