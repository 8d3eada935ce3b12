//! `lad-hub dead-letters list|replay`: the operator's side of
//! `hub_dead_letters`. `list` prints the selected rows as JSON lines;
//! `replay` produces each one's raw bytes and key to its original topic
//! again (for after the producer, a price, or the hub was fixed), so it
//! goes through the pipeline like any record: applied once if it now
//! passes, dead-lettered again with its new reason if not.

use crate::config::{DeadLetterFilter, DeadLetterListArgs, DeadLetterReplayArgs};
use anyhow::Context;
use base64::Engine;
use chrono::{DateTime, Utc};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// `--since`: an RFC 3339 instant, or an age (`90s`, `30m`, `6h`, `2d`).
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(s) {
        return Ok(at.with_timezone(&Utc));
    }
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is neither an RFC 3339 instant nor an age like 6h"))?;
    let age = match unit {
        "s" => chrono::Duration::seconds(n),
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => return Err(format!("{s:?}: the unit of an age is s, m, h or d")),
    };
    Ok(Utc::now() - age)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredDeadLetter {
    pub id: i64,
    pub topic: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub record_key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub reason: String,
    pub error_kind: String,
    pub event_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

impl StoredDeadLetter {
    pub fn to_json(&self) -> Value {
        let raw = self.payload.as_deref().unwrap_or_default();
        json!({
            "id": self.id,
            "topic": self.topic,
            "partition": self.kafka_partition,
            "offset": self.kafka_offset,
            "key": self.record_key.as_deref().map(String::from_utf8_lossy),
            "reason": self.reason,
            "error_kind": self.error_kind,
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "created_at": self.created_at,
            "replayed_at": self.replayed_at,
            "raw_text": std::str::from_utf8(raw).ok(),
            "raw_base64": base64::engine::general_purpose::STANDARD.encode(raw),
        })
    }
}

/// The dead letters `filter` selects, newest first (`oldest_first` for a
/// replay, which keeps the original order).
pub async fn select(
    pool: &PgPool,
    filter: &DeadLetterFilter,
    include_replayed: bool,
    oldest_first: bool,
) -> Result<Vec<StoredDeadLetter>, sqlx::Error> {
    let order = if oldest_first { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT id, topic, kafka_partition, kafka_offset, record_key, payload, reason, error_kind,
                event_id, tenant_id, created_at, replayed_at
         FROM hub_dead_letters
         WHERE ($1::text IS NULL OR topic = $1)
           AND ($2::text IS NULL OR error_kind = $2 OR strpos(lower(reason), lower($2)) > 0)
           AND ($3::timestamptz IS NULL OR created_at >= $3)
           AND (cardinality($4::bigint[]) = 0 OR id = ANY($4))
           AND ($5 OR replayed_at IS NULL)
         ORDER BY id {order}
         LIMIT $6"
    );
    sqlx::query_as(&sql)
        .bind(&filter.topic)
        .bind(&filter.reason)
        .bind(filter.since)
        .bind(&filter.ids)
        .bind(include_replayed)
        .bind(filter.limit)
        .fetch_all(pool)
        .await
}

async fn connect(db: &crate::config::DbArgs) -> anyhow::Result<PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.database_url)
        .await
        .context("connecting to Postgres (DATABASE_URL)")
}

pub async fn list(args: DeadLetterListArgs) -> anyhow::Result<()> {
    let pool = connect(&args.db).await?;
    for letter in select(&pool, &args.filter, true, false).await? {
        println!("{}", letter.to_json());
    }
    Ok(())
}

/// Produces every selected dead letter to its original topic (same key,
/// same bytes), waits for every delivery, then marks the delivered ones
/// replayed. Prints one JSON line per letter.
pub async fn replay(args: DeadLetterReplayArgs) -> anyhow::Result<()> {
    let pool = connect(&args.db).await?;
    let letters = select(&pool, &args.filter, args.again, true).await?;
    if letters.is_empty() {
        eprintln!("no dead letters match (already replayed ones need --again)");
        return Ok(());
    }
    let kafka = args.kafka.settings().map_err(anyhow::Error::msg)?;
    let producer: FutureProducer = kafka.producer_config().create().context("kafka producer")?;
    let mut deliveries = Vec::with_capacity(letters.len());
    for letter in &letters {
        let payload = letter.payload.clone().unwrap_or_default();
        let delivery = loop {
            let mut record = FutureRecord::to(&letter.topic).payload(&payload);
            if let Some(key) = &letter.record_key {
                record = record.key(key);
            }
            match producer.send_result(record) {
                Ok(d) => break d,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err((e, _)) => return Err(e).context("producing a dead letter"),
            }
        };
        deliveries.push((letter, delivery));
    }
    let mut replayed = Vec::new();
    let mut failed = 0usize;
    for (letter, delivery) in deliveries {
        match delivery.await {
            Ok(Ok(delivered)) => {
                replayed.push(letter.id);
                println!(
                    "{}",
                    json!({"replayed": letter.id, "topic": letter.topic,
                           "partition": delivered.partition, "offset": delivered.offset})
                );
            }
            Ok(Err((e, _))) => {
                failed += 1;
                eprintln!("dead letter {} not delivered: {e}", letter.id);
            }
            Err(_) => {
                failed += 1;
                eprintln!("dead letter {} not delivered: producer closed", letter.id);
            }
        }
    }
    let _ = producer.flush(Duration::from_secs(10));
    sqlx::query("UPDATE hub_dead_letters SET replayed_at = now() WHERE id = ANY($1)")
        .bind(&replayed)
        .execute(&pool)
        .await?;
    anyhow::ensure!(failed == 0, "{failed} dead letters were not delivered");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_an_instant_or_an_age() {
        let at = parse_since("2026-11-25T10:00:00Z").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-25T10:00:00+00:00");
        let six_hours = Utc::now() - parse_since("6h").unwrap();
        assert!((six_hours.num_seconds() - 6 * 3600).abs() < 5);
        assert!(parse_since("2d").is_ok() && parse_since("90s").is_ok());
        assert!(parse_since("6w").is_err());
        assert!(parse_since("yesterday").is_err());
    }
}
