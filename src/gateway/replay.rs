//! Recovery from the log: a client that resubscribes with a `since` the
//! channel's ring no longer covers (the hub restarted, the client moved to
//! another node, it was away longer than the ring lasts) gets what it missed
//! read back from `lad.live.v1`, which is the channel's history: a position
//! is `"{partition}:{offset}"` there, and all of a tenant's records share
//! one partition.
//!
//! Requests are served by one worker that gathers those arriving together
//! and reads each partition once for all of them, so a node restart (every
//! dashboard resubscribing at once) costs a few scans, not one per client.
//! A replay is bounded in records (the distance from `since` to where the
//! live reader is) and in age (the first missed record's timestamp); past
//! either, or on any doubt (a gap in the offsets, a read error), the answer
//! is "cannot", and the client gets `recovered: false` and a fresh snapshot.

use crate::gateway::dedupe::OutboxIdWindow;
use crate::gateway::delivery::Outgoing;
use crate::gateway::registry::{dropped, outgoing};
use lad_consumers::kafka::KafkaSettings;
use lad_consumers::live::{Channel, LiveRecord, OutboxId};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// A record's place in `lad.live.v1`, written `"{partition}:{offset}"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicPosition {
    pub partition: i32,
    pub offset: i64,
}

impl TopicPosition {
    pub fn parse(s: &str) -> Option<TopicPosition> {
        let (p, o) = s.split_once(':')?;
        Some(TopicPosition {
            partition: p.parse().ok()?,
            offset: o.parse().ok()?,
        })
    }
}

impl fmt::Display for TopicPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

/// What a subscriber needs read back: its channel's records of `partition`
/// with `after < offset <= until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPlan {
    /// The client's `since`, echoed as the `subscribed` position.
    pub since: String,
    pub partition: i32,
    pub after: i64,
    /// Where the live reader was when the subscriber registered: the live
    /// stream delivers what comes after.
    pub until: i64,
}

/// Why the log cannot recover a channel; the client starts over from a
/// snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unrecoverable {
    #[error("more missed records than a replay reads")]
    TooFar,
    #[error("the missed records are older than a replay goes back")]
    TooOld,
    #[error("offsets are missing in the log (retention, compaction or a broker skipping records)")]
    Gap,
    #[error("the log could not be read in time")]
    Unavailable,
}

