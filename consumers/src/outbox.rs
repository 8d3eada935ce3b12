//! The transactional outbox and its relay.
//!
//! A batch writes every record it wants published (live updates, dead
//! letters) as ONE outbox row in its own transaction. The [`Relay`] publishes
//! rows in id order and deletes them once the broker acknowledged them, so a
//! crash between commit and publish delays a message, never loses it. A crash
//! between publish and delete publishes it again with the same `id`, which is
//! how the gateway (and any analytics consumer) drops the repeat.

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A record to publish once the transaction that wrote it commits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub topic: String,
    pub key: Option<String>,
    pub value: Value,
}

pub async fn write(conn: &mut PgConnection, records: &[OutboxRecord]) -> Result<(), sqlx::Error> {
    if records.is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT INTO hub_outbox (records) VALUES ($1)")
        .bind(sqlx::types::Json(records))
        .execute(conn)
        .await?;
    Ok(())
}

/// Wakes the relay right after a commit instead of waiting for its poll tick.
#[derive(Clone, Default)]
pub struct RelayWaker(Arc<Notify>);

impl RelayWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Only one relay publishes at a time across all hub processes: rows are
/// then published in commit order per tenant, which keeps each channel's
/// stream in order. The others stand by (and take over within a tick).
const RELAY_LOCK_KEY: i64 = 0x4c41_445f_7265_6c61; // "LAD_rela"

pub struct Relay {
    pool: PgPool,
    producer: FutureProducer,
    waker: RelayWaker,
    rows_per_drain: i64,
    poll_every: Duration,
}

impl Relay {
    pub fn new(pool: PgPool, producer: FutureProducer) -> Relay {
        Relay {
            pool,
            producer,
            waker: RelayWaker::default(),
            rows_per_drain: 64,
            poll_every: Duration::from_millis(250),
        }
    }

    pub fn waker(&self) -> RelayWaker {
        self.waker.clone()
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            match self.drain_once().await {
                Ok(0) => {
                    failures = 0;
                    tokio::select! {
                        _ = self.waker.0.notified() => {}
                        _ = tokio::time::sleep(self.poll_every) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "outbox relay failed; retrying");
                    metrics::counter!("lad_relay_errors_total").increment(1);
                    let backoff = Duration::from_millis(100 * u64::from(failures.min(50)));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
        }
        // Whatever committed before shutdown is still worth publishing now.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            match self.drain_once().await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = self.producer.flush(Duration::from_secs(5));
    }

    /// Publishes up to one drain of rows; returns how many rows it published.
    pub async fn drain_once(&self) -> Result<usize, RelayError> {
        let mut tx = self.pool.begin().await?;
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(0);
        }
        let rows: Vec<(i64, sqlx::types::Json<Vec<OutboxRecord>>)> =
            sqlx::query_as("SELECT id, records FROM hub_outbox ORDER BY id LIMIT $1")
                .bind(self.rows_per_drain)
                .fetch_all(&mut *tx)
                .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut deliveries = Vec::new();
        for (row_id, records) in &rows {
            for (i, record) in records.0.iter().enumerate() {
                let mut value = record.value.clone();
                if let Value::Object(map) = &mut value {
                    map.insert("id".into(), Value::String(format!("{row_id}.{i}")));
                }
                let payload = serde_json::to_vec(&value).expect("JSON values serialize");
                deliveries.push(
                    self.enqueue(&record.topic, record.key.as_deref(), payload)
                        .await?,
                );
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(e.into()),
                Err(_) => return Err(rdkafka::error::KafkaError::Canceled.into()),
            }
        }
        let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        sqlx::query("DELETE FROM hub_outbox WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        metrics::counter!("lad_relay_rows_total").increment(ids.len() as u64);
        Ok(ids.len())
    }

    /// Enqueues without awaiting the delivery (awaiting one by one would
    /// cap the relay at one round trip per record); waits only while the
    /// local queue is full.
    async fn enqueue(
        &self,
        topic: &str,
        key: Option<&str>,
        payload: Vec<u8>,
    ) -> Result<rdkafka::producer::DeliveryFuture, RelayError> {
        loop {
            let mut record = FutureRecord::to(topic).payload(&payload);
            if let Some(k) = key {
                record = record.key(k);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
}
