//! The channel registry: channel → subscribers, the recent messages kept for
//! `since` recovery, and (assistant channels) the replies in progress.
//!
//! Every change to a channel happens under that channel's map-shard lock,
//! and nothing awaits under it: a delivery is a push into the subscriber's
//! [`DeliveryQueue`] (conflating state, bounding events in bytes), so a
//! slow client can only lose its own connection (4008), never slow the
//! dispatch.
//!
//! Subscribing without loss or doubles: the subscriber is registered first
//! with a private queue, the snapshot is read (and, for a `since` the ring
//! no longer covers, the missed messages are read back from `lad.live.v1`:
//! [`crate::gateway::replay`]), then — under the lock again — `subscribed`,
//! the replayed messages and the held ones are queued and the private queue
//! goes away. Everything dispatched after registration is therefore
//! delivered exactly once, after the snapshot; a held message the replay
//! already covered (its offset is at most the replay's end) is dropped.

use crate::gateway::dedupe::{OutboxIdWindow, RecentSet};
use crate::gateway::delivery::{DeliveryQueue, Outgoing, Pushed};
use crate::gateway::protocol;
use crate::gateway::replay::{ReplayPlan, TopicPosition, Unrecoverable};
use crate::gateway::replies::{CompletedData, Delta, DeltaData, Replies};
use axum::extract::ws::Utf8Bytes;
use dashmap::DashMap;
use lad_consumers::ai::live::{COMPLETED as AI_COMPLETED, DELTA as AI_DELTA};
use lad_consumers::live::{Channel, LiveRecord, OutboxId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use uuid::Uuid;

/// How long a channel nobody listens to keeps its ring, so a client that
/// reconnects can still recover with `since` without reading the log.
pub const IDLE_RETENTION: Duration = Duration::from_secs(60);
/// A reply with no delta for this long is forgotten (its completion was lost).
pub const REPLY_STALE: Duration = Duration::from_secs(300);
const OUTBOX_ROWS_REMEMBERED: usize = 16_384;
const COMPLETED_REPLIES_REMEMBERED: usize = 16_384;

/// One socket's side of the registry: its outgoing queue and the signal
/// that it fell too far behind.
pub struct Conn {
    pub id: u64,
    queue: Mutex<DeliveryQueue>,
    ready: Notify,
    slow: AtomicBool,
    kicked: Notify,
}

impl Conn {
    /// `budget`: bytes of unmergeable frames that may wait for the socket.
    pub fn new(id: u64, budget: usize) -> Arc<Conn> {
        Arc::new(Conn {
            id,
            queue: Mutex::new(DeliveryQueue::new(budget)),
            ready: Notify::new(),
            slow: AtomicBool::new(false),
            kicked: Notify::new(),
        })
    }

    /// Queues a frame without waiting; an event over the budget kicks the
    /// connection instead.
    pub fn send(&self, item: Outgoing) -> bool {
        if self.slow.load(Ordering::Relaxed) {
            return false;
        }
        let (pushed, was_empty) = {
            let mut queue = self.lock_queue();
            let was_empty = queue.is_empty();
            (queue.push(item), was_empty)
        };
        match pushed {
            Pushed::OverBudget => {
                self.kick();
                return false;
            }
            Pushed::Conflated => metrics::counter!("lad_ws_conflated_total").increment(1),
            Pushed::Queued => {}
        }
        // Only the first frame into an empty queue wakes the session: it
        // takes everything queued by then, and asks to be woken again when
        // it leaves frames behind (`take`). A wake per frame would run the
        // session's loop once more per tick for nothing, 10,000 sockets over.
        if was_empty {
            self.ready.notify_one();
        }
        true
    }

    /// Queues a reply or an error (never merged).
    pub fn send_frame(&self, frame: impl Into<Utf8Bytes>) -> bool {
        self.send(Outgoing::event(frame))
    }

    /// Moves up to `max` frames into `out`; true if more are waiting.
    pub fn take(&self, max: usize, out: &mut Vec<Utf8Bytes>) -> bool {
        let mut queue = self.lock_queue();
        while out.len() < max {
            match queue.pop() {
                Some(item) => out.push(item.frame),
                None => return false,
            }
        }
        !queue.is_empty()
    }

    /// Resolves when frames were queued since the last call (the
    /// notification is kept if nobody waited).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Makes the next [`Conn::ready`] resolve at once.
    pub fn wake(&self) {
        self.ready.notify_one();
    }

    pub fn kick(&self) {
        if !self.slow.swap(true, Ordering::AcqRel) {
            metrics::counter!("lad_ws_slow_client_disconnects_total").increment(1);
            self.kicked.notify_one();
        }
    }

    pub fn is_kicked(&self) -> bool {
        self.slow.load(Ordering::Acquire)
    }

    /// Resolves once the connection was kicked (also if that happened
    /// before the call: the notification is kept).
    pub async fn kicked(&self) {
        self.kicked.notified().await;
    }

    /// Frames waiting (for tests and metrics).
    pub fn queued(&self) -> usize {
        self.lock_queue().len()
    }

    fn budget(&self) -> usize {
        self.lock_queue().budget()
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, DeliveryQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Subscriber {
    conn: Arc<Conn>,
    /// `Some` while the snapshot (and any replay) is being read.
    pending: Option<DeliveryQueue>,
}

impl Subscriber {
    fn deliver(&mut self, item: &Outgoing) -> bool {
        match &mut self.pending {
            Some(held) => {
                if held.push(item.clone()) == Pushed::OverBudget {
                    self.conn.kick();
                }
                false
            }
            None => self.conn.send(item.clone()),
        }
    }
}

struct Entry {
    position: Box<str>,
    /// Kept only for ids that are not outbox ids (those are deduplicated
    /// globally); lets such repeats be found in the ring.
    other_id: Option<Box<str>>,
    item: Outgoing,
}

/// The channel's recent messages. Invariant: it holds every message of the
/// channel dispatched after `base`, in dispatch order.
struct Ring {
    entries: VecDeque<Entry>,
    base: Box<str>,
}

impl Ring {
    fn push(&mut self, entry: Entry, capacity: usize) {
        if capacity == 0 {
            self.base = entry.position;
            return;
        }
        if self.entries.len() >= capacity {
            if let Some(old) = self.entries.pop_front() {
                self.base = old.position;
            }
        }
        self.entries.push_back(entry);
    }

    /// The position a subscriber is at once it has everything queued.
    fn cursor(&self) -> &str {
        self.entries.back().map_or(&self.base, |e| &e.position)
    }

    /// The messages after `since`, if the ring still covers it. Matching is
    /// by equality, not by comparing offsets: a channel's messages need not
    /// be in offset order (assistant deltas are released in `seq` order).
    fn after(&self, since: &str) -> Option<impl Iterator<Item = &Entry>> {
        let start = match self.entries.iter().rposition(|e| &*e.position == since) {
            Some(i) => i + 1,
            None if &*self.base == since => 0,
            None => return None,
        };
        Some(self.entries.iter().skip(start))
    }

    fn has_other_id(&self, id: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.other_id.as_deref() == Some(id))
    }
}

type Released = (Box<str>, Utf8Bytes);

struct ChannelState {
    subscribers: Vec<Subscriber>,
    ring: Ring,
    replies: Option<Box<Replies<Released>>>,
    idle_since: Instant,
    /// The `lad.live.v1` partition its records come from (all of a tenant's
    /// records share one), once one was seen.
    partition: Option<i32>,
}

impl ChannelState {
    fn new(base: String) -> ChannelState {
        ChannelState {
            subscribers: Vec::new(),
            ring: Ring {
                entries: VecDeque::new(),
                base: base.into_boxed_str(),
            },
            replies: None,
            idle_since: Instant::now(),
            partition: None,
        }
    }

    /// Records a message and hands it to every subscriber; returns how many
    /// got it.
    fn publish(&mut self, entry: Entry, ring_capacity: usize) -> usize {
        let item = entry.item.clone();
        self.ring.push(entry, ring_capacity);
        self.subscribers
            .iter_mut()
            .map(|sub| usize::from(sub.deliver(&item)))
            .sum()
    }

    fn reply_snapshot(&self) -> Value {
        let replies = self
            .replies
            .as_ref()
            .map(|r| r.snapshot())
            .unwrap_or_default();
        json!({ "replies": replies })
    }
}

/// How a subscribe continues after registration.
#[derive(Debug, PartialEq, Eq)]
pub enum Subscription {
    /// `subscribed` is queued; messages follow.
    Live,
    /// Read the snapshot (and run `resume.replay`, if any), then call
    /// [`ChannelRegistry::complete`].
    NeedsSnapshot(Resume),
}

/// Where the stream resumes for a subscriber whose snapshot is being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The subscribe request's id and channel name, echoed in `subscribed`.
    pub id: Value,
    pub name: String,
    /// The `position` of its `subscribed` frame when nothing is recovered
    /// from the log.
    pub position: String,
    /// True if it asked for `since` and the ring covered it.
    pub recovered: bool,
    /// The ring did not cover `since`, but `lad.live.v1` may: read this.
    pub replay: Option<ReplayPlan>,
}

pub struct ChannelRegistry {
    channels: DashMap<Channel, ChannelState>,
    ring_capacity: usize,
    outbox_ids: Mutex<OutboxIdWindow>,
    /// Replies completed lately, per channel: a `message_id` is only unique
    /// within its tenant (another tenant may reuse it), so it never stands
    /// alone as a key here.
    completed: Mutex<RecentSet<(Channel, Uuid)>>,
    next_base: AtomicU64,
    /// Per `lad.live.v1` partition, the offset of the last record whose
    /// dispatch has *started*. Stored before the dispatch, so a subscriber
    /// that reads it after registering knows that every record of its
    /// channel above it will reach its private queue.
    read_up_to: DashMap<i32, i64>,
}

impl ChannelRegistry {
    pub fn new(ring_capacity: usize) -> ChannelRegistry {
        ChannelRegistry {
            channels: DashMap::new(),
            ring_capacity,
            outbox_ids: Mutex::new(OutboxIdWindow::new(OUTBOX_ROWS_REMEMBERED)),
            completed: Mutex::new(RecentSet::new(COMPLETED_REPLIES_REMEMBERED)),
            // Random start: a base must never match a position handed out by
            // another process (or an earlier run of this one).
            next_base: AtomicU64::new(u64::from(rand::random::<u32>()) << 24),
            read_up_to: DashMap::new(),
        }
    }

    /// A position that only this channel state answers to: the point before
    /// the first message this process saw on the channel.
    fn fresh_base(&self) -> String {
        format!("-1:{}", self.next_base.fetch_add(1, Ordering::Relaxed))
    }

    /// The live reader was assigned `partition` and reads it from `next`.
    pub fn note_assigned(&self, partition: i32, next: i64) {
        self.read_up_to.insert(partition, next - 1);
    }

    /// The live reader is about to dispatch the record at `at`.
    pub fn note_read(&self, at: TopicPosition) {
        self.read_up_to.insert(at.partition, at.offset);
    }

    /// Per partition, the offset of the last record whose dispatch started.
    pub fn read_positions(&self) -> Vec<(i32, i64)> {
        self.read_up_to
            .iter()
            .map(|e| (*e.key(), *e.value()))
            .collect()
    }

    /// Registers `conn` on `channel` (replacing an earlier subscription of
    /// the same connection). Assistant channels are answered at once from
    /// memory; the others wait for [`ChannelRegistry::complete`]. With a
    /// `since` the ring still covers, the missed messages are queued behind
    /// `subscribed` (`recovered: true`); one it no longer covers becomes a
    /// [`ReplayPlan`] over `lad.live.v1`. The snapshot is still sent, since
    /// every `subscribed` carries one, and the client may ignore it.
    pub fn subscribe(
        &self,
        conn: &Arc<Conn>,
        channel: Channel,
        name: &str,
        id: &Value,
        since: Option<&str>,
    ) -> Subscription {
        let mut state = self
            .channels
            .entry(channel)
            .or_insert_with(|| ChannelState::new(self.fresh_base()));
        let st = &mut *state;
        st.subscribers.retain(|s| s.conn.id != conn.id);

        let mut held = DeliveryQueue::new(conn.budget());
        let from_ring = since.and_then(|since| {
            for entry in st.ring.after(since)? {
                if held.push(entry.item.clone()) == Pushed::OverBudget {
                    conn.kick();
                }
            }
            Some(since.to_owned())
        });
        let (position, recovered) = match from_ring {
            Some(since) => (since, true),
            None => (st.ring.cursor().to_owned(), false),
        };
        if matches!(channel, Channel::UserAi { .. }) {
            let head = protocol::subscribed(id, name, &st.reply_snapshot(), &position, recovered);
            conn.send_frame(head);
            for item in held.drain() {
                conn.send(item);
            }
            st.subscribers.push(Subscriber {
                conn: conn.clone(),
                pending: None,
            });
            return Subscription::Live;
        }
        let replay = match (recovered, since) {
            (false, Some(since)) => self.plan_replay(since, st.partition),
            _ => None,
        };
        st.subscribers.push(Subscriber {
            conn: conn.clone(),
            pending: Some(held),
        });
        Subscription::NeedsSnapshot(Resume {
            id: id.clone(),
            name: name.to_owned(),
            position,
            recovered,
            replay,
        })
    }

    /// The log read that recovers a channel from `since`, if `since` is a
    /// position in `lad.live.v1` this node reads. Called after the
    /// subscriber is registered (see `read_up_to`).
    fn plan_replay(&self, since: &str, channel_partition: Option<i32>) -> Option<ReplayPlan> {
        let at = TopicPosition::parse(since).filter(|at| at.partition >= 0 && at.offset >= 0)?;
        // A channel's records share one partition: a position elsewhere is
        // not one of this channel's.
        if channel_partition.is_some_and(|p| p != at.partition) {
            return None;
        }
        let read = *self.read_up_to.get(&at.partition)?;
        Some(ReplayPlan {
            since: since.to_owned(),
            partition: at.partition,
            after: at.offset,
            // A client coming from a node ahead of this one: what lies
            // between is delivered live, and nothing up to `since` twice.
            until: read.max(at.offset),
        })
    }

    /// Queues `subscribed` with the snapshot, then what was held back: the
    /// recovered messages and what arrived while the snapshot was read.
    /// `replayed` is the outcome of `resume.replay`: on success the client
    /// resumes at its `since` (`recovered: true`); otherwise it starts over
    /// from the snapshot.
    pub fn complete(
        &self,
        conn: &Conn,
        channel: &Channel,
        snapshot: &(impl Serialize + ?Sized),
        resume: &Resume,
        replayed: Option<Result<Vec<Outgoing>, Unrecoverable>>,
    ) {
        let (id, name) = (&resume.id, resume.name.as_str());
        let Some(mut st) = self.channels.get_mut(channel) else {
            return;
        };
        let Some(sub) = st.subscribers.iter_mut().find(|s| s.conn.id == conn.id) else {
            return;
        };
        let mut held = sub.pending.take().unwrap_or_else(|| DeliveryQueue::new(0));
        // Events read back beyond the socket's budget would only get it cut
        // (4008): a fresh snapshot serves such a client better.
        let replayed = replayed.map(|r| {
            r.and_then(|missed| {
                let events: usize = missed
                    .iter()
                    .filter(|o| o.key.is_none())
                    .map(|o| o.frame.len())
                    .sum();
                if events > conn.budget() {
                    Err(Unrecoverable::TooFar)
                } else {
                    Ok(missed)
                }
            })
        });
        match (&resume.replay, replayed) {
            (Some(plan), Some(Ok(missed))) => {
                let head = protocol::subscribed(id, name, snapshot, &plan.since, true);
                conn.send_frame(head);
                for item in missed {
                    conn.send(item);
                }
                for item in held.drain() {
                    if item.offset.is_none_or(|o| o > plan.until) {
                        conn.send(item);
                    }
                }
            }
            _ => {
                let head =
                    protocol::subscribed(id, name, snapshot, &resume.position, resume.recovered);
                conn.send_frame(head);
                for item in held.drain() {
                    conn.send(item);
                }
            }
        }
    }

    pub fn unsubscribe(&self, conn_id: u64, channel: &Channel) {
        if let Some(mut st) = self.channels.get_mut(channel) {
            let before = st.subscribers.len();
            st.subscribers.retain(|s| s.conn.id != conn_id);
            if before > 0 && st.subscribers.is_empty() {
                st.idle_since = Instant::now();
            }
        }
    }

    /// Passes over a record read at `at` for `channel` when nobody here
    /// listens to the channel and nothing here keeps its records (no
    /// state): only its outbox id is noted, as [`ChannelRegistry::dispatch`]
    /// notes every one, so a republish is still known for one later. False,
    /// with nothing noted, when the record must be dispatched: assistant
    /// channels keep their replies' state without subscribers.
    pub fn pass_unwatched(&self, at: TopicPosition, id: Option<&str>, channel: &Channel) -> bool {
        if matches!(channel, Channel::UserAi { .. }) || self.channels.contains_key(channel) {
            return false;
        }
        if let Some(oid) = id.and_then(OutboxId::parse) {
            self.first_time(at.partition, oid);
        }
        true
    }

    /// Notes a relayed record's id in the repeats window: false (and
    /// counted as dropped) for a republish of one seen before.
    fn first_time(&self, partition: i32, oid: OutboxId) -> bool {
        let first = self.lock_outbox_ids().first_time(partition, oid);
        if !first {
            dropped("repeat");
        }
        first
    }

    /// Routes one live record (already checked: its channel is its tenant's)
    /// at `position`, read from `lad.live.v1` at `read_at` (none for one
    /// handed over in-process). Returns how many subscribers it was
    /// delivered to.
    pub fn dispatch(
        &self,
        position: &str,
        read_at: Option<TopicPosition>,
        rec: &LiveRecord<'_>,
        channel: Channel,
    ) -> usize {
        let outbox_id = rec.id.as_deref().and_then(OutboxId::parse);
        if let Some(oid) = outbox_id {
            let partition = read_at.map_or(i32::MIN, |at| at.partition);
            if !self.first_time(partition, oid) {
                return 0;
            }
        }
        let offset = read_at.map(|at| at.offset);
        if let Channel::UserAi { user_id, .. } = channel {
            match &*rec.kind {
                AI_DELTA => return self.dispatch_delta(position, rec, channel, user_id),
                AI_COMPLETED => {
                    let Some(done) = ai_data(rec, user_id, |d: &CompletedData| d.user_id) else {
                        return 0;
                    };
                    self.lock_completed().insert((channel, done.message_id));
                    let Some(mut st) = self.channels.get_mut(&channel) else {
                        return 0;
                    };
                    if let Some(replies) = &mut st.replies {
                        replies.on_completed(&done.message_id);
                        if replies.is_empty() {
                            st.replies = None;
                            st.idle_since = Instant::now();
                        }
                    }
                    return self.publish_to(&mut st, position, offset, rec, outbox_id.is_none());
                }
                _ => {}
            }
        }
        match self.channels.get_mut(&channel) {
            Some(mut st) => {
                if let Some(at) = read_at {
                    st.partition = Some(at.partition);
                }
                self.publish_to(&mut st, position, offset, rec, outbox_id.is_none())
            }
            // Nobody here listens and nothing here could recover it.
            None => 0,
        }
    }

    fn publish_to(
        &self,
        st: &mut ChannelState,
        position: &str,
        offset: Option<i64>,
        rec: &LiveRecord<'_>,
        other_id: bool,
    ) -> usize {
        let other_id = rec.id.as_deref().filter(|_| other_id);
        if let Some(id) = other_id {
            if st.ring.has_other_id(id) {
                dropped("repeat");
                return 0;
            }
        }
        let entry = Entry {
            position: position.into(),
            other_id: other_id.map(Into::into),
            item: outgoing(rec, position, offset),
        };
        st.publish(entry, self.ring_capacity)
    }

    fn dispatch_delta(
        &self,
        position: &str,
        rec: &LiveRecord<'_>,
        channel: Channel,
        user_id: Uuid,
    ) -> usize {
        let Some(d) = ai_data(rec, user_id, |d: &DeltaData| d.user_id) else {
            return 0;
        };
        if self.lock_completed().contains(&(channel, d.message_id)) {
            dropped("repeat");
            return 0;
        }
        let frame = frame(rec, position);
        // Created even with no subscriber: a late one starts from the text so far.
        let mut state = self
            .channels
            .entry(channel)
            .or_insert_with(|| ChannelState::new(self.fresh_base()));
        let st = &mut *state;
        let delta = Delta {
            conversation_id: d.conversation_id,
            message_id: d.message_id,
            user_id: d.user_id,
            seq: d.seq,
            delta: d.delta,
        };
        let released = st.replies.get_or_insert_with(Default::default).on_delta(
            delta,
            (position.into(), frame),
            Instant::now(),
        );
        let mut delivered = 0;
        for (position, frame) in released {
            let entry = Entry {
                position,
                other_id: None,
                item: Outgoing::event(frame),
            };
            delivered += st.publish(entry, self.ring_capacity);
        }
        delivered
    }

    /// Drops channel states nobody needs any more: no subscriber, no reply
    /// in progress, idle past the retention.
    pub fn sweep(&self, now: Instant) {
        self.channels.retain(|_, st| {
            if let Some(replies) = &mut st.replies {
                replies.drop_stale(now, REPLY_STALE);
                if replies.is_empty() {
                    st.replies = None;
                }
            }
            !(st.subscribers.is_empty()
                && st.replies.is_none()
                && now.saturating_duration_since(st.idle_since) >= IDLE_RETENTION)
        });
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    pub fn subscription_count(&self) -> usize {
        self.channels.iter().map(|st| st.subscribers.len()).sum()
    }

    fn lock_outbox_ids(&self) -> std::sync::MutexGuard<'_, OutboxIdWindow> {
        self.outbox_ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_completed(&self) -> std::sync::MutexGuard<'_, RecentSet<(Channel, Uuid)>> {
        self.completed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts a live record not delivered, by why.
pub(crate) fn dropped(reason: &'static str) {
    metrics::counter!("lad_live_records_dropped_total", "reason" => reason).increment(1);
}

/// A live record at `position` as it goes to sockets: its `message` frame,
/// and its entity when it is a state message.
pub(crate) fn outgoing(rec: &LiveRecord<'_>, position: &str, offset: Option<i64>) -> Outgoing {
    Outgoing {
        frame: frame(rec, position),
        key: rec.key.as_deref().map(Arc::from),
        offset,
    }
}

/// The `message` frame of a live record at `position`.
fn frame(rec: &LiveRecord<'_>, position: &str) -> Utf8Bytes {
    protocol::message(
        rec.id.as_deref(),
        rec.tenant_id,
        &rec.channel,
        &rec.kind,
        position,
        rec.data,
    )
    .into()
}

/// The data of an assistant record on `user_id`'s channel; `None`, counted
/// as dropped, when it does not parse or names another user.
fn ai_data<T: DeserializeOwned>(
    rec: &LiveRecord<'_>,
    user_id: Uuid,
    user_of: fn(&T) -> Uuid,
) -> Option<T> {
    let Ok(data) = serde_json::from_str::<T>(rec.data.get()) else {
        dropped("malformed");
        return None;
    };
    if user_of(&data) != user_id {
        dropped("user_mismatch");
        return None;
    }
    Some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Client {
        conn: Arc<Conn>,
    }

    impl Client {
        /// `budget`: bytes of events it may have waiting.
        fn new(id: u64, budget: usize) -> Client {
            Client {
                conn: Conn::new(id, budget),
            }
        }

        fn frames(&mut self) -> Vec<Value> {
            let mut out = Vec::new();
            self.conn.take(usize::MAX, &mut out);
            out.iter()
                .map(|f| serde_json::from_str(f.as_str()).unwrap())
                .collect()
        }
    }

    fn record(id: &str, channel: &Channel, kind: &str, data: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": id, "tenant_id": channel.tenant_id(), "channel": channel.to_string(),
            "type": kind, "data": data,
        }))
        .unwrap()
    }

    fn dispatch(reg: &ChannelRegistry, position: &str, bytes: &[u8]) -> usize {
        let rec = LiveRecord::parse(bytes).unwrap();
        let channel: Channel = rec.channel.parse().unwrap();
        reg.dispatch(position, TopicPosition::parse(position), &rec, channel)
    }

    fn calls() -> Channel {
        Channel::Calls {
            tenant_id: Uuid::new_v4(),
        }
    }

    fn positions(frames: &[Value]) -> Vec<&str> {
        frames
            .iter()
            .filter_map(|f| f["position"].as_str())
            .collect()
    }

    /// Subscribes and, for a channel read from Postgres, completes with
    /// `snapshot`. Returns the `subscribed` position.
    fn join(reg: &ChannelRegistry, c: &Client, ch: Channel, since: Option<&str>) -> String {
        let name = ch.to_string();
        match reg.subscribe(&c.conn, ch, &name, &json!(1), since) {
            Subscription::Live => panic!("not an assistant channel"),
            Subscription::NeedsSnapshot(resume) => {
                let snapshot = json!({"s": 1});
                reg.complete(&c.conn, &ch, &snapshot, &resume, None);
                resume.position
            }
        }
    }

    fn send_n(reg: &ChannelRegistry, ch: &Channel, range: std::ops::RangeInclusive<u32>) {
        for i in range {
            let r = record(&format!("{i}.0"), ch, "t", json!({ "n": i }));
            dispatch(reg, &format!("0:{i}"), &r);
        }
    }

    #[test]
    fn messages_between_registration_and_snapshot_follow_the_snapshot() {
        let reg = ChannelRegistry::new(8);
        let ch = calls();
        let mut c = Client::new(1, 1 << 16);
        let sub = reg.subscribe(&c.conn, ch, &ch.to_string(), &json!(1), None);
        let Subscription::NeedsSnapshot(resume) = sub else {
            panic!("{sub:?}")
        };
        send_n(&reg, &ch, 1..=1);
        assert!(c.frames().is_empty(), "nothing before subscribed");
        let snapshot = json!({"s": 1});
        reg.complete(&c.conn, &ch, &snapshot, &resume, None);
        send_n(&reg, &ch, 2..=2);
        let frames = c.frames();
        assert_eq!(frames[0]["op"], "subscribed");
        assert_eq!(frames[0]["snapshot"], json!({"s": 1}));
        assert_eq!(frames[0]["position"], json!(resume.position));
        assert_eq!(frames[0]["recovered"], json!(false));
        assert_eq!(positions(&frames[1..]), ["0:1", "0:2"]);
        assert_eq!(frames[1]["data"], json!({"n": 1}));
    }

    #[test]
    fn repeats_of_a_relayed_record_are_dropped() {
        let reg = ChannelRegistry::new(8);
        let ch = calls();
        let mut c = Client::new(1, 1 << 16);
        join(&reg, &c, ch, None);
        let r = record("7.0", &ch, "call.updated", json!({}));
        assert_eq!(dispatch(&reg, "0:1", &r), 1);
        assert_eq!(dispatch(&reg, "0:2", &r), 0);
        let odd = record("custom-id", &ch, "call.updated", json!({}));
        assert_eq!(dispatch(&reg, "0:3", &odd), 1);
        assert_eq!(dispatch(&reg, "0:4", &odd), 0);
        assert_eq!(c.frames().len(), 3);
    }

    #[test]
    fn since_replays_from_the_ring_or_says_it_cannot() {
        let reg = ChannelRegistry::new(3);
        let ch = calls();
        let a = Client::new(1, 1 << 16);
        let base = join(&reg, &a, ch, None);
        send_n(&reg, &ch, 1..=3);

        let mut b = Client::new(2, 1 << 16);
        assert_eq!(join(&reg, &b, ch, Some("0:1")), "0:1");
        let frames = b.frames();
        assert_eq!(frames[0]["recovered"], json!(true));
        assert_eq!(positions(&frames[1..]), ["0:2", "0:3"]);

        // The base (nothing seen yet) still covers everything.
        let mut c = Client::new(3, 1 << 16);
        join(&reg, &c, ch, Some(&base));
        let frames = c.frames();
        assert_eq!(frames[0]["recovered"], json!(true));
        assert_eq!(positions(&frames[1..]), ["0:1", "0:2", "0:3"]);

        // One more message pushes 0:1 out: the base moves to it.
        send_n(&reg, &ch, 4..=4);
        let mut d = Client::new(4, 1 << 16);
        assert_eq!(join(&reg, &d, ch, Some(&base)), "0:4");
        let frames = d.frames();
        assert_eq!((frames.len(), &frames[0]["recovered"]), (1, &json!(false)));
        join(&reg, &d, ch, Some("0:1"));
        assert_eq!(positions(&d.frames()[1..]), ["0:2", "0:3", "0:4"]);

        let mut e = Client::new(5, 1 << 16);
        join(&reg, &e, ch, Some("9:9"));
        assert_eq!(e.frames()[0]["recovered"], json!(false));
        assert_eq!(reg.subscription_count(), 5);
    }

    /// What a log replay of `offsets` on `ch` returns.
    fn replayed(ch: &Channel, offsets: std::ops::RangeInclusive<u32>) -> Vec<Outgoing> {
        offsets
            .map(|i| {
                let bytes = record(&format!("{i}.0"), ch, "t", json!({ "n": i }));
                let rec = LiveRecord::parse(&bytes).unwrap();
                outgoing(&rec, &format!("0:{i}"), Some(i64::from(i)))
            })
            .collect()
    }

    #[test]
    fn a_replay_resumes_at_since_and_the_live_stream_goes_on_without_doubles() {
        let reg = ChannelRegistry::new(8);
        let ch = calls();
        reg.note_assigned(0, 11);
        let mut c = Client::new(1, 1 << 16);
        let sub = reg.subscribe(&c.conn, ch, &ch.to_string(), &json!(1), Some("0:5"));
        let Subscription::NeedsSnapshot(resume) = sub else {
            panic!("{sub:?}")
        };
        let plan = resume.replay.clone().expect("a log replay");
        assert_eq!((plan.partition, plan.after, plan.until), (0, 5, 10));
        // Dispatched while the log is read: 10 is also in the replay.
        send_n(&reg, &ch, 10..=11);
        reg.complete(
            &c.conn,
            &ch,
            &json!({}),
            &resume,
            Some(Ok(replayed(&ch, 6..=10))),
        );
        let frames = c.frames();
        assert_eq!(
            (&frames[0]["recovered"], &frames[0]["position"]),
            (&json!(true), &json!("0:5"))
        );
        assert_eq!(
            positions(&frames[1..]),
            ["0:6", "0:7", "0:8", "0:9", "0:10", "0:11"]
        );
    }

    #[test]
    fn a_replay_that_fails_or_outgrows_the_budget_becomes_a_fresh_snapshot() {
        let reg = ChannelRegistry::new(8);
        let ch = calls();
        reg.note_assigned(0, 100);
        for (live, budget, outcome) in [
            (101, 1 << 16, Err(Unrecoverable::TooOld)),
            (102, 600, Ok(replayed(&ch, 6..=50))),
        ] {
            let mut c = Client::new(1, budget);
            let sub = reg.subscribe(&c.conn, ch, &ch.to_string(), &json!(1), Some("0:5"));
            let Subscription::NeedsSnapshot(resume) = sub else {
                panic!("{sub:?}")
            };
            send_n(&reg, &ch, live..=live);
            reg.complete(&c.conn, &ch, &json!({"s": 1}), &resume, Some(outcome));
            let frames = c.frames();
            assert_eq!(frames[0]["recovered"], json!(false));
            assert_eq!(frames[0]["snapshot"], json!({"s": 1}));
            let after = format!("0:{live}");
            assert_eq!(
                positions(&frames[1..]),
                [after.as_str()],
                "only what came after"
            );
            assert!(!c.conn.is_kicked());
            reg.unsubscribe(1, &ch);
        }
    }

    #[test]
    fn events_over_the_budget_kick_only_that_connection() {
        let reg = ChannelRegistry::new(8);
        let ch = calls();
        let mut slow = Client::new(1, 400);
        let mut fast = Client::new(2, 1 << 16);
        join(&reg, &slow, ch, None);
        join(&reg, &fast, ch, None);
        send_n(&reg, &ch, 1..=5);
        assert!(slow.conn.is_kicked());
        assert!(!fast.conn.is_kicked());
        assert_eq!(fast.frames().len(), 6);
        assert!(slow.frames().len() < 6);
    }

    #[test]
    fn a_subscriber_behind_gets_each_entitys_latest_state_and_is_not_kicked() {
        let reg = ChannelRegistry::new(8);
        let ch = calls();
        let mut behind = Client::new(1, 400);
        join(&reg, &behind, ch, None);
        for i in 0..300u32 {
            let call = i % 3;
            let r = serde_json::to_vec(&json!({
                "id": format!("{i}.0"), "tenant_id": ch.tenant_id(), "channel": ch.to_string(),
                "type": "call.updated", "key": format!("call.updated/{call}"),
                "data": {"id": call, "step": i},
            }))
            .unwrap();
            dispatch(&reg, &format!("0:{i}"), &r);
        }
        assert!(!behind.conn.is_kicked());
        let frames = behind.frames();
        assert_eq!(frames[0]["op"], "subscribed");
        let steps: Vec<u64> = frames[1..]
            .iter()
            .map(|f| f["data"]["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, [297, 298, 299]);
        assert_eq!(positions(&frames[1..]), ["0:297", "0:298", "0:299"]);
    }

    #[test]
    fn a_late_assistant_subscriber_gets_the_text_so_far_then_the_rest_in_order() {
        let reg = ChannelRegistry::new(64);
        let (t, u, m) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let ch = Channel::UserAi {
            tenant_id: t,
            user_id: u,
        };
        let name = ch.to_string();
        let delta = |seq: u64| {
            record(
                &format!("ai:{m}:{seq}"),
                &ch,
                AI_DELTA,
                json!({"conversation_id": Uuid::nil(), "message_id": m, "user_id": u, "seq": seq, "delta": format!("<{seq}>")}),
            )
        };
        dispatch(&reg, "0:10", &delta(0));
        dispatch(&reg, "0:11", &delta(2));
        dispatch(&reg, "0:12", &delta(1));
        let mut c = Client::new(1, 1 << 16);
        assert_eq!(
            reg.subscribe(&c.conn, ch, &name, &json!(1), None),
            Subscription::Live
        );
        dispatch(&reg, "0:13", &delta(4));
        dispatch(&reg, "0:14", &delta(2));
        dispatch(&reg, "0:15", &delta(3));
        let done = record(
            "9.0",
            &ch,
            AI_COMPLETED,
            json!({"conversation_id": Uuid::nil(), "message_id": m, "user_id": u, "content": "<0><1><2><3><4>", "tokens_used": 5}),
        );
        dispatch(&reg, "0:16", &done);
        dispatch(&reg, "0:17", &delta(4));
        let frames = c.frames();
        let reply = &frames[0]["snapshot"]["replies"][0];
        assert_eq!(
            (
                reply["seq"].clone(),
                reply["next_seq"].clone(),
                reply["content"].clone()
            ),
            (json!(2), json!(3), json!("<0><1><2>"))
        );
        assert_eq!(frames[0]["position"], "0:11", "the last released delta");
        let seqs: Vec<i64> = frames[1..]
            .iter()
            .filter_map(|f| f["data"]["seq"].as_i64())
            .collect();
        assert_eq!(seqs, [3, 4]);
        assert_eq!(frames.last().unwrap()["type"], AI_COMPLETED);
        assert_eq!(frames.len(), 4);
    }

    #[test]
    fn another_tenants_completed_reply_with_the_same_message_id_does_not_end_this_one() {
        let reg = ChannelRegistry::new(64);
        let m = Uuid::new_v4();
        let (ua, ub) = (Uuid::new_v4(), Uuid::new_v4());
        let a = Channel::UserAi {
            tenant_id: Uuid::new_v4(),
            user_id: ua,
        };
        let b = Channel::UserAi {
            tenant_id: Uuid::new_v4(),
            user_id: ub,
        };
        let delta = |seq: u64| {
            record(
                &format!("ai:{m}:{seq}"),
                &a,
                AI_DELTA,
                json!({"conversation_id": Uuid::nil(), "message_id": m, "user_id": ua, "seq": seq, "delta": "x"}),
            )
        };
        let mut c = Client::new(1, 1 << 16);
        reg.subscribe(&c.conn, a, &a.to_string(), &json!(1), None);
        dispatch(&reg, "0:1", &delta(0));
        dispatch(&reg, "0:2", &delta(1));
        let done_b = record(
            "7.0",
            &b,
            AI_COMPLETED,
            json!({"conversation_id": Uuid::nil(), "message_id": m, "user_id": ub, "content": "y", "tokens_used": 1}),
        );
        dispatch(&reg, "1:3", &done_b);
        dispatch(&reg, "0:4", &delta(2));
        let seqs: Vec<u64> = c.frames()[1..]
            .iter()
            .map(|f| f["data"]["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [0, 1, 2]);
    }

    #[test]
    fn a_delta_for_another_user_is_dropped() {
        let reg = ChannelRegistry::new(8);
        let ch = Channel::UserAi {
            tenant_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
        };
        let r = record(
            "ai:x:0",
            &ch,
            AI_DELTA,
            json!({"conversation_id": Uuid::nil(), "message_id": Uuid::nil(), "user_id": Uuid::new_v4(), "seq": 0, "delta": "x"}),
        );
        dispatch(&reg, "0:1", &r);
        assert_eq!(reg.channel_count(), 0);
    }

    #[test]
    fn idle_channels_are_swept_after_the_retention() {
        let reg = ChannelRegistry::new(8);
        let ch = calls();
        let c = Client::new(1, 1 << 16);
        join(&reg, &c, ch, None);
        reg.sweep(Instant::now() + IDLE_RETENTION * 2);
        assert_eq!(reg.channel_count(), 1, "a subscribed channel stays");
        reg.unsubscribe(c.conn.id, &ch);
        assert_eq!(reg.subscription_count(), 0);
        reg.sweep(Instant::now());
        assert_eq!(reg.channel_count(), 1, "kept for reconnects");
        reg.sweep(Instant::now() + IDLE_RETENTION * 2);
        assert_eq!(reg.channel_count(), 0);
    }
}