impl Unrecoverable {
    fn label(self) -> &'static str {
        match self {
            Unrecoverable::TooFar => "too_far",
            Unrecoverable::TooOld => "too_old",
            Unrecoverable::Gap => "gap",
            Unrecoverable::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ReplayLimits {
    /// Records of the partition a replay may span (`until - after`).
    pub max_records: i64,
    /// How old the first missed record may be.
    pub max_age: Duration,
}

impl Default for ReplayLimits {
    fn default() -> ReplayLimits {
        ReplayLimits {
            max_records: 100_000,
            max_age: Duration::from_secs(15 * 60),
        }
    }
}

/// How long requests arriving together are gathered into one scan.
const GATHER: Duration = Duration::from_millis(20);
/// Requests waiting for the worker; past this, a subscriber gets a snapshot.
const QUEUE: usize = 4096;
/// Longest a scan may take before its requests give up.
const SCAN_TIMEOUT: Duration = Duration::from_secs(10);

struct Request {
    channel: Channel,
    name: String,
    plan: ReplayPlan,
    reply: oneshot::Sender<Result<Vec<Outgoing>, Unrecoverable>>,
}

/// The handle the sessions use; the worker runs until shutdown.
#[derive(Clone)]
pub struct LogReplay {
    tx: mpsc::Sender<Request>,
    limits: ReplayLimits,
}

impl LogReplay {
    /// Starts the worker on the current runtime.
    pub fn start(
        kafka: &KafkaSettings,
        topic: &str,
        limits: ReplayLimits,
        shutdown: CancellationToken,
    ) -> anyhow::Result<LogReplay> {
        let mut cfg = kafka.low_latency_consumer_config("lad-hub-replay");
        // A vanished offset must fail the replay, never skip silently.
        cfg.set("auto.offset.reset", "error");
        let consumer: StreamConsumer = cfg.create()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let worker = Worker {
            consumer,
            topic: topic.to_owned(),
            limits,
        };
        tokio::spawn(worker.run(rx, shutdown));
        Ok(LogReplay { tx, limits })
    }

    /// The channel's messages in `plan`'s range, in log order, repeats
    /// dropped.
    pub async fn replay(
        &self,
        channel: Channel,
        name: &str,
        plan: &ReplayPlan,
    ) -> Result<Vec<Outgoing>, Unrecoverable> {
        let outcome = self.request(channel, name, plan).await;
        let label = match &outcome {
            Ok(_) => "recovered",
            Err(why) => {
                // The client gets `recovered: false` and a snapshot; say why
                // here, where an operator can see it.
                tracing::info!(channel = %name, since = %plan.since, until = plan.until,
                    reason = %why, "since not recovered from the log");
                why.label()
            }
        };
        metrics::counter!("lad_ws_log_replays_total", "outcome" => label).increment(1);
        outcome
    }

    async fn request(
        &self,
        channel: Channel,
        name: &str,
        plan: &ReplayPlan,
    ) -> Result<Vec<Outgoing>, Unrecoverable> {
        if plan.until <= plan.after {
            return Ok(Vec::new());
        }
        if plan.until - plan.after > self.limits.max_records {
            return Err(Unrecoverable::TooFar);
        }
        let (reply, answer) = oneshot::channel();
        let request = Request {
            channel,
            name: name.to_owned(),
            plan: plan.clone(),
            reply,
        };
        self.tx
            .try_send(request)
            .map_err(|_| Unrecoverable::Unavailable)?;
        match tokio::time::timeout(SCAN_TIMEOUT * 2, answer).await {
            Ok(Ok(outcome)) => outcome,
            _ => Err(Unrecoverable::Unavailable),
        }
    }
}

struct Worker {
    consumer: StreamConsumer,
    topic: String,
    limits: ReplayLimits,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Request>, shutdown: CancellationToken) {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = rx.recv() => match r { Some(r) => r, None => return },
            };
            tokio::time::sleep(GATHER).await;
            let mut by_partition: BTreeMap<i32, Vec<Request>> = BTreeMap::new();
            by_partition
                .entry(first.plan.partition)
                .or_default()
                .push(first);
            while let Ok(r) = rx.try_recv() {
                by_partition.entry(r.plan.partition).or_default().push(r);
            }
            for (partition, requests) in by_partition {
                let started = std::time::Instant::now();
                let count = requests.len();
                let mut scan = Scan::new(requests, self.limits);
                let outcome =
                    tokio::time::timeout(SCAN_TIMEOUT, self.scan(partition, &mut scan)).await;
                if let Err(why) = outcome.unwrap_or(Err(Unrecoverable::Unavailable)) {
                    tracing::warn!(partition, error = %why, "log replay failed");
                    scan.fail_all(why);
                }
                metrics::counter!("lad_ws_log_replay_scans_total").increment(1);
                tracing::debug!(
                    partition,
                    requests = count,
                    ms = started.elapsed().as_millis() as u64,
                    "log replay scan"
                );
                scan.answer();
                if let Err(e) = self.consumer.unassign() {
                    tracing::warn!(error = %e, "log replay unassign failed");
                }
            }
        }
    }

    async fn scan(&self, partition: i32, scan: &mut Scan) -> Result<(), Unrecoverable> {
        let (from, to) = scan.range();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(from))
            .map_err(|_| Unrecoverable::Unavailable)?;
        self.consumer
            .assign(&tpl)
            .map_err(|_| Unrecoverable::Unavailable)?;
        let mut expected = from;
        while expected <= to {
            let m = match self.consumer.recv().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, partition, "log replay read failed");
                    return Err(Unrecoverable::Unavailable);
                }
            };
            if m.partition() != partition || m.offset() < expected {
                continue;
            }
            if m.offset() > expected {
                scan.gap(expected, m.offset() - 1);
            }
            let timestamp = m.timestamp().to_millis();
            scan.record(partition, m.offset(), timestamp, m.payload());
            expected = m.offset() + 1;
        }
        Ok(())
    }
}

