//! What the pipelines' store tests share: a feed of hand-built records into
//! `BatchApplier`, envelopes, and readers of the outbox.

// Each test binary compiles its own copy and uses only part of it.
#![allow(dead_code)]

use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use lad_consumers::pipeline::{
    BatchApplier, BatchOutcome, Domain, Ephemeral, PipelineConfig, RawRecord,
};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub const LIVE: &str = "lad.live.v1";
pub const DEAD: &str = "lad.dead-letters.v1";

/// Feeds batches to the applier with consecutive offsets on one partition,
/// as the broker would (the offset fence refuses gaps).
pub struct Feed<D: Domain> {
    applier: BatchApplier<D>,
    key: Option<Vec<u8>>,
    next_offset: i64,
}

impl<D: Domain> Feed<D> {
    /// A feed of `topic`'s records, each under the record key `key`.
    pub fn new(domain: D, pool: PgPool, topic: &str, key: Option<&[u8]>) -> Feed<D> {
        let cfg = PipelineConfig {
            group: "lad-hub-test".into(),
            topic: topic.into(),
            live_topic: LIVE.into(),
            dead_letter_topic: DEAD.into(),
            batch_max: 1000,
            batch_wait: Duration::from_millis(10),
            concurrency: 1,
        };
        Feed {
            applier: BatchApplier::new(Arc::new(domain), pool, Arc::new(cfg)),
            key: key.map(<[u8]>::to_vec),
            next_offset: 0,
        }
    }

    /// Records of these payloads at the next offsets.
    pub fn payload_records(&mut self, payloads: Vec<Vec<u8>>) -> Vec<RawRecord> {
        payloads
            .into_iter()
            .map(|payload| {
                let offset = self.next_offset;
                self.next_offset += 1;
                RawRecord {
                    partition: 0,
                    offset,
                    key: self.key.clone(),
                    payload: Some(payload),
                    timestamp_ms: None,
                }
            })
            .collect()
    }

    /// Records of these events at the next offsets.
    pub fn records(&mut self, events: &[Value]) -> Vec<RawRecord> {
        self.payload_records(payloads(events))
    }

    /// Decodes and applies records as they are, as a retried batch is
    /// (nothing taken out as ephemeral).
    pub async fn apply(&self, records: &[RawRecord]) -> BatchOutcome {
        let decoded = self.applier.decode(records);
        self.applier
            .apply(records, decoded, &HashMap::new())
            .await
            .expect("batch applies")
    }

    /// What the pipeline does with a polled batch: the ephemeral events are
    /// taken (and would be published at once), the rest is applied.
    pub async fn send_payloads(
        &mut self,
        payloads: Vec<Vec<u8>>,
    ) -> (Vec<Ephemeral>, BatchOutcome) {
        let records = self.payload_records(payloads);
        let mut decoded = self.applier.decode(&records);
        let ephemeral = self.applier.domain().take_ephemeral(&mut decoded.accepted);
        let outcome = self
            .applier
            .apply(&records, decoded, &HashMap::new())
            .await
            .expect("batch applies");
        (ephemeral, outcome)
    }

    /// [`Feed::send_payloads`] of these events.
    pub async fn send_events(&mut self, events: &[Value]) -> (Vec<Ephemeral>, BatchOutcome) {
        self.send_payloads(payloads(events)).await
    }

    /// A batch of these events, of which every one is stored.
    pub async fn send(&mut self, events: &[Value]) -> BatchOutcome {
        let (ephemeral, outcome) = self.send_events(events).await;
        assert!(ephemeral.is_empty(), "every event is stored");
        outcome
    }
}

fn payloads(events: &[Value]) -> Vec<Vec<u8>> {
    events
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect()
}

/// 2026-11-25 10:00:00 UTC and `secs` seconds.
pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap() + Span::seconds(secs)
}

/// An envelope (contract §2) under a new event id.
pub fn envelope(tenant: Uuid, kind: &str, occurred: DateTime<Utc>, data: Value) -> Value {
    json!({
        "event_id": Uuid::new_v4(),
        "type": kind,
        "version": 1,
        "tenant_id": tenant,
        "occurred_at": occurred.to_rfc3339(),
        "data": data,
    })
}

/// A row's records as one JSON array: those written at once, or those
/// written ahead of the batch's shared rows and then its tail (migration
/// 0006).
pub const ROW_RECORDS: &str = "COALESCE(records, ahead)::jsonb || COALESCE(tail::jsonb, '[]')";

/// Every record of every outbox row, in commit order.
pub async fn outbox(pool: &PgPool) -> Vec<Value> {
    let rows: Vec<Value> =
        sqlx::query_scalar(&format!("SELECT {ROW_RECORDS} FROM hub_outbox ORDER BY id"))
            .fetch_all(pool)
            .await
            .unwrap();
    rows.into_iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .collect()
}

/// The live messages of the outbox (commit order), as `lad.live.v1` values.
pub async fn live(pool: &PgPool) -> Vec<Value> {
    outbox(pool)
        .await
        .into_iter()
        .filter(|r| r["topic"] == LIVE)
        .map(|r| r["value"].clone())
        .collect()
}

/// The live messages of type `kind`, in commit order.
pub async fn live_of_type(pool: &PgPool, kind: &str) -> Vec<Value> {
    live(pool)
        .await
        .into_iter()
        .filter(|m| m["type"] == kind)
        .collect()
}

pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}
