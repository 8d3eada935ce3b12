//! The transactional outbox and its relay.
//!
//! A batch writes every record it wants published (live updates, dead
//! letters) as ONE outbox row in its own transaction. The [`Relay`] publishes
//! rows in id order and deletes them once the broker acknowledged them, so a
//! crash between commit and publish delays a message, never loses it. A crash
//! between publish and delete publishes it again with the same `id`, which is
//! how the gateway (and any analytics consumer) drops the repeat.
//!
//! The table is the truth; memory only saves reading it back. A pipeline
//! of the same process hands each committed row's records to its relay
//! ([`RelayWaker::committed`]), which still takes the ids to publish, in
//! order, from the table, and reads only the rows it was not handed (other
//! nodes' rows, rows from before a restart, rows the bounded hand-off let
//! go).

use crate::health::{FailureKind, LoopHealth};
use crate::metrics as m;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::{PgConnection, PgPool};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A record to publish once the transaction that wrote it commits. The
/// value is already JSON text: a batch's row holds thousands of records,
/// and building each as a `Value` tree only to serialize it at once cost
/// more than the row's insert (issue #14).
#[derive(Debug, Clone, Serialize)]
pub struct OutboxRecord {
    pub topic: String,
    pub key: Option<String>,
    pub value: Box<RawValue>,
}

impl OutboxRecord {
    /// Bytes of its topic, key and value.
    fn size(&self) -> usize {
        self.topic.len() + self.key.as_ref().map_or(0, String::len) + self.value.get().len()
    }
}

/// Writes `records` as one row and returns its id (`None`: nothing to write).
pub async fn write(
    conn: &mut PgConnection,
    records: &[OutboxRecord],
) -> Result<Option<i64>, sqlx::Error> {
    if records.is_empty() {
        return Ok(None);
    }
    let id = sqlx::query_scalar("INSERT INTO hub_outbox (records) VALUES ($1) RETURNING id")
        .bind(text(records))
        .fetch_one(conn)
        .await?;
    Ok(Some(id))
}

/// Writes the first `records` of a batch's row (column `ahead`, migration
/// 0006) before the batch locks the rows every batch shares, and returns
/// the row's provisional id, which [`finish`] replaces. Until then the
/// row's id is negative: no committed row carries one, so a row that is
/// never finished is never published (its transaction can only roll back).
///
/// Why (issue #14): the lanes of a pipeline take turns on the shared rows
/// (an agent's day, a tenant's wallet) from their first lock to their
/// commit. A batch's row is megabytes, two thirds of them the updates
/// made before that lock (calls, lines, analyses). Written here, they
/// leave the turn; only [`finish`]'s tail stays in it.
pub async fn write_ahead(
    conn: &mut PgConnection,
    records: &[OutboxRecord],
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO hub_outbox (id, ahead) VALUES (-nextval('hub_outbox_id_seq'), $1) \
         RETURNING id",
    )
    .bind(text(records))
    .fetch_one(conn)
    .await
}

/// Gives the row written by [`write_ahead`] its final id, taken now (so
/// under the caller's order lock, as [`write`]'s is), and the records the
/// batch made after it (column `tail`): they follow the first ones. Returns
/// the final id.
///
/// The first records are not written again: an `UPDATE` keeps a value it
/// does not change where it is stored.
pub async fn finish(
    conn: &mut PgConnection,
    provisional: i64,
    tail: &[OutboxRecord],
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE hub_outbox SET id = nextval('hub_outbox_id_seq'), tail = $2 \
         WHERE id = $1 RETURNING id",
    )
    .bind(provisional)
    .bind((!tail.is_empty()).then(|| text(tail)))
    .fetch_one(conn)
    .await
}

/// A row's records as the JSON text stored (migration 0003: plain text, the
/// relay only ever reads it back, so Postgres need not parse or validate
/// it). Sized up front (32: a record's member names and punctuation): grown
/// by doubling, a batch's row of megabytes was copied over and over (issue
/// #14).
fn text(records: &[OutboxRecord]) -> String {
    let size: usize = records.iter().map(|r| r.size() + 32).sum();
    let mut text = Vec::with_capacity(size + 2);
    serde_json::to_writer(&mut text, records).expect("JSON values serialize");
    String::from_utf8(text).expect("serde_json writes UTF-8")
}

