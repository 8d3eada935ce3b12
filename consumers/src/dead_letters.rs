//! Rejected records: kept in `hub_dead_letters` and republished on the dead
//! letter topic, both from the same transaction as the batch (via the outbox).

use crate::envelope::Rejection;
use crate::pipeline::RawRecord;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

/// One rejected input record with everything needed to replay or fix it.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub topic: &'a str,
    pub record: &'a RawRecord,
    pub rejection: Rejection,
    pub event_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
}

impl DeadLetter<'_> {
    pub fn key_text(&self) -> Option<String> {
        self.record
            .key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// The value published on the dead letter topic (schema: docs/schemas/dead-letter.json).
    pub fn to_json(&self, rejected_at: DateTime<Utc>) -> Value {
        let raw = self.record.payload.as_deref().unwrap_or_default();
        json!({
            "reason": self.rejection.to_string(),
            "error_kind": self.rejection.kind(),
            "topic": self.topic,
            "partition": self.record.partition,
            "offset": self.record.offset,
            "key": self.key_text(),
            "raw_base64": base64::engine::general_purpose::STANDARD.encode(raw),
            "raw_text": std::str::from_utf8(raw).ok(),
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "rejected_at": rejected_at,
        })
    }
}

/// Inserts the batch's dead letters with one statement. A record already
/// dead-lettered (same topic, partition, offset) is not stored twice.
pub async fn store(conn: &mut PgConnection, letters: &[DeadLetter<'_>]) -> Result<(), sqlx::Error> {
    if letters.is_empty() {
        return Ok(());
    }
    let mut topics = Vec::with_capacity(letters.len());
    let mut partitions = Vec::with_capacity(letters.len());
    let mut offsets = Vec::with_capacity(letters.len());
    let mut keys = Vec::with_capacity(letters.len());
    let mut payloads = Vec::with_capacity(letters.len());
    let mut reasons = Vec::with_capacity(letters.len());
    let mut kinds = Vec::with_capacity(letters.len());
    let mut event_ids = Vec::with_capacity(letters.len());
    let mut tenant_ids = Vec::with_capacity(letters.len());
    for l in letters {
        topics.push(l.topic.to_owned());
        partitions.push(l.record.partition);
        offsets.push(l.record.offset);
        keys.push(l.record.key.clone());
        payloads.push(l.record.payload.clone().unwrap_or_default());
        reasons.push(l.rejection.to_string());
        kinds.push(l.rejection.kind().to_owned());
        event_ids.push(l.event_id);
        tenant_ids.push(l.tenant_id);
    }
    sqlx::query(
        "INSERT INTO hub_dead_letters
           (topic, kafka_partition, kafka_offset, record_key, payload, reason, error_kind, event_id, tenant_id)
         SELECT * FROM UNNEST($1::text[], $2::int[], $3::bigint[], $4::bytea[], $5::bytea[],
                              $6::text[], $7::text[], $8::uuid[], $9::uuid[])
         ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING",
    )
    .bind(topics)
    .bind(partitions)
    .bind(offsets)
    .bind(keys)
    .bind(payloads)
    .bind(reasons)
    .bind(kinds)
    .bind(event_ids)
    .bind(tenant_ids)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_dead_letter_carries_the_raw_bytes_and_the_reason() {
        let record = RawRecord {
            partition: 2,
            offset: 41,
            key: Some(b"k1".to_vec()),
            payload: Some(b"{oops".to_vec()),
            timestamp_ms: None,
        };
        let letter = DeadLetter {
            topic: "lad.voice.call-events.v1",
            record: &record,
            rejection: Rejection::InvalidJson("eof".into()),
            event_id: None,
            tenant_id: None,
        };
        let v = letter.to_json(Utc::now());
        assert_eq!(v["error_kind"], "invalid_json");
        assert_eq!(v["partition"], 2);
        assert_eq!(v["offset"], 41);
        assert_eq!(v["key"], "k1");
        assert_eq!(v["raw_text"], "{oops");
        assert_eq!(v["raw_base64"], "e29vcHM=");
        assert!(v["reason"].as_str().unwrap().contains("eof"));
    }
}
