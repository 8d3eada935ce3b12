//! `lad-hub offsets reset --topic T --to earliest|latest`: repairs the
//! offsets stored in Postgres when they no longer match the topic (it was
//! deleted and created again, so the stored offsets are past its end and
//! the pipeline would skip new records as already applied).
//!
//! Safe under a running hub: the update takes the same row locks as a
//! batch, so it lands between two batches. A running pipeline acts on it at
//! the next record of each partition (it seeks back to the stored offset);
//! `earliest` re-applies what the topic holds, and repeats are caught by
//! `event_id` within the dedupe window.

use crate::config::OffsetsResetArgs;
use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use std::time::Duration;

pub async fn reset(args: OffsetsResetArgs) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&args.db.database_url)
        .await
        .context("connecting to Postgres (DATABASE_URL)")?;
    let kafka = args.kafka.settings().map_err(anyhow::Error::msg)?;
    let client: BaseConsumer = kafka.consumer_config("lad-hub-admin").create()?;
    let topic = args.topic.clone();
    let latest = args.to == "latest";
    let targets = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(i32, i64)>> {
        let timeout = Duration::from_secs(10);
        let metadata = client.fetch_metadata(Some(&topic), timeout)?;
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .with_context(|| format!("topic {topic} not found on the brokers"))?;
        let mut out = Vec::new();
        for p in t.partitions() {
            let (low, high) = client.fetch_watermarks(&topic, p.id(), timeout)?;
            let target = if latest {
                crate::monitor::confirm_end(&client, &topic, p.id(), high)
            } else {
                low
            };
            out.push((p.id(), target));
        }
        Ok(out)
    })
    .await??;
    anyhow::ensure!(
        !targets.is_empty(),
        "topic {} has no partitions",
        args.topic
    );
    let (partitions, offsets): (Vec<i32>, Vec<i64>) = targets.into_iter().unzip();
    let rows: Vec<(String, i32, Option<i64>, i64)> = sqlx::query_as(
        "UPDATE hub_consumer_offsets o
         SET next_offset = t.next_offset, updated_at = now()
         FROM UNNEST($3::int[], $4::bigint[]) AS t(kafka_partition, next_offset),
              hub_consumer_offsets old
         WHERE o.topic = $1 AND ($2::text IS NULL OR o.consumer_group = $2)
           AND o.kafka_partition = t.kafka_partition
           AND old.consumer_group = o.consumer_group AND old.topic = o.topic
           AND old.kafka_partition = o.kafka_partition
         RETURNING o.consumer_group, o.kafka_partition, old.next_offset, o.next_offset",
    )
    .bind(&args.topic)
    .bind(&args.group)
    .bind(&partitions)
    .bind(&offsets)
    .fetch_all(&pool)
    .await?;
    anyhow::ensure!(
        !rows.is_empty(),
        "no offsets are stored for topic {}{}",
        args.topic,
        args.group
            .as_deref()
            .map(|g| format!(" and group {g}"))
            .unwrap_or_default()
    );
    for (group, partition, before, after) in rows {
        println!(
            "{}",
            json!({"group": group, "topic": args.topic, "partition": partition,
                   "before": before, "after": after})
        );
    }
    Ok(())
}