struct Pending {
    request: Request,
    missed: Vec<Outgoing>,
    failed: Option<Unrecoverable>,
}

/// One read of one partition for the requests gathered on it (pure: fed
/// records by the worker, unit-tested).
struct Scan {
    pending: Vec<Pending>,
    limits: ReplayLimits,
    repeats: OutboxIdWindow,
}

impl Scan {
    fn new(requests: Vec<Request>, limits: ReplayLimits) -> Scan {
        Scan {
            pending: requests
                .into_iter()
                .map(|request| Pending {
                    request,
                    missed: Vec::new(),
                    failed: None,
                })
                .collect(),
            limits,
            repeats: OutboxIdWindow::new(1 << 16),
        }
    }

    /// The offsets to read: from the first missed record to the last.
    fn range(&self) -> (i64, i64) {
        let from = self.pending.iter().map(|p| p.request.plan.after + 1).min();
        let to = self.pending.iter().map(|p| p.request.plan.until).max();
        (from.unwrap_or(0), to.unwrap_or(-1))
    }

    /// Offsets `first..=last` do not exist: every request spanning them
    /// would miss records, so it fails.
    fn gap(&mut self, first: i64, last: i64) {
        for p in &mut self.pending {
            let plan = &p.request.plan;
            if plan.after < last && plan.until >= first {
                p.failed.get_or_insert(Unrecoverable::Gap);
            }
        }
    }

