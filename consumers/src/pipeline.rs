//! The batch loop shared by every input topic.
//!
//! receive into a bounded buffer → a lane takes a batch of partitions no
//! other lane holds → decode (pure) → one transaction: offset fence,
//! `event_id` dedupe, the domain's writes, dead letters, outbox, offsets →
//! commit → hand the outbox row to the relay → mirror offsets to Kafka. Up to
//! `concurrency` lanes run at once, each as its own task.
//!
//! [`BatchApplier`] is the step without Kafka (testable against Postgres
//! alone); [`Pipeline`] is the loop around it.

use crate::dead_letters::{self, DeadLetter};
use crate::envelope::{Envelope, Rejection};
use crate::health::{FailureKind, LoopHealth};
use crate::live::{LiveRecord, LiveUpdate, LocalHandoff};
use crate::metrics as m;
use crate::offsets::{self, FenceDecision};
use crate::outbox::{self, OutboxRecord, RelayWaker};
use chrono::{DateTime, Utc};
use futures_util::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sqlx::{PgConnection, PgPool};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One Kafka record, owned, as the pipeline sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// The record's Kafka timestamp (ms since the epoch), for the
    /// produce-to-commit latency.
    pub timestamp_ms: Option<i64>,
}

/// Envelope facts of an accepted event, and which record of the batch it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventMeta {
    pub event_id: Uuid,
    pub tenant_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub record: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Accepted<E> {
    pub meta: EventMeta,
    pub event: E,
}

/// What a domain's `apply` produces besides its writes.
#[derive(Debug)]
pub struct Effects {
    /// The batch's clock: one instant for every row it stamps.
    pub now: DateTime<Utc>,
    live: Vec<LiveUpdate>,
    rejected: Vec<(EventMeta, Rejection)>,
    repeats: usize,
    /// The topic of the batch's live records, when its outbox row may be
    /// written ahead ([`Effects::write_outbox_ahead`]).
    live_topic: Option<String>,
    ahead: Option<Ahead>,
}

/// The fewest live updates worth writing ahead of a batch's shared rows.
/// Writing ahead costs a statement, one more round trip before the commit,
/// and saves the other lanes the time to write them: about 5 µs an update
/// in the ingest bench (issue #14), so some 2.5 ms at this floor. Below it
/// both are small, and small batches are the live traffic whose commit
/// latency people see. The floor is a judgement, not a measured optimum.
pub const AHEAD_MIN_UPDATES: usize = 500;

/// The part of a batch's outbox row written ahead of its shared rows.
#[derive(Debug)]
struct Ahead {
    /// The row's provisional id ([`outbox::write_ahead`]).
    row: i64,
    /// The records written, made of the first `records.len()` live updates.
    records: Vec<OutboxRecord>,
}

impl Effects {
    pub fn new(now: DateTime<Utc>) -> Effects {
        Effects {
            now,
            live: Vec::new(),
            rejected: Vec::new(),
            repeats: 0,
            live_topic: None,
            ahead: None,
        }
    }

    /// Lets [`Effects::write_outbox_ahead`] write the batch's live updates,
    /// as records of `live_topic`. The pipeline's batches do.
    pub fn with_outbox(mut self, live_topic: &str) -> Effects {
        self.live_topic = Some(live_topic.to_owned());
        self
    }

    /// Writes the live updates pushed so far into the batch's outbox row
    /// now. A domain calls it right before its first lock on a row that
    /// every batch shares (an agent's day, a tenant's wallet): from that
    /// lock to the commit, the pipeline's other lanes wait for the batch,
    /// and the row's bulk is then already written (see
    /// [`outbox::write_ahead`]). The updates pushed after it, and the dead
    /// letters, complete the row at the commit. Once per batch, and only
    /// with at least [`AHEAD_MIN_UPDATES`] pushed: a later call, a smaller
    /// batch, or one without [`Effects::with_outbox`] leaves everything to
    /// the commit.
    pub async fn write_outbox_ahead(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let Some(topic) = &self.live_topic else {
            return Ok(());
        };
        if self.ahead.is_some() || self.live.len() < AHEAD_MIN_UPDATES {
            return Ok(());
        }
        let records: Vec<OutboxRecord> = self
            .live
            .iter()
            .map(|u| live_record(topic, u, self.now))
            .collect();
        let row = outbox::write_ahead(conn, &records).await?;
        self.ahead = Some(Ahead { row, records });
        Ok(())
    }

    /// Counts events deduped by their own row (see
    /// [`Domain::deduped_by_own_row`]) that the domain's insert found
    /// already stored: they are repeats, not applications.
    pub fn repeated(&mut self, n: usize) {
        self.repeats += n;
    }

    pub fn push(&mut self, update: LiveUpdate) {
        self.live.push(update);
    }

    /// Rejects an event for a rule that needs the database to check (a call
    /// of another tenant, an unpriced usage item). The event's own writes
    /// must not have been made.
    pub fn reject(&mut self, meta: &EventMeta, rejection: Rejection) {
        self.rejected.push((*meta, rejection));
    }

    pub fn live(&self) -> &[LiveUpdate] {
        &self.live
    }

    pub fn rejected(&self) -> &[(EventMeta, Rejection)] {
        &self.rejected
    }
}

/// A live update that is published at once, outside any transaction,
/// because it describes nothing stored (an assistant's streamed delta).
/// `id` must be stable across redeliveries so the gateway drops repeats.
#[derive(Debug, Clone)]
pub struct Ephemeral {
    pub id: String,
    pub update: LiveUpdate,
}

