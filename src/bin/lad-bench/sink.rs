//! The `ingest` baseline: the same voice records applied the way a generic
//! Kafka-to-Postgres sink does it (a JDBC sink connector in upsert mode, say):
//! one statement per record mapping its JSON fields to columns, one
//! transaction per polled batch, Kafka offsets committed after it
//! (at-least-once). It keeps no aggregates, no ledger, no dedupe, no outbox
//! and no live stream, so it does less than the hub; what it shows is the
//! price of a statement per record, which the hub avoids by writing each
//! batch with a few `UNNEST` statements.

use anyhow::Context;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Consumes `topic` from the start into a fresh database until every
/// partition reaches its offset in `ends`; returns the figures.
pub async fn run(
    brokers: &str,
    postgres: &str,
    topic: &str,
    ends: &HashMap<i32, i64>,
    batch_max: usize,
) -> anyhow::Result<Value> {
    let (name, mut conn) = super::migrated_database(postgres, "benchsink").await?;
    // The hub's calls land in monthly partitions: so do the sink's.
    sqlx::query("SELECT lad_ensure_voice_call_log_partitions(1, 3)")
        .execute(&mut conn)
        .await?;

    let t0 = Instant::now();
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{name}.sink"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut reached: HashMap<i32, i64> = HashMap::new();
    let (mut records, mut statements, mut batches) = (0u64, 0u64, 0u64);
    while !ends
        .iter()
        .all(|(p, end)| reached.get(p).is_some_and(|o| o >= end))
    {
        let first = consumer.recv().await?.detach();
        let mut batch = vec![first];
        // What has already been received, as the hub's batches take it.
        while batch.len() < batch_max {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(m) => batch.push(m?.detach()),
                Err(_) => break,
            }
        }
        let mut tx = conn.begin().await?;
        for m in &batch {
            if let Some(payload) = m.payload() {
                statements += upsert(&mut tx, payload).await? as u64;
            }
            let end = reached.entry(m.partition()).or_default();
            *end = (*end).max(m.offset() + 1);
        }
        tx.commit().await?;
        consumer.commit_consumer_state(CommitMode::Async)?;
        records += batch.len() as u64;
        batches += 1;
    }
    let seconds = t0.elapsed().as_secs_f64();
    drop(consumer);
    conn.close().await?;
    super::drop_database(postgres, &name).await;
    Ok(json!({
        "records": records,
        "statements": statements,
        "transactions": batches,
        "seconds": super::round(seconds),
        "records_per_second": (records as f64 / seconds).round(),
    }))
}

/// One record's statement: its `data` fields bound as text and cast by
/// Postgres, as a schema-agnostic sink binds them. Returns whether it ran.
async fn upsert(conn: &mut PgConnection, payload: &[u8]) -> anyhow::Result<bool> {
    let env: Value = serde_json::from_slice(payload).context("record JSON")?;
    let d = &env["data"];
    let s = |v: &Value| v.as_str().map(str::to_owned);
    let (tenant, at) = (s(&env["tenant_id"]), s(&env["occurred_at"]));
    let call = s(&d["call_id"]);
    let query = match env["type"].as_str() {
        Some("call.started") => sqlx::query(
            "INSERT INTO voice_call_logs (id, tenant_id, agent_id, lead_id, direction,
                 from_number, to_number, status, started_at, created_at)
             VALUES ($1::uuid, $2::uuid, $3::uuid, $4::uuid, $5, $6, $7, 'initiated',
                 $8::timestamptz, $8::timestamptz)
             ON CONFLICT (id, created_at) DO UPDATE SET agent_id = EXCLUDED.agent_id,
                 lead_id = EXCLUDED.lead_id, direction = EXCLUDED.direction,
                 from_number = EXCLUDED.from_number, to_number = EXCLUDED.to_number,
                 started_at = EXCLUDED.started_at",
        )
        .bind(call)
        .bind(tenant)
        .bind(s(&d["agent_id"]))
        .bind(s(&d["lead_id"]))
        .bind(s(&d["direction"]))
        .bind(s(&d["from_number"]))
        .bind(s(&d["to_number"]))
        .bind(at),
        Some("call.answered") => sqlx::query(
            "UPDATE voice_call_logs SET status = 'in_progress', answered_at = $2::timestamptz
             WHERE id = $1::uuid",
        )
        .bind(call)
        .bind(at),
        Some("call.transcript") => sqlx::query(
            "INSERT INTO voice_call_transcripts (call_id, seq, tenant_id, speaker, text,
                 occurred_at, event_id)
             VALUES ($1::uuid, $2, $3::uuid, $4, $5, $6::timestamptz, $7::uuid)
             ON CONFLICT (call_id, seq) DO NOTHING",
        )
        .bind(call)
        .bind(d["seq"].as_i64().map(|n| n as i32))
        .bind(tenant)
        .bind(s(&d["speaker"]))
        .bind(s(&d["text"]))
        .bind(at)
        .bind(s(&env["event_id"])),
        Some("call.ended") => sqlx::query(
            "UPDATE voice_call_logs SET status = $2, ended_at = $3::timestamptz,
                 duration_seconds = $4, cost = $5::numeric, currency = COALESCE($6, 'USD'),
                 recording_url = $7
             WHERE id = $1::uuid",
        )
        .bind(call)
        .bind(s(&d["status"]))
        .bind(at)
        .bind(d["duration_seconds"].as_i64().map(|n| n as i32))
        .bind(s(&d["cost"]))
        .bind(s(&d["currency"]))
        .bind(s(&d["recording_url"])),
        Some("call.analyzed") => sqlx::query(
            "INSERT INTO voice_call_analysis (call_log_id, tenant_id, sentiment, lead_category,
                 summary, analyzed_at)
             VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6::timestamptz)
             ON CONFLICT (call_log_id) DO UPDATE SET sentiment = EXCLUDED.sentiment,
                 lead_category = EXCLUDED.lead_category, summary = EXCLUDED.summary,
                 analyzed_at = EXCLUDED.analyzed_at",
        )
        .bind(call)
        .bind(tenant)
        .bind(s(&d["sentiment"]))
        .bind(s(&d["lead_category"]))
        .bind(s(&d["summary"]))
        .bind(at),
        _ => return Ok(false),
    };
    query.execute(conn).await?;
    Ok(true)
}
