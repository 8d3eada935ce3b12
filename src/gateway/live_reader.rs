//! Reads `lad.live.v1` into the registry.
//!
//! Every gateway node reads every partition (its sockets may want any
//! tenant), so there is no consumer group and nothing is committed: the
//! partitions are assigned by hand, starting at the high watermark, because
//! a node serves what happens from now on; the past is in the snapshot, or
//! read back from the topic for a client that resumes with `since`
//! (`replay`).

use crate::gateway::Gateway;
use lad_consumers::kafka::KafkaSettings;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the partition count is checked, so partitions an operator
/// adds are read too.
const REFRESH_EVERY: Duration = Duration::from_secs(30);
const RETRY_EVERY: Duration = Duration::from_secs(1);

pub async fn run(
    gw: &Gateway,
    kafka: &KafkaSettings,
    topic: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut cfg = kafka.low_latency_consumer_config("lad-hub-gateway");
    // Only reached if an assigned offset vanished (retention): skipping
    // ahead is right for live pushes, replaying history is not.
    cfg.set("auto.offset.reset", "latest");
    let consumer: Arc<StreamConsumer> = Arc::new(cfg.create()?);
    let mut assigned = BTreeSet::new();

    while assigned.is_empty() {
        match assign_new_partitions(gw, &consumer, topic, &mut assigned).await {
            Ok(()) if !assigned.is_empty() => break,
            Ok(()) => tracing::info!(%topic, "live topic not there yet; waiting"),
            Err(e) => {
                tracing::warn!(error = %e, %topic, "could not assign the live topic; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
    tracing::info!(%topic, partitions = assigned.len(), "live reader assigned");
    gw.set_ready(true);

    let mut refresh = tokio::time::interval(REFRESH_EVERY);
    refresh.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = refresh.tick() => {
                if let Err(e) = assign_new_partitions(gw, &consumer, topic, &mut assigned).await {
                    tracing::warn!(error = %e, %topic, "live topic refresh failed");
                }
            }
            received = consumer.recv() => match received {
                Ok(m) => {
                    let position = format!("{}:{}", m.partition(), m.offset());
                    gw.dispatch(&position, m.payload().unwrap_or_default());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "live topic receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    gw.set_ready(false);
    Ok(())
}

/// Assigns the partitions not assigned yet: at their high watermark on the
/// first call, from their beginning later (a partition created after start
/// holds only records this node has not seen).
async fn assign_new_partitions(
    gw: &Gateway,
    consumer: &Arc<StreamConsumer>,
    topic: &str,
    assigned: &mut BTreeSet<i32>,
) -> anyhow::Result<()> {
    let first = assigned.is_empty();
    let known = assigned.clone();
    let consumer = consumer.clone();
    let topic = topic.to_owned();
    // librdkafka's metadata and watermark calls block.
    let added = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(i32, i64)>> {
        let metadata = consumer.fetch_metadata(Some(&topic), METADATA_TIMEOUT)?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(Vec::new());
        };
        if t.error().is_some() {
            return Ok(Vec::new());
        }
        let new: Vec<i32> = t
            .partitions()
            .iter()
            .map(|p| p.id())
            .filter(|p| !known.contains(p))
            .collect();
        let mut tpl = TopicPartitionList::new();
        let mut starts = Vec::with_capacity(new.len());
        for p in new {
            let start = if first {
                consumer.fetch_watermarks(&topic, p, METADATA_TIMEOUT)?.1
            } else {
                0
            };
            tpl.add_partition_offset(&topic, p, Offset::Offset(start))?;
            starts.push((p, start));
        }
        if !starts.is_empty() {
            consumer.incremental_assign(&tpl)?;
        }
        Ok(starts)
    })
    .await??;
    for (partition, start) in added {
        // Everything before `start` is for a replay to read back.
        gw.registry().note_assigned(partition, start);
        assigned.insert(partition);
    }
    Ok(())
}