/// One input topic's business: decode its events, apply a batch of them.
pub trait Domain: Send + Sync + 'static {
    type Event: Clone + Send + Sync + 'static;

    /// Pure: the typed event of an envelope, or why it is rejected.
    fn decode(&self, envelope: &Envelope) -> Result<Self::Event, Rejection>;

    /// Writes the batch's effects inside the caller's transaction. Events
    /// are new (never applied before) and in record order.
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [Accepted<Self::Event>],
        fx: &'a mut Effects,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'a;

    /// True when the event's own row is unique by what makes it a repeat
    /// (a transcript line by call and `seq`, an activity by `event_id`) and
    /// every effect of the event follows from that row being inserted: the
    /// domain's insert then drops a repeat by itself, however late it comes,
    /// so its id is not looked up nor kept in `hub_processed_events`.
    fn deduped_by_own_row(&self, _event: &Self::Event) -> bool {
        false
    }

    /// Takes out of the batch the events that are only pushed, never stored.
    fn take_ephemeral(&self, _events: &mut Vec<Accepted<Self::Event>>) -> Vec<Ephemeral> {
        Vec::new()
    }

    /// True when the topic carries ephemeral events: they are then
    /// published the moment each record is received, not once the batch
    /// is full, because their whole point is latency.
    fn streams_ephemeral(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub group: String,
    pub topic: String,
    pub live_topic: String,
    pub dead_letter_topic: String,
    pub batch_max: usize,
    pub batch_wait: Duration,
    /// Transactions of this pipeline in flight at once, each over its own
    /// partitions (see [`take_lane`]). 1 applies one batch at a time.
    pub concurrency: usize,
}

impl PipelineConfig {
    fn lanes(&self) -> usize {
        self.concurrency.max(1)
    }

    /// Records received and not yet in a transaction, at most: enough to
    /// fill every lane and one more, so a lane that lands finds its next
    /// batch waiting.
    fn buffer_max(&self) -> usize {
        self.batch_max.max(1) * (self.lanes() + 1)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The database could not be reached or asked to retry: the same batch
    /// is tried again.
    #[error("database unavailable: {0}")]
    Transient(sqlx::Error),
    /// The database refused the batch's writes (a constraint, a type): the
    /// batch is split until the refused record is isolated and dead-lettered.
    #[error("database refused the batch: {0}")]
    Refused(sqlx::Error),
    /// The hub's own statements or schema are wrong (an undefined table or
    /// column, a value that does not decode, a privilege missing): no input
    /// record is at fault, so nothing is dead-lettered, and retrying cannot
    /// fix it. The loop keeps the batch (a fix or a migration may come) and
    /// reports itself stuck.
    #[error("hub defect (not the input's fault): {0}")]
    Defect(sqlx::Error),
    #[error("broker: {0}")]
    Kafka(#[from] KafkaError),
}

impl PipelineError {
    /// How the retry loop and readiness treat this error when it reaches
    /// them (a refusal normally does not: the batch is split and the
    /// record dead-lettered; one that still fails is a permanent failure).
    pub fn kind(&self) -> FailureKind {
        match self {
            PipelineError::Transient(_) | PipelineError::Kafka(_) => FailureKind::Transient,
            PipelineError::Refused(_) | PipelineError::Defect(_) => FailureKind::Permanent,
        }
    }
}

/// What a database error says about whose fault it is, by SQLSTATE class.
fn classify(e: &sqlx::Error) -> FailureClass {
    match e {
        // A missing partition (of the dedupe table, or of a domain's) is
        // reported as a check violation, but it is the schema's fault: split
        // and dead-lettered, every record of the day would be lost to it.
        sqlx::Error::Database(db) if db.message().starts_with("no partition of relation") => {
            FailureClass::Defect
        }
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(code) => classify_sqlstate(code),
            None => FailureClass::Refused,
        },
        // The connection, not the statement.
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => FailureClass::Transient,
        // Decoding a column, a missing column or type: the hub's code.
        _ => FailureClass::Defect,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureClass {
    Transient,
    Refused,
    Defect,
}

fn classify_sqlstate(code: &str) -> FailureClass {
    match code {
        // serialization failure, deadlock, lock timeout, shutdown, too many connections
        "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "53300" => {
            FailureClass::Transient
        }
        // Connection exceptions, insufficient resources (disk full, out of
        // memory), system errors: the server's state, not the statement.
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("58") => {
            FailureClass::Transient
        }
        // Data exceptions, integrity constraints, errors raised by a
        // function: this data is refused, other data would pass.
        c if c.starts_with("22") || c.starts_with("23") || c.starts_with("P0") => {
            FailureClass::Refused
        }
        // Syntax or access rule (undefined table or column, privilege),
        // feature not supported, internal errors: every record would fail.
        _ => FailureClass::Defect,
    }
}

impl From<sqlx::Error> for PipelineError {
    fn from(e: sqlx::Error) -> PipelineError {
        match classify(&e) {
            FailureClass::Transient => PipelineError::Transient(e),
            FailureClass::Refused => PipelineError::Refused(e),
            FailureClass::Defect => PipelineError::Defect(e),
        }
    }
}

/// The decoded form of a polled batch.
pub struct Decoded<E> {
    pub accepted: Vec<Accepted<E>>,
    pub rejected: Vec<(usize, Rejection, Option<Uuid>, Option<Uuid>)>,
}

/// What one transaction did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    pub applied: usize,
    pub duplicates: usize,
    pub rejected: usize,
    /// Records of this batch that an earlier transaction already covered.
    pub already_applied: usize,
    /// Partitions to seek back to their stored offset.
    pub reseek: Vec<(i32, i64)>,
    /// Partitions whose next offset this transaction stored.
    pub committed: Vec<(i32, i64)>,
}

impl BatchOutcome {
    fn absorb(&mut self, other: BatchOutcome) {
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        self.already_applied += other.already_applied;
        self.reseek.extend(other.reseek);
        // Later halves move the same partitions further: keep the last.
        for (p, o) in other.committed {
            match self.committed.iter_mut().find(|(q, _)| *q == p) {
                Some(entry) => entry.1 = entry.1.max(o),
                None => self.committed.push((p, o)),
            }
        }
    }
}

/// Decodes and applies batches against Postgres. No Kafka here.
pub struct BatchApplier<D: Domain> {
    domain: Arc<D>,
    pool: PgPool,
    cfg: Arc<PipelineConfig>,
    relay: RelayWaker,
}

impl<D: Domain> Clone for BatchApplier<D> {
    fn clone(&self) -> Self {
        BatchApplier {
            domain: self.domain.clone(),
            pool: self.pool.clone(),
            cfg: self.cfg.clone(),
            relay: self.relay.clone(),
        }
    }
}

impl<D: Domain> BatchApplier<D> {
    pub fn new(domain: Arc<D>, pool: PgPool, cfg: Arc<PipelineConfig>) -> Self {
        BatchApplier {
            domain,
            pool,
            cfg,
            relay: RelayWaker::default(),
        }
    }