/// An outbox record as the relay reads it: the value stays raw text.
#[derive(Deserialize)]
struct StoredRecord<'a> {
    #[serde(borrow)]
    topic: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    key: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    value: &'a RawValue,
}

/// `value` (a JSON object) with `"id": id` as its first member, spliced
/// into the text rather than parsed and re-serialized: a committed record
/// as the relay publishes it.
pub fn with_id(value: &RawValue, id: &str) -> Vec<u8> {
    let quoted = serde_json::to_string(id).expect("strings serialize");
    let mut out = Vec::new();
    write_with_id(&mut out, value, &quoted[1..quoted.len() - 1]);
    out
}

/// [`with_id`] into `out` (cleared first), so that the relay reuses one
/// buffer for every record: librdkafka copies each payload anyway.
fn write_with_id(out: &mut Vec<u8>, value: &RawValue, id: impl fmt::Display) {
    use std::io::Write;
    let text = value.get().trim_start();
    let body = text.strip_prefix('{').unwrap_or(text).trim_start();
    out.clear();
    // `id` is written as is: the relay's are `{row}.{index}`, digits and a
    // dot, and `with_id` escapes any other.
    write!(out, "{{\"id\":\"{id}\"").expect("writing to a Vec");
    if !body.starts_with('}') {
        out.push(b',');
    }
    out.extend_from_slice(body.as_bytes());
}

/// A published record's id: its outbox row, then its place in the row.
struct RecordId(i64, usize);

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The relay's producer, its own rather than the pipelines' (which use
/// futures for their few records): a drain publishes thousands of records
/// and only needs to know when all of them are acknowledged, or the first
/// failure. A future per record cost an allocation and a wake of the relay
/// each, completed on the producer's polling thread, which took 7 % of the
/// hub's CPU in the ingest bench (issue #14, the reports' own handling
/// included); the reports are counted instead, and the relay woken once per
/// drain.
#[derive(Clone)]
pub struct RelayProducer(ThreadedProducer<DeliveryTally>);

impl RelayProducer {
    pub fn new(config: &ClientConfig) -> KafkaResult<RelayProducer> {
        config
            .create_with_context(DeliveryTally::default())
            .map(RelayProducer)
    }

    fn tally(&self) -> &DeliveryTally {
        self.0.context()
    }
}

/// The delivery reports of the drain in progress. Each record carries its
/// drain's number, so the reports of a drain that was abandoned (stopped
/// mid-way, or failed on one record) are not counted for the next.
#[derive(Default)]
pub struct DeliveryTally {
    state: Mutex<Tally>,
    settled: Notify,
}

#[derive(Default)]
struct Tally {
    drain: usize,
    /// How many records the drain enqueued, once it enqueued them all.
    sent: Option<usize>,
    acknowledged: usize,
    failure: Option<KafkaError>,
}

impl Tally {
    /// Counts one delivery report of drain `drain`; returns whether the
    /// drain's fate is known now.
    fn note(&mut self, drain: usize, result: Result<(), &KafkaError>) -> bool {
        if self.drain != drain {
            return false;
        }
        match result {
            Ok(()) => self.acknowledged += 1,
            Err(e) => {
                self.failure.get_or_insert_with(|| e.clone());
            }
        }
        self.outcome().is_some()
    }

    /// `Some` once the drain's fate is known: every record acknowledged,
    /// or one failed.
    fn outcome(&self) -> Option<Result<(), KafkaError>> {
        match &self.failure {
            Some(e) => Some(Err(e.clone())),
            None => (self.sent == Some(self.acknowledged)).then_some(Ok(())),
        }
    }
}

impl DeliveryTally {
    fn state(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.state.lock().expect("delivery tally lock")
    }

    /// Starts counting a new drain; returns its number.
    fn begin(&self) -> usize {
        let mut t = self.state();
        *t = Tally {
            drain: t.drain.wrapping_add(1),
            ..Tally::default()
        };
        t.drain
    }

    /// Notes that drain `drain` enqueued `sent` records, and waits for
    /// their acknowledgements or the first failure.
    async fn settle(&self, drain: usize, sent: usize) -> Result<(), KafkaError> {
        {
            let mut t = self.state();
            debug_assert_eq!(t.drain, drain);
            t.sent = Some(sent);
        }
        loop {
            // Made before the check: a report in between leaves a permit.
            let settled = self.settled.notified();
            if let Some(outcome) = self.state().outcome() {
                return outcome;
            }
            settled.await;
        }
    }
}

impl ClientContext for DeliveryTally {}

impl ProducerContext for DeliveryTally {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, drain: usize) {
        let result = result.as_ref().map(|_| ()).map_err(|(e, _)| e);
        if self.state().note(drain, result) {
            self.settled.notify_one();
        }
    }
}