    fn record(
        &mut self,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        payload: Option<&[u8]>,
    ) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for p in &mut self.pending {
            if p.request.plan.after + 1 == offset {
                let age_ms = timestamp_ms.map_or(0, |t| now_ms.saturating_sub(t));
                if age_ms > self.limits.max_age.as_millis() as i64 {
                    p.failed.get_or_insert(Unrecoverable::TooOld);
                }
            }
        }
        let Some(rec) = payload.and_then(|v| LiveRecord::parse(v).ok()) else {
            return;
        };
        let wanted = |p: &Pending| {
            p.failed.is_none()
                && p.request.plan.after < offset
                && offset <= p.request.plan.until
                && rec.channel == p.request.name
                && rec.tenant_id == p.request.channel.tenant_id()
        };
        if !self.pending.iter().any(wanted) {
            return;
        }
        if let Some(id) = rec.id.as_deref().and_then(OutboxId::parse) {
            if !self.repeats.first_time(partition, id) {
                dropped("repeat");
                return;
            }
        }
        let position = TopicPosition { partition, offset }.to_string();
        let item = outgoing(&rec, &position, Some(offset));
        for p in self.pending.iter_mut().filter(|p| wanted(p)) {
            p.missed.push(item.clone());
        }
    }

    fn fail_all(&mut self, why: Unrecoverable) {
        for p in &mut self.pending {
            p.failed.get_or_insert(why);
        }
    }

    fn answer(self) {
        for p in self.pending {
            let outcome = match p.failed {
                Some(why) => Err(why),
                None => Ok(p.missed),
            };
            let _ = p.request.reply.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn request(
        channel: Channel,
        after: i64,
        until: i64,
    ) -> (
        Request,
        oneshot::Receiver<Result<Vec<Outgoing>, Unrecoverable>>,
    ) {
        let (reply, rx) = oneshot::channel();
        let plan = ReplayPlan {
            since: format!("0:{after}"),
            partition: 0,
            after,
            until,
        };
        let name = channel.to_string();
        (
            Request {
                channel,
                name,
                plan,
                reply,
            },
            rx,
        )
    }

    fn record(id: &str, channel: &Channel, n: i64) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": id, "tenant_id": channel.tenant_id(), "channel": channel.to_string(),
            "type": "call.transcript", "data": {"n": n},
        }))
        .unwrap()
    }

    fn now_ms() -> Option<i64> {
        Some(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64,
        )
    }

    fn numbers(outcome: Result<Vec<Outgoing>, Unrecoverable>) -> Vec<i64> {
        outcome
            .unwrap()
            .iter()
            .map(|o| {
                let v: serde_json::Value = serde_json::from_str(o.frame.as_str()).unwrap();
                v["data"]["n"].as_i64().unwrap()
            })
            .collect()
    }

    fn channel() -> Channel {
        Channel::Call {
            tenant_id: Uuid::new_v4(),
            call_id: Uuid::new_v4(),
        }
    }

    #[test]
    fn positions_round_trip() {
        let at = TopicPosition::parse("3:17").unwrap();
        assert_eq!(
            at,
            TopicPosition {
                partition: 3,
                offset: 17
            }
        );
        assert_eq!(at.to_string(), "3:17");
        for bad in ["3", "x:1", "1:x", "ai:m:1", ""] {
            assert_eq!(TopicPosition::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn one_scan_serves_every_request_its_own_channel_and_range() {
        let (a, b) = (channel(), channel());
        let (ra, rx_a) = request(a, 1, 6);
        let (rb, rx_b) = request(b, 3, 8);
        let mut scan = Scan::new(vec![ra, rb], ReplayLimits::default());
        assert_eq!(scan.range(), (2, 8));
        for offset in 2..=8 {
            let ch = if offset % 2 == 0 { &a } else { &b };
            let payload = record(&format!("{offset}.0"), ch, offset);
            scan.record(0, offset, now_ms(), Some(&payload));
        }
        // A republished row (same id at a later offset) is a repeat.
        scan.record(0, 9, now_ms(), Some(&record("4.0", &a, 99)));
        scan.answer();
        assert_eq!(numbers(rx_a.blocking_recv().unwrap()), [2, 4, 6]);
        assert_eq!(numbers(rx_b.blocking_recv().unwrap()), [5, 7]);
    }

    #[test]
    fn another_tenants_record_on_a_lookalike_channel_is_not_replayed() {
        let a = channel();
        let (r, rx) = request(a, 0, 2);
        let mut scan = Scan::new(vec![r], ReplayLimits::default());
        let forged = serde_json::to_vec(&json!({
            "id": "1.0", "tenant_id": Uuid::new_v4(), "channel": a.to_string(),
            "type": "call.transcript", "data": {"n": 1},
        }))
        .unwrap();
        scan.record(0, 1, now_ms(), Some(&forged));
        scan.record(0, 2, now_ms(), Some(b"not json"));
        scan.answer();
        assert_eq!(numbers(rx.blocking_recv().unwrap()), Vec::<i64>::new());
    }

    #[test]
    fn a_gap_or_an_old_first_record_fails_only_the_requests_it_touches() {
        let a = channel();
        let (old, rx_old) = request(a, 0, 5);
        let (spans_gap, rx_gap) = request(a, 1, 5);
        let (after_gap, rx_after) = request(a, 3, 5);
        let limits = ReplayLimits {
            max_records: 100,
            max_age: Duration::from_secs(60),
        };
        let mut scan = Scan::new(vec![old, spans_gap, after_gap], limits);
        let hour_ago = now_ms().map(|t| t - 3_600_000);
        scan.record(0, 1, hour_ago, Some(&record("1.0", &a, 1)));
        scan.gap(2, 3);
        for offset in 4..=5 {
            scan.record(
                0,
                offset,
                now_ms(),
                Some(&record(&format!("{offset}.0"), &a, offset)),
            );
        }
        scan.answer();
        assert!(matches!(
            rx_old.blocking_recv().unwrap(),
            Err(Unrecoverable::TooOld)
        ));
        assert!(matches!(
            rx_gap.blocking_recv().unwrap(),
            Err(Unrecoverable::Gap)
        ));
        assert_eq!(numbers(rx_after.blocking_recv().unwrap()), [4, 5]);
    }
}