    /// Hands every committed outbox row to `relay` and wakes it.
    pub fn with_relay(mut self, relay: RelayWaker) -> Self {
        self.relay = relay;
        self
    }

    pub fn domain(&self) -> &D {
        &self.domain
    }

    pub fn decode(&self, records: &[RawRecord]) -> Decoded<D::Event> {
        let mut accepted = Vec::with_capacity(records.len());
        let mut rejected = Vec::new();
        for (i, r) in records.iter().enumerate() {
            match Envelope::decode(r.payload.as_deref()) {
                Err(e) => rejected.push((i, e, None, None)),
                Ok(env) => match self.domain.decode(&env) {
                    Ok(event) => accepted.push(Accepted {
                        meta: EventMeta {
                            event_id: env.event_id,
                            tenant_id: env.tenant_id,
                            occurred_at: env.occurred_at,
                            record: i,
                        },
                        event,
                    }),
                    Err(e) => rejected.push((i, e, Some(env.event_id), Some(env.tenant_id))),
                },
            }
        }
        Decoded { accepted, rejected }
    }

    /// Applies `records` (already decoded) in one transaction; on a refusal,
    /// splits the batch so that only the refused record is dead-lettered.
    pub async fn apply(
        &self,
        records: &[RawRecord],
        decoded: Decoded<D::Event>,
        tried_seeks: &HashMap<i32, i64>,
    ) -> Result<BatchOutcome, PipelineError> {
        let mut pending = vec![(0..records.len(), decoded)];
        let mut total = BatchOutcome::default();
        while let Some((range, part)) = pending.pop() {
            match self.apply_once(records, &range, &part, tried_seeks).await {
                Ok(outcome) => total.absorb(outcome),
                Err(PipelineError::Refused(e)) if range.len() > 1 => {
                    tracing::warn!(error = %e, records = range.len(), "batch refused; splitting");
                    let mid = range.start + range.len() / 2;
                    let (left, right) = split(part, mid);
                    // Stack: the left half is applied first, keeping offsets in order.
                    pending.push((mid..range.end, right));
                    pending.push((range.start..mid, left));
                }
                Err(PipelineError::Refused(e)) => {
                    let rejection =
                        Rejection::RuleViolation(format!("the database refused it: {e}"));
                    let lone = Decoded {
                        accepted: Vec::new(),
                        rejected: vec![(range.start, rejection, None, None)],
                    };
                    total.absorb(self.apply_once(records, &range, &lone, tried_seeks).await?);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    async fn apply_once(
        &self,
        records: &[RawRecord],
        range: &std::ops::Range<usize>,
        decoded: &Decoded<D::Event>,
        tried_seeks: &HashMap<i32, i64>,
    ) -> Result<BatchOutcome, PipelineError> {
        let started = Instant::now();
        let cfg = &self.cfg;
        // Nothing of the batch has run yet, so a failure to get a
        // connection is the database's state, never the batch's fault,
        // whatever its SQLSTATE: a database that refuses connections says
        // 55000, which would otherwise count as a refusal and send good
        // records down the split-and-dead-letter path.
        let mut tx = self.pool.begin().await.map_err(PipelineError::Transient)?;
        let mut outcome = BatchOutcome::default();

        // Offset fence: which of these records are new to the store.
        let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for i in range.clone() {
            by_partition
                .entry(records[i].partition)
                .or_default()
                .push(i);
        }
        let partitions: Vec<i32> = by_partition.keys().copied().collect();
        let stored = offsets::lock(&mut tx, &cfg.group, &cfg.topic, &partitions).await?;
        let mut live_records = vec![false; records.len()];
        for (p, idxs) in &by_partition {
            let offs: Vec<i64> = idxs.iter().map(|i| records[*i].offset).collect();
            match offsets::decide(
                stored.get(p).copied().flatten(),
                &offs,
                tried_seeks.get(p).copied(),
            ) {
                FenceDecision::Apply { from } => {
                    outcome.already_applied += from;
                    for i in &idxs[from..] {
                        live_records[*i] = true;
                    }
                    let next = records[*idxs.last().expect("non-empty")].offset + 1;
                    outcome.committed.push((*p, next));
                }
                FenceDecision::Skip => outcome.already_applied += idxs.len(),
                FenceDecision::Reseek(o) => outcome.reseek.push((*p, o)),
            }
        }

        // Duplicate event_ids: within the batch first, then against history.
        let mut seen = HashSet::new();
        let candidates: Vec<&Accepted<D::Event>> = decoded
            .accepted
            .iter()
            .filter(|a| live_records[a.meta.record])
            .filter(|a| seen.insert(a.meta.event_id))
            .collect();
        let in_batch_dupes = decoded
            .accepted
            .iter()
            .filter(|a| live_records[a.meta.record])
            .count()
            - candidates.len();
        let domain = &self.domain;
        // Sorted: concurrent transactions (other partitions, other nodes)
        // that share an id then insert their ids in one order and queue on
        // the unique key instead of deadlocking.
        let mut ids: Vec<Uuid> = candidates
            .iter()
            .filter(|a| !domain.deduped_by_own_row(&a.event))
            .map(|a| a.meta.event_id)
            .collect();
        ids.sort_unstable();
        let fresh_ids: HashSet<Uuid> = if ids.is_empty() {
            HashSet::new()
        } else {
            sqlx::query_scalar(DEDUPE_SQL)
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect()
        };
        let fresh: Vec<Accepted<D::Event>> = candidates
            .into_iter()
            .filter(|a| domain.deduped_by_own_row(&a.event) || fresh_ids.contains(&a.meta.event_id))
            .cloned()
            .collect();
        outcome.duplicates = in_batch_dupes + (ids.len() - fresh_ids.len());

        let fenced = started.elapsed();
        let mut fx = Effects::new(Utc::now()).with_outbox(&cfg.live_topic);
        if !fresh.is_empty() {
            self.domain.apply(&mut tx, &fresh, &mut fx).await?;
        }
        if !fx.rejected.is_empty() {
            // A rejected event was not applied: forget its id, so the same
            // record sent again once its cause is fixed (`lad-hub
            // dead-letters replay`) is applied rather than taken for a repeat.
            let ids: Vec<Uuid> = fx.rejected.iter().map(|(m, _)| m.event_id).collect();
            sqlx::query("DELETE FROM hub_processed_events WHERE event_id = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
        }
        let applied = started.elapsed();
        outcome.applied = fresh.len() - fx.rejected.len() - fx.repeats;
        outcome.duplicates += fx.repeats;

        // Dead letters: decode rejections of live records, then the domain's own.
        let topic = cfg.topic.as_str();
        let mut letters: Vec<DeadLetter<'_>> = decoded
            .rejected
            .iter()
            .filter(|(i, ..)| live_records[*i])
            .map(|(i, rejection, event_id, tenant_id)| DeadLetter {
                topic,
                record: &records[*i],
                rejection: rejection.clone(),
                event_id: *event_id,
                tenant_id: *tenant_id,
            })
            .collect();
        letters.extend(fx.rejected.iter().map(|(meta, rejection)| DeadLetter {
            topic,
            record: &records[meta.record],
            rejection: rejection.clone(),
            event_id: Some(meta.event_id),
            tenant_id: Some(meta.tenant_id),
        }));
        outcome.rejected = letters.len();
        dead_letters::store(&mut tx, &letters).await?;

        let (ahead_row, mut publish) = match fx.ahead.take() {
            Some(Ahead { row, records }) => (Some(row), records),
            None => (None, Vec::new()),
        };
        let written_ahead = publish.len();
        publish.extend(
            fx.live[written_ahead..]
                .iter()
                .map(|u| live_record(&cfg.live_topic, u, fx.now)),
        );
        publish.extend(
            letters.iter().map(|l| OutboxRecord {
                topic: cfg.dead_letter_topic.clone(),
                key: l.key_text(),
                value: serde_json::value::to_raw_value(&l.to_json(fx.now))
                    .expect("dead letters serialize"),
            }),
        );
        if !publish.is_empty() {
            // Outbox ids in commit order among this pipeline's transactions
            // (its concurrent lanes, its other nodes): the id is taken under
            // a lock held until the commit, so a row never gets an id below
            // one already committed. Only the tail is serialized, after
            // every row lock is taken, so the holder never waits on a lane.
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind(OUTBOX_ORDER_LOCK)
                .bind(format!("{}/{}", cfg.group, cfg.topic))
                .execute(&mut *tx)
                .await?;
        }
        let outbox_row = match ahead_row {
            Some(row) => Some(outbox::finish(&mut tx, row, &publish[written_ahead..]).await?),
            None => outbox::write(&mut tx, &publish).await?,
        };
        offsets::store(&mut tx, &cfg.group, &cfg.topic, &outcome.committed).await?;
        let written = started.elapsed();
        tx.commit().await?;
        if let Some(id) = outbox_row {
            self.relay.committed(id, publish);
        }
        tracing::debug!(
            topic = %cfg.topic,
            records = range.len(),
            fence_dedupe_ms = fenced.as_millis() as u64,
            domain_ms = (applied - fenced).as_millis() as u64,
            outbox_ms = (written - applied).as_millis() as u64,
            commit_ms = (started.elapsed() - written).as_millis() as u64,
            "batch committed"
        );

        metrics::histogram!(m::BATCH_SECONDS, "topic" => cfg.topic.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(m::EVENTS_APPLIED, "topic" => cfg.topic.clone())
            .increment(outcome.applied as u64);
        metrics::counter!(m::EVENTS_REJECTED, "topic" => cfg.topic.clone())
            .increment(outcome.rejected as u64);
        metrics::counter!(m::EVENTS_DUPLICATE, "topic" => cfg.topic.clone())
            .increment(outcome.duplicates as u64);
        if outcome.already_applied > 0 {
            metrics::counter!(m::RECORDS_ALREADY_APPLIED, "topic" => cfg.topic.clone())
                .increment(outcome.already_applied as u64);
        }
        let committed_ms = Utc::now().timestamp_millis();
        let latency =
            metrics::histogram!(m::PRODUCE_TO_COMMIT_SECONDS, "topic" => cfg.topic.clone());
        for (record, _) in records.iter().zip(&live_records).filter(|(_, live)| **live) {
            if let Some(ts) = record.timestamp_ms {
                latency.record((committed_ms - ts).max(0) as f64 / 1000.0);
            }
        }
        Ok(outcome)
    }
}

/// First key of the advisory lock that orders a pipeline's outbox rows
/// (the second is the hash of its group and topic).
const OUTBOX_ORDER_LOCK: i32 = 0x4c41_4400; // "LAD\0"

/// Takes the records of one transaction ("lane") out of `buffer` (records
/// received, in arrival order): only partitions no lane in flight holds
/// (`held`), so a partition's records are applied by one transaction at a
/// time and in order; at most `ceil(free partitions / free_lanes)` of them,
/// largest first, so the lanes still free find partitions of their own;
/// at most `batch_max` records, each partition's a prefix of what it has
/// buffered (the rest waits for this lane to land).
pub fn take_lane(
    buffer: &mut Vec<RawRecord>,
    held: &HashSet<i32>,
    free_lanes: usize,
    batch_max: usize,
) -> Vec<RawRecord> {
    let mut sizes: BTreeMap<i32, usize> = BTreeMap::new();
    for r in buffer.iter().filter(|r| !held.contains(&r.partition)) {
        *sizes.entry(r.partition).or_default() += 1;
    }
    let mut by_size: Vec<(i32, usize)> = sizes.into_iter().collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let share = by_size.len().div_ceil(free_lanes.max(1));
    let chosen: HashSet<i32> = by_size.iter().take(share).map(|(p, _)| *p).collect();
    let mut lane = Vec::new();
    let mut rest = Vec::with_capacity(buffer.len());
    for r in buffer.drain(..) {
        if lane.len() < batch_max.max(1) && chosen.contains(&r.partition) {
            lane.push(r);
        } else {
            rest.push(r);
        }
    }
    *buffer = rest;
    lane
}

/// Records of `buffer` that a new lane could take now.
fn free_records(buffer: &[RawRecord], held: &HashSet<i32>) -> usize {
    buffer
        .iter()
        .filter(|r| !held.contains(&r.partition))
        .count()
}

/// Records the batch's event ids (all distinct) in `hub_processed_events`
/// and returns the ones never applied before. The table is partitioned by
/// the UTC day an event was first applied (migration 0004), so its unique
/// key is `(event_id, applied_on)`: an id is first looked up across every
/// retained day, then inserted for today. Within ten minutes
/// of midnight it is inserted for both days around it, so two transactions
/// on either side of midnight still collide on one key and the second waits
/// for the first (an id is fresh only if none of its rows already existed).
/// The clock is the statement's, not the transaction's start.
/// `seen` is MATERIALIZED: inlined, a generic plan pushes `event_id = ANY($1)`
/// into a per-id probe of every partition (ids × ids × partitions: 50 s
/// for a 5,000-record batch, measured); materialized, each partition's
/// index is scanned once for the whole array and the rest is a hash anti join.
const DEDUPE_SQL: &str = "
WITH t AS MATERIALIZED (
    SELECT clock_timestamp() AT TIME ZONE 'UTC' AS ts
), days AS (
    SELECT ts::date AS day FROM t
    UNION SELECT (ts - interval '10 minutes')::date FROM t
    UNION SELECT (ts + interval '10 minutes')::date FROM t
), seen AS MATERIALIZED (
    SELECT event_id FROM hub_processed_events WHERE event_id = ANY($1)
), ins AS (
    INSERT INTO hub_processed_events (event_id, applied_on)
    SELECT e.event_id, d.day
    FROM UNNEST($1::uuid[]) AS e(event_id) CROSS JOIN days d
    WHERE NOT EXISTS (SELECT 1 FROM seen s WHERE s.event_id = e.event_id)
    ON CONFLICT DO NOTHING
    RETURNING event_id
)
SELECT event_id FROM ins GROUP BY event_id HAVING count(*) = (SELECT count(*) FROM days)";

/// The outbox record of a committed update (the relay adds its `id`).
pub fn live_record(live_topic: &str, u: &LiveUpdate, committed_at: DateTime<Utc>) -> OutboxRecord {
    OutboxRecord {
        topic: live_topic.to_owned(),
        key: Some(u.tenant_id.to_string()),
        value: LiveRecord::committed(u, committed_at),
    }
}

fn split<E>(d: Decoded<E>, mid: usize) -> (Decoded<E>, Decoded<E>) {
    let (la, ra): (Vec<_>, Vec<_>) = d.accepted.into_iter().partition(|a| a.meta.record < mid);
    let (lr, rr): (Vec<_>, Vec<_>) = d.rejected.into_iter().partition(|r| r.0 < mid);
    (
        Decoded {
            accepted: la,
            rejected: lr,
        },
        Decoded {
            accepted: ra,
            rejected: rr,
        },
    )
}

/// Notes rebalances so the loop can forget per-partition seek state.
#[derive(Default, Clone)]
pub struct PipelineContext(Arc<AtomicBool>);

impl ClientContext for PipelineContext {}

impl ConsumerContext for PipelineContext {
    fn post_rebalance(
        &self,
        _base: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
        self.0.store(true, Ordering::Release);
    }
}

pub type PipelineConsumer = StreamConsumer<PipelineContext>;

/// One input topic's consumer loop around a [`BatchApplier`].
pub struct Pipeline<D: Domain> {
    applier: BatchApplier<D>,
    consumer: PipelineConsumer,
    rebalanced: PipelineContext,
    ephemerals: Ephemerals,
    cfg: Arc<PipelineConfig>,
    health: LoopHealth,
    failing: Arc<AtomicUsize>,
}

/// Records taken from the consumer's queue at once, without waiting, before
/// the loop yields to the lanes.
const RECEIVE_BURST: usize = 512;

/// Publishes ephemeral updates (assistant deltas) outside any transaction.
#[derive(Clone)]
struct Ephemerals {
    producer: FutureProducer,
    live_topic: String,
    local: Option<LocalHandoff>,
}

impl Ephemerals {
    fn publish(&self, items: Vec<Ephemeral>) {
        for item in items {
            let origin = self.local.as_ref().map(|l| l.origin.as_str());
            let payload = LiveRecord::ephemeral(&item.id, &item.update, origin);
            if let Some(local) = &self.local {
                local.gateway.deliver(&payload);
            }
            let key = item.update.tenant_id.to_string();
            let record = FutureRecord::to(&self.live_topic)
                .key(&key)
                .payload(&payload);
            // Fire and forget: an ephemeral update lost to a full queue is
            // better than a stalled pipeline; the completed reply is durable.
            if let Err((e, _)) = self.producer.send_result(record) {
                metrics::counter!(m::EPHEMERAL_DROPPED).increment(1);
                tracing::warn!(error = %e, "ephemeral live update dropped");
            }
        }
    }
}

/// One transaction's work, run as its own task so that lanes overlap: one
/// lane's CPU work (decoding, merging, serializing the outbox) runs while
/// another's statements run in Postgres.
struct Lane<D: Domain> {
    applier: BatchApplier<D>,
    ephemerals: Ephemerals,
    health: LoopHealth,
    /// Lanes of the pipeline in a failure streak: another lane landing
    /// does not end the pipeline's streak while this is above zero.
    failing: Arc<AtomicUsize>,
    topic: String,
}

/// A lane that ended: the partitions it held, and what it committed
/// (`None`: left undone at shutdown, for the next owner).
struct Landed {
    id: u64,
    partitions: Vec<i32>,
    outcome: Option<BatchOutcome>,
}

impl<D: Domain> Lane<D> {
    /// Decodes the records and applies them, retrying transient failures of
    /// the same batch until it lands or the hub shuts down.
    async fn run(
        self,
        records: Vec<RawRecord>,
        tried_seeks: HashMap<i32, i64>,
        shutdown: CancellationToken,
    ) -> Option<BatchOutcome> {
        let decoding = Instant::now();
        let mut decoded = self.applier.decode(&records);
        let ephemeral = self.applier.domain().take_ephemeral(&mut decoded.accepted);
        // A streaming topic published them the moment they were received.
        if !self.applier.domain().streams_ephemeral() {
            self.ephemerals.publish(ephemeral);
        }
        tracing::debug!(
            topic = %self.topic,
            records = records.len(),
            decode_ms = decoding.elapsed().as_millis() as u64,
            "lane decoded"
        );
        let mut decoded = Some(decoded);
        let mut attempt = 0u32;
        let outcome = loop {
            let d = decoded.take().unwrap_or_else(|| {
                // Ephemeral updates were published on the first attempt.
                let mut d = self.applier.decode(&records);
                drop(self.applier.domain().take_ephemeral(&mut d.accepted));
                d
            });
            match self.applier.apply(&records, d, &tried_seeks).await {
                Ok(outcome) => break Some(outcome),
                Err(e) => {
                    if attempt == 0 {
                        self.failing.fetch_add(1, Ordering::AcqRel);
                    }
                    attempt += 1;
                    let kind = e.kind();
                    self.health.failed(kind, &e);
                    metrics::counter!(m::PIPELINE_RETRIES, "topic" => self.topic.clone(), "kind" => kind.as_str())
                        .increment(1);
                    metrics::counter!(m::LOOP_FAILURES, "loop" => self.health.name().to_owned(), "kind" => kind.as_str())
                        .increment(1);
                    match kind {
                        FailureKind::Transient => {
                            tracing::warn!(error = %e, attempt, topic = %self.topic, "batch failed; retrying")
                        }
                        // Retried all the same (a fix may be deployed under a
                        // running hub), but loudly, and readiness goes red.
                        FailureKind::Permanent => {
                            tracing::error!(error = %e, attempt, topic = %self.topic,
                                "batch failed for a reason retrying will not fix (a bug or the schema); retrying, /readyz is red")
                        }
                    }
                    let backoff = Duration::from_millis(50 * u64::from(attempt.min(40)));
                    tokio::select! {
                        _ = shutdown.cancelled() => break None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        };
        if attempt > 0 {
            self.failing.fetch_sub(1, Ordering::AcqRel);
        }
        outcome
    }
}

impl<D: Domain> Pipeline<D> {
    pub fn new(
        domain: Arc<D>,
        pool: PgPool,
        kafka: &crate::kafka::KafkaSettings,
        producer: FutureProducer,
        waker: RelayWaker,
        cfg: PipelineConfig,
    ) -> Result<Self, KafkaError> {
        let rebalanced = PipelineContext::default();
        let client = kafka.pipeline_consumer_config(&cfg.group, domain.streams_ephemeral());
        let consumer: PipelineConsumer = client.create_with_context(rebalanced.clone())?;
        consumer.subscribe(&[&cfg.topic])?;
        let cfg = Arc::new(cfg);
        Ok(Pipeline {
            applier: BatchApplier::new(domain, pool, cfg.clone()).with_relay(waker),
            consumer,
            rebalanced,
            ephemerals: Ephemerals {
                producer,
                live_topic: cfg.live_topic.clone(),
                local: None,
            },
            cfg,
            health: LoopHealth::default(),
            failing: Arc::default(),
        })
    }

    /// Reports this pipeline's batches and failures to readiness.
    pub fn with_health(mut self, health: LoopHealth) -> Self {
        self.health = health;
        self
    }

    /// Also hands ephemeral records to this process's gateway (see
    /// [`crate::live::LocalGateway`]).
    pub fn with_local_handoff(mut self, local: LocalHandoff) -> Self {
        self.ephemerals.local = Some(local);
        self
    }

    /// Runs until `shutdown`; the transactions in flight are finished and
    /// committed first.
    ///
    /// Up to `concurrency` transactions ("lanes") run at once, each over
    /// partitions no other lane holds, and each starts as soon as it has
    /// work: a lane that lands does not wait for the others. While the
    /// lanes run, the consumer keeps receiving (up to
    /// [`PipelineConfig::buffer_max`] records), so broker round trips
    /// overlap the database work and batches grow with the load. A lane
    /// starts with what has arrived when none is running (after
    /// `batch_wait` for company); beside running ones, only with a full
    /// batch, so a backlog is applied in large transactions.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), PipelineError> {
        let mut tried_seeks: HashMap<i32, i64> = HashMap::new();
        tracing::info!(topic = %self.cfg.topic, group = %self.cfg.group, "pipeline started");
        let (lanes, batch_max) = (self.cfg.lanes(), self.cfg.batch_max.max(1));
        let mut buffer: Vec<RawRecord> = Vec::new();
        // When the oldest record of `buffer` arrived, for `batch_wait`.
        let mut waiting_since: Option<tokio::time::Instant> = None;
        let mut held: HashSet<i32> = HashSet::new();
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut started: BTreeMap<u64, Instant> = BTreeMap::new();
        let mut next_lane = 0u64;
        let mut stopping = false;
        loop {
            if self.rebalanced.0.swap(false, Ordering::AcqRel) {
                tried_seeks.clear();
            }
            let idle = in_flight.is_empty();
            let waited = waiting_since
                .is_some_and(|t| t.elapsed() >= self.cfg.batch_wait || buffer.len() >= batch_max);
            while !stopping && in_flight.len() < lanes {
                let free = free_records(&buffer, &held);
                if free == 0 || !(free >= batch_max || (idle && waited)) {
                    break;
                }
                let records = take_lane(&mut buffer, &held, lanes - in_flight.len(), batch_max);
                let partitions: Vec<i32> = records
                    .iter()
                    .map(|r| r.partition)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                held.extend(&partitions);
                tracing::debug!(
                    topic = %self.cfg.topic,
                    records = records.len(),
                    partitions = ?partitions,
                    buffered = buffer.len(),
                    in_flight = in_flight.len(),
                    "lane started"
                );
                if started.is_empty() {
                    self.health.busy();
                }
                let id = next_lane;
                next_lane += 1;
                started.insert(id, Instant::now());
                let lane = Lane {
                    applier: self.applier.clone(),
                    ephemerals: self.ephemerals.clone(),
                    health: self.health.clone(),
                    failing: self.failing.clone(),
                    topic: self.cfg.topic.clone(),
                };
                let seeks = partitions
                    .iter()
                    .filter_map(|p| tried_seeks.get(p).map(|o| (*p, *o)))
                    .collect();
                let work = tokio::spawn(lane.run(records, seeks, shutdown.clone()));
                in_flight.push(async move {
                    let outcome = match work.await {
                        Ok(outcome) => outcome,
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        Err(_) => None,
                    };
                    Landed {
                        id,
                        partitions,
                        outcome,
                    }
                });
            }
            if buffer.is_empty() {
                waiting_since = None;
            }
            if stopping && in_flight.is_empty() {
                break;
            }
            let deadline = waiting_since.map(|t| t + self.cfg.batch_wait);
            tokio::select! {
                Some(landed) = in_flight.next(), if !in_flight.is_empty() => {
                    for p in &landed.partitions {
                        held.remove(p);
                    }
                    started.remove(&landed.id);
                    match landed.outcome {
                        Some(outcome) => {
                            self.health.landed(
                                started.values().min().copied(),
                                self.failing.load(Ordering::Acquire) > 0,
                            );
                            self.landed(outcome, &mut buffer, &mut tried_seeks);
                        }
                        // Left undone at shutdown: the next owner's.
                        None => stopping = true,
                    }
                }
                _ = shutdown.cancelled(), if !stopping => stopping = true,
                received = self.consumer.recv(), if !stopping && buffer.len() < self.cfg.buffer_max() => {
                    match received {
                        Ok(m) => {
                            waiting_since.get_or_insert_with(tokio::time::Instant::now);
                            self.received(own(&m), &mut buffer);
                            // Take what else has already arrived, then let the
                            // lanes just spawned run: a backlog is always ready,
                            // and a lane parked behind this task (tokio runs a
                            // task spawned here on this worker next) waited
                            // half a second for 5,000 receives (measured).
                            let mut taken = 0;
                            while taken < RECEIVE_BURST && buffer.len() < self.cfg.buffer_max() {
                                match self.consumer.recv().now_or_never() {
                                    Some(Ok(m)) => self.received(own(&m), &mut buffer),
                                    _ => break,
                                }
                                taken += 1;
                            }
                            tokio::task::yield_now().await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "kafka receive failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)),
                    if deadline.is_some() && in_flight.is_empty() && !waited => {}
            }
        }
        tracing::info!(topic = %self.cfg.topic, "pipeline stopped");
        Ok(())
    }

    /// After a lane committed: seek back where the store is behind the
    /// consumer, mirror the stored offsets to Kafka.
    fn landed(
        &self,
        outcome: BatchOutcome,
        buffer: &mut Vec<RawRecord>,
        tried_seeks: &mut HashMap<i32, i64>,
    ) {
        // A partition sought back is delivered again from the seek.
        buffer.retain(|r| outcome.reseek.iter().all(|(p, _)| *p != r.partition));
        for (partition, offset) in &outcome.reseek {
            tracing::warn!(
                partition,
                offset,
                "consumer ahead of stored offset; seeking back"
            );
            if let Err(e) = self.consumer.seek(
                &self.cfg.topic,
                *partition,
                Offset::Offset(*offset),
                Duration::from_secs(5),
            ) {
                tracing::warn!(error = %e, partition, "seek failed");
            }
            tried_seeks.insert(*partition, *offset);
        }
        if !outcome.committed.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (partition, next) in &outcome.committed {
                tried_seeks.remove(partition);
                let _ =
                    tpl.add_partition_offset(&self.cfg.topic, *partition, Offset::Offset(*next));
            }
            // Lag tooling only: the truth is in hub_consumer_offsets.
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(error = %e, "kafka offset commit failed");
            }
        }
    }

    fn received(&self, record: RawRecord, buffer: &mut Vec<RawRecord>) {
        let domain = self.applier.domain();
        if domain.streams_ephemeral() {
            let mut one = self.applier.decode(std::slice::from_ref(&record));
            self.ephemerals
                .publish(domain.take_ephemeral(&mut one.accepted));
        }
        buffer.push(record);
    }
}

fn own<M: Message>(m: &M) -> RawRecord {
    RawRecord {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        timestamp_ms: m.timestamp().to_millis(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_steer_the_loop_by_whose_fault_they_are() {
        use FailureClass::*;
        for (code, class) in [
            ("40001", Transient), // serialization failure
            ("40P01", Transient), // deadlock
            ("08006", Transient), // connection failure
            ("57P01", Transient), // admin shutdown
            ("53100", Transient), // disk full
            ("23514", Refused),   // check violation: this record
            ("22003", Refused),   // numeric out of range: this record
            ("P0001", Refused),   // raised by a function
            ("42P01", Defect),    // undefined table: every record
            ("42703", Defect),    // undefined column
            ("42501", Defect),    // insufficient privilege
            ("XX000", Defect),    // internal error
        ] {
            assert_eq!(classify_sqlstate(code), class, "{code}");
        }
    }

    fn rec(partition: i32, offset: i64) -> RawRecord {
        RawRecord {
            partition,
            offset,
            key: None,
            payload: None,
            timestamp_ms: None,
        }
    }

    fn places(lane: &[RawRecord]) -> Vec<(i32, i64)> {
        lane.iter().map(|r| (r.partition, r.offset)).collect()
    }

    #[test]
    fn a_lane_takes_its_share_of_the_free_partitions_largest_first_in_order() {
        // Arrival order interleaves partitions, as librdkafka delivers them.
        let mut buffer = vec![
            rec(0, 10),
            rec(1, 5),
            rec(0, 11),
            rec(2, 7),
            rec(0, 12),
            rec(1, 6),
        ];
        // Two lanes free, three partitions: this one takes two of them.
        let lane = take_lane(&mut buffer, &HashSet::new(), 2, 100);
        assert_eq!(
            places(&lane),
            vec![(0, 10), (1, 5), (0, 11), (0, 12), (1, 6)]
        );
        assert_eq!(places(&buffer), vec![(2, 7)]);
        // The last free lane takes what is left.
        let lane = take_lane(&mut buffer, &HashSet::from([0, 1]), 1, 100);
        assert_eq!(places(&lane), vec![(2, 7)]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_lane_never_takes_a_partition_another_lane_holds() {
        let mut buffer = vec![rec(0, 1), rec(1, 1), rec(0, 2), rec(1, 2)];
        let lane = take_lane(&mut buffer, &HashSet::from([0]), 1, 100);
        assert_eq!(places(&lane), vec![(1, 1), (1, 2)]);
        assert_eq!(places(&buffer), vec![(0, 1), (0, 2)]);
        assert_eq!(free_records(&buffer, &HashSet::from([0])), 0);
        assert!(take_lane(&mut buffer, &HashSet::from([0]), 1, 100).is_empty());
    }

    #[test]
    fn a_lane_holds_at_most_batch_max_and_each_partition_keeps_a_prefix() {
        let mut buffer: Vec<RawRecord> =
            (0..6).flat_map(|o| [rec(0, o), rec(1, 100 + o)]).collect();
        let lane = take_lane(&mut buffer, &HashSet::new(), 1, 5);
        assert_eq!(lane.len(), 5);
        assert_eq!(
            places(&buffer),
            vec![
                (1, 102),
                (0, 3),
                (1, 103),
                (0, 4),
                (1, 104),
                (0, 5),
                (1, 105)
            ]
        );
        // Every partition's records are a prefix in the lane, the suffix after.
        for p in [0, 1] {
            let offs: Vec<i64> = lane
                .iter()
                .chain(&buffer)
                .filter(|r| r.partition == p)
                .map(|r| r.offset)
                .collect();
            assert!(
                offs.windows(2).all(|w| w[0] < w[1]),
                "partition {p}: {offs:?}"
            );
        }
    }

    #[test]
    fn only_dependency_failures_are_transient() {
        let pool_timeout = PipelineError::from(sqlx::Error::PoolTimedOut);
        assert_eq!(pool_timeout.kind(), FailureKind::Transient);
        let decode = PipelineError::from(sqlx::Error::ColumnNotFound("x".into()));
        assert!(matches!(decode, PipelineError::Defect(_)));
        assert_eq!(decode.kind(), FailureKind::Permanent);
    }
}