/// Wakes the relay right after a commit instead of waiting for its poll
/// tick, and hands it the committed rows' records.
#[derive(Clone, Default)]
pub struct RelayWaker {
    notify: Arc<Notify>,
    /// `None` when no relay of this process takes the rows.
    handed: Option<Arc<Mutex<Handed>>>,
}

impl RelayWaker {
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Hands over the records of row `id`, which the caller's transaction
    /// wrote and has committed, and wakes the relay.
    pub fn committed(&self, id: i64, records: Vec<OutboxRecord>) {
        if let Some(handed) = &self.handed {
            handed.lock().expect("hand-off lock").put(id, records);
        }
        self.wake();
    }
}

/// Committed rows' records, by row id, that the relay has not published
/// yet. Bounded: a relay that does not keep up (its broker is down) or
/// stands by (another node's relay publishes) reads the rest back instead.
struct Handed {
    /// Each row's records and their size, counted once when handed over.
    rows: BTreeMap<i64, (usize, Vec<OutboxRecord>)>,
    bytes: usize,
    max_bytes: usize,
}

/// A batch's row is a few megabytes; a relay that keeps up holds one or
/// two of them.
const HANDED_MAX_BYTES: usize = 32 << 20;

impl Handed {
    fn new(max_bytes: usize) -> Handed {
        Handed {
            rows: BTreeMap::new(),
            bytes: 0,
            max_bytes,
        }
    }

    fn put(&mut self, id: i64, records: Vec<OutboxRecord>) {
        let size = records.iter().map(OutboxRecord::size).sum();
        if self.bytes + size <= self.max_bytes {
            self.bytes += size;
            self.rows.insert(id, (size, records));
        }
    }

    fn take(&mut self, id: i64) -> Option<Vec<OutboxRecord>> {
        let (size, records) = self.rows.remove(&id)?;
        self.bytes -= size;
        Some(records)
    }

    /// Forgets the rows below `id`: published (and deleted) by another
    /// relay, since the table's lowest id is above them.
    fn forget_below(&mut self, id: i64) {
        let kept = self.rows.split_off(&id);
        for (size, _) in std::mem::replace(&mut self.rows, kept).into_values() {
            self.bytes -= size;
        }
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.bytes = 0;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A row that does not parse can never be published: it blocks every
    /// row after it (the order is the guarantee), so it is reported as a
    /// permanent failure naming the row for an operator to inspect.
    #[error("unreadable outbox row {row}: {source}")]
    Corrupt { row: i64, source: serde_json::Error },
}

impl RelayError {
    pub fn kind(&self) -> FailureKind {
        match self {
            RelayError::Db(_) | RelayError::Kafka(_) => FailureKind::Transient,
            RelayError::Corrupt { .. } => FailureKind::Permanent,
        }
    }
}

/// A row to publish: handed over by this process's pipelines, or read back
/// (its `records`, or its `ahead` then its `tail`).
enum Row {
    Handed(Vec<OutboxRecord>),
    Stored(String, Option<String>),
}

/// What one drain of the outbox did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Published and deleted this many rows.
    Rows(usize),
    /// Nothing to publish.
    Empty,
    /// Another transaction holds the relay lock (another node's relay, or
    /// this one's abandoned drain not yet rolled back).
    Elsewhere,
}

/// Only one relay publishes at a time across all hub processes: rows are
/// then published in commit order per tenant, which keeps each channel's
/// stream in order. The others stand by (and take over within a tick).
const RELAY_LOCK_KEY: i64 = 0x4c41_445f_7265_6c61; // "LAD_rela"

pub struct Relay {
    pool: PgPool,
    producer: RelayProducer,
    waker: RelayWaker,
    handed: Arc<Mutex<Handed>>,
    rows_per_drain: i64,
    poll_every: Duration,
    health: LoopHealth,
}

impl Relay {
    pub fn new(pool: PgPool, producer: RelayProducer) -> Relay {
        let handed = Arc::new(Mutex::new(Handed::new(HANDED_MAX_BYTES)));
        Relay {
            pool,
            producer,
            waker: RelayWaker {
                notify: Arc::default(),
                handed: Some(handed.clone()),
            },
            handed,
            rows_per_drain: 64,
            poll_every: Duration::from_millis(250),
            health: LoopHealth::default(),
        }
    }

    /// Reports the relay's failures to readiness.
    pub fn with_health(mut self, health: LoopHealth) -> Relay {
        self.health = health;
        self
    }

    pub fn waker(&self) -> RelayWaker {
        self.waker.clone()
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        // Whether the loop left a drain's transaction behind (see below).
        let mut interrupted = false;
        loop {
            // A drain waits on the broker's acknowledgements, which a broker
            // that is gone can withhold for minutes: shutdown must not wait
            // for that. Stopping mid-drain is safe: rows are deleted only
            // after every delivery, and a row published again keeps its ids.
            let drained = tokio::select! {
                r = self.drain_once() => r,
                _ = shutdown.cancelled() => {
                    interrupted = true;
                    break;
                }
            };
            match drained {
                Ok(Drained::Empty | Drained::Elsewhere) => {
                    failures = 0;
                    self.health.done();
                    tokio::select! {
                        _ = self.waker.notify.notified() => {}
                        _ = tokio::time::sleep(self.poll_every) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
                Ok(Drained::Rows(_)) => {
                    failures = 0;
                    self.health.done();
                }
                Err(e) => {
                    failures += 1;
                    let kind = e.kind();
                    self.health.failed(kind, &e);
                    match kind {
                        FailureKind::Transient => {
                            tracing::warn!(error = %e, failures, "outbox relay failed; retrying")
                        }
                        FailureKind::Permanent => tracing::error!(error = %e, failures,
                            "outbox relay stuck on a row it cannot read; nothing after it is published until the row is repaired or deleted; /readyz is red"),
                    }
                    metrics::counter!(m::RELAY_ERRORS, "kind" => kind.as_str()).increment(1);
                    metrics::counter!(m::LOOP_FAILURES, "loop" => "relay", "kind" => kind.as_str())
                        .increment(1);
                    let backoff = Duration::from_millis(100 * u64::from(failures.min(50)));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
        }
        // Whatever committed before shutdown is still worth publishing now,
        // within a bound: the hub's stop must stay shorter than the grace
        // period of whoever stops it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        self.final_drain(deadline, interrupted).await;
        let producer = self.producer.clone();
        // `flush` blocks its thread; keep it off the runtime's workers.
        let _ = tokio::task::spawn_blocking(move || producer.0.flush(Duration::from_secs(5))).await;
    }

    /// Drains until the outbox is empty or `deadline` passes. A drain that
    /// was abandoned (by the main loop's stop, or by an error) leaves its
    /// transaction, and so the relay lock, to a rollback that sqlx sends
    /// from a background task: until it lands, this process's own lock
    /// looks like another relay's, so it is waited out. Without one, a busy
    /// lock is another node's relay, which publishes these rows itself.
    async fn final_drain(&self, deadline: tokio::time::Instant, mut abandoned: bool) {
        let pause = Duration::from_millis(20);
        loop {
            match tokio::time::timeout_at(deadline, self.drain_once()).await {
                Ok(Ok(Drained::Empty)) => return,
                Ok(Ok(Drained::Elsewhere)) if !abandoned => return,
                Ok(Ok(Drained::Rows(_))) => continue,
                Ok(Ok(Drained::Elsewhere)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "outbox drain at shutdown failed; retrying");
                    abandoned = true;
                }
                Err(_) => break,
            }
            if tokio::time::Instant::now() + pause >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        tracing::warn!("outbox not drained within the shutdown bound; the next relay to run publishes the rest");
    }

    /// Publishes up to one drain of rows.
    pub async fn drain_once(&self) -> Result<Drained, RelayError> {
        let mut tx = self.pool.begin().await?;
        // The delete at the end need not wait for its WAL flush (0-10 ms on
        // this project's VM, and the next drain waits for this one): if a crash loses
        // it, the rows are published again with the same ids, which every
        // reader already drops. The rows themselves were written by
        // synchronous commits, so nothing is published that a crash can
        // take back.
        let (_, locked): (String, bool) = sqlx::query_as(
            "SELECT set_config('synchronous_commit', 'off', true), pg_try_advisory_xact_lock($1)",
        )
        .bind(RELAY_LOCK_KEY)
        .fetch_one(&mut *tx)
        .await?;
        // Ended here rather than dropped: a dropped transaction's rollback
        // is sent later from a background task, and until then it would
        // still hold the lock that the next drain tries to take.
        if !locked {
            tx.rollback().await?;
            // Another relay publishes them: what this process was handed
            // would only wait for a bound to evict it.
            self.handed().clear();
            return Ok(Drained::Elsewhere);
        }
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM hub_outbox ORDER BY id LIMIT $1")
            .bind(self.rows_per_drain)
            .fetch_all(&mut *tx)
            .await?;
        let Some(&lowest) = ids.first() else {
            tx.rollback().await?;
            self.handed().clear();
            return Ok(Drained::Empty);
        };
        let mut rows: BTreeMap<i64, Row> = {
            let mut handed = self.handed();
            handed.forget_below(lowest);
            ids.iter()
                .filter_map(|id| Some((*id, Row::Handed(handed.take(*id)?))))
                .collect()
        };
        let unread: Vec<i64> = ids
            .iter()
            .filter(|id| !rows.contains_key(id))
            .copied()
            .collect();
        if !unread.is_empty() {
            let read: Vec<(i64, String, Option<String>)> = sqlx::query_as(
                "SELECT id, COALESCE(records, ahead), tail FROM hub_outbox WHERE id = ANY($1)",
            )
            .bind(&unread)
            .fetch_all(&mut *tx)
            .await?;
            rows.extend(
                read.into_iter()
                    .map(|(id, text, tail)| (id, Row::Stored(text, tail))),
            );
        }
        let publishing = Instant::now();
        let drain = self.producer.tally().begin();
        let mut sent = 0;
        let mut payload = Vec::new();
        // In id order: a row handed over and a row read back interleave.
        for (row_id, row) in &rows {
            let mut stored: Vec<StoredRecord<'_>>;
            let records: Vec<(&str, Option<&str>, &RawValue)> = match row {
                Row::Handed(records) => records
                    .iter()
                    .map(|r| (r.topic.as_str(), r.key.as_deref(), &*r.value))
                    .collect(),
                Row::Stored(text, tail) => {
                    let corrupt = |source| RelayError::Corrupt {
                        row: *row_id,
                        source,
                    };
                    stored = serde_json::from_str(text).map_err(corrupt)?;
                    if let Some(tail) = tail {
                        stored.extend(
                            serde_json::from_str::<Vec<StoredRecord<'_>>>(tail).map_err(corrupt)?,
                        );
                    }
                    stored
                        .iter()
                        .map(|r| (&*r.topic, r.key.as_deref(), r.value))
                        .collect()
                }
            };
            for (i, (topic, key, value)) in records.into_iter().enumerate() {
                write_with_id(&mut payload, value, RecordId(*row_id, i));
                self.enqueue(drain, topic, key, &payload).await?;
                sent += 1;
            }
        }
        self.producer.tally().settle(drain, sent).await?;
        metrics::histogram!(m::RELAY_PUBLISH_SECONDS).record(publishing.elapsed().as_secs_f64());
        let ids: Vec<i64> = rows.into_keys().collect();
        sqlx::query("DELETE FROM hub_outbox WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        metrics::counter!(m::RELAY_ROWS).increment(ids.len() as u64);
        Ok(Drained::Rows(ids.len()))
    }

    fn handed(&self) -> std::sync::MutexGuard<'_, Handed> {
        self.handed.lock().expect("hand-off lock")
    }

    /// Enqueues without waiting for the delivery (waiting for each would
    /// cap the relay at one round trip per record); waits only while the
    /// local queue is full.
    async fn enqueue(
        &self,
        drain: usize,
        topic: &str,
        key: Option<&str>,
        payload: &[u8],
    ) -> Result<(), RelayError> {
        loop {
            let mut record = BaseRecord::with_opaque_to(topic, drain).payload(payload);
            if let Some(k) = key {
                record = record.key(k);
            }
            match self.producer.0.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn records(n: usize, value: &str) -> Vec<OutboxRecord> {
        (0..n)
            .map(|_| OutboxRecord {
                topic: "t".into(),
                key: Some("k".into()),
                value: raw(value),
            })
            .collect()
    }

    #[test]
    fn the_hand_off_keeps_rows_within_its_bound_and_forgets_what_others_published() {
        // Each record counts 1 + 1 + 2 bytes.
        let mut handed = Handed::new(20);
        handed.put(3, records(2, "{}"));
        handed.put(5, records(2, "{}"));
        assert_eq!(handed.bytes, 16);
        // Over the bound: let go, read back from the table instead.
        handed.put(8, records(2, "{}"));
        assert!(handed.take(8).is_none());
        assert_eq!(handed.take(5).map(|r| r.len()), Some(2));
        assert_eq!(handed.bytes, 8);
        handed.put(8, records(1, "{}"));
        handed.put(9, records(1, "{}"));
        handed.forget_below(8);
        assert!(handed.take(3).is_none());
        assert_eq!(handed.bytes, 8);
        assert!(handed.take(8).is_some() && handed.take(9).is_some());
        assert_eq!(handed.bytes, 0);
    }

    #[test]
    fn a_drain_settles_once_all_its_records_are_acknowledged_or_one_failed() {
        let mut t = Tally {
            drain: 2,
            ..Tally::default()
        };
        let failed = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        // Reports may come before the drain has enqueued its last record.
        assert!(!t.note(2, Ok(())));
        assert!(!t.note(2, Ok(())));
        assert!(t.outcome().is_none());
        // A report of an abandoned drain counts for nothing, failed or not.
        assert!(!t.note(1, Ok(())));
        assert!(!t.note(1, Err(&failed)));
        t.sent = Some(3);
        assert!(t.outcome().is_none());
        assert!(t.note(2, Ok(())));
        assert_eq!(t.outcome(), Some(Ok(())));

        let mut t = Tally {
            drain: 3,
            ..Tally::default()
        };
        assert!(t.note(3, Err(&failed)));
        assert!(t.note(3, Ok(())));
        t.sent = Some(2);
        assert_eq!(t.outcome(), Some(Err(failed)));
        // Nothing enqueued: settled at once.
        let t = Tally {
            sent: Some(0),
            ..Tally::default()
        };
        assert_eq!(t.outcome(), Some(Ok(())));
    }

    #[test]
    fn the_id_is_spliced_in_first_and_the_rest_is_kept_byte_for_byte() {
        let out = with_id(&raw(r#"{"type":"call.updated","data":{"a":1}}"#), "7.3");
        assert_eq!(out, br#"{"id":"7.3","type":"call.updated","data":{"a":1}}"#);
        let v: Value = serde_json::from_slice(&with_id(&raw("{ }"), "1.0")).unwrap();
        assert_eq!(v, serde_json::json!({"id": "1.0"}));
        let v: Value = serde_json::from_slice(&with_id(&raw("{}"), "a\"b")).unwrap();
        assert_eq!(v, serde_json::json!({"id": "a\"b"}));
        // The relay's buffer is reused: what a longer record left is gone.
        let mut out = with_id(&raw(r#"{"type":"call.transcript","data":{}}"#), "9.9");
        write_with_id(&mut out, &raw(r#"{"a":1}"#), RecordId(12, 0));
        assert_eq!(out, br#"{"id":"12.0","a":1}"#);
    }
}
