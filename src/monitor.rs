//! The background checks behind `/readyz` and the gauges of `/metrics`:
//! every `LAD_MONITOR_INTERVAL_SECS` it asks the brokers for metadata and
//! watermarks, reads the offsets stored in Postgres, and derives
//!
//! - whether the brokers answer (and since when they have not);
//! - consumer lag per topic and partition (high watermark − stored offset);
//! - stored offsets past the end of their partition (a topic deleted and
//!   created again): the pipeline would skip new records as "already
//!   applied" until the offsets catch up, so this is an error, counted, and
//!   `/readyz` is red until `lad-hub offsets reset` repairs it;
//! - outbox rows and the oldest row's age, database pool use;
//! - the live reader's lag on `lad.live.v1` (gateway nodes).
//!
//! Any node can compute lag (it is in Postgres and on the brokers), so a
//! gateway-only node reports the pipelines' lag too when it knows their
//! topics; the checks that are a node's own (its loops, its reader) are
//! only on the nodes that run them.

use crate::gateway::Gateway;
use crate::readiness::{PastEnd, Readiness};
use lad_consumers::kafka::KafkaSettings;
use lad_consumers::metrics as m;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Monitor {
    pub pool: PgPool,
    pub kafka: KafkaSettings,
    /// The pipelines' `(consumer group, topic)` pairs.
    pub inputs: Vec<(String, String)>,
    /// The live topic and this node's gateway (gateway nodes only).
    pub live: Option<(String, Gateway)>,
    pub readiness: Readiness,
    pub every: Duration,
    /// Whether this node runs the pipelines and relay (outbox gauges).
    pub runs_consumers: bool,
}

/// Per topic, per partition: (low, high) watermarks.
type Watermarks = BTreeMap<String, BTreeMap<i32, (i64, i64)>>;

impl Monitor {
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let client: Arc<BaseConsumer> =
            Arc::new(self.kafka.consumer_config("lad-hub-monitor").create()?);
        let mut past_end: BTreeSet<(String, i32)> = BTreeSet::new();
        loop {
            self.tick(&client, &mut past_end).await;
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.every) => {}
            }
        }
    }

    async fn tick(&self, client: &Arc<BaseConsumer>, past_end: &mut BTreeSet<(String, i32)>) {
        let idle = self.pool.num_idle() as f64;
        let size = f64::from(self.pool.size());
        metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "in_use").set((size - idle).max(0.0));
        metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "idle").set(idle);

        if self.runs_consumers {
            match sqlx::query_as::<_, (i64, f64)>(
                "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
                 FROM hub_outbox",
            )
            .fetch_one(&self.pool)
            .await
            {
                Ok((rows, age)) => {
                    metrics::gauge!(m::OUTBOX_ROWS).set(rows as f64);
                    metrics::gauge!(m::OUTBOX_OLDEST_AGE_SECONDS).set(age.max(0.0));
                }
                Err(e) => tracing::debug!(error = %e, "outbox gauges not read"),
            }
        }

        let mut topics: Vec<String> = self.inputs.iter().map(|(_, t)| t.clone()).collect();
        if let Some((live, _)) = &self.live {
            topics.push(live.clone());
        }
        let watermarks = {
            let client = client.clone();
            let topics = topics.clone();
            tokio::task::spawn_blocking(move || watermarks(&client, &topics)).await
        };
        let watermarks = match watermarks {
            Ok(Ok(w)) => {
                metrics::gauge!(m::KAFKA_REACHABLE).set(1.0);
                self.readiness.observe(|o| {
                    o.kafka_ok_at = Some(Instant::now());
                    o.kafka_error = None;
                });
                w
            }
            Ok(Err(e)) => {
                metrics::gauge!(m::KAFKA_REACHABLE).set(0.0);
                tracing::warn!(error = %e, "brokers did not answer the monitor");
                self.readiness
                    .observe(|o| o.kafka_error = Some(e.to_string()));
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "monitor task failed");
                return;
            }
        };

        if let Some((live, gateway)) = &self.live {
            if let Some(parts) = watermarks.get(live) {
                let read: BTreeMap<i32, i64> = gateway.live_read_positions().into_iter().collect();
                let lag: i64 = parts
                    .iter()
                    .filter_map(|(p, (_, high))| read.get(p).map(|r| (high - (r + 1)).max(0)))
                    .sum();
                metrics::gauge!(m::LIVE_READER_LAG).set(lag as f64);
                self.readiness.observe(|o| o.live_lag = Some(lag));
            }
        }

        if self.inputs.is_empty() {
            return;
        }
        let stored = match self.stored_offsets().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "stored offsets not read");
                return;
            }
        };
        let mut suspects = Vec::new();
        let mut lags = Vec::new();
        for (group, topic) in &self.inputs {
            let Some(parts) = watermarks.get(topic) else {
                continue;
            };
            for (partition, (low, high)) in parts {
                match stored.get(&(group.clone(), topic.clone(), *partition)) {
                    Some(next) if next > high => {
                        suspects.push((topic.clone(), *partition, *next, *high))
                    }
                    Some(next) => lags.push((topic.clone(), *partition, high - next)),
                    None => lags.push((topic.clone(), *partition, high - low)),
                }
            }
        }
        // A stored offset above the reported high watermark is confirmed by
        // reading the partition's last batch: some brokers report the last
        // batch's base offset + 1 as the watermark (see ARCHITECTURE.md),
        // and only a real end below the stored offset is a recreated topic.
        let confirmed = if suspects.is_empty() {
            Vec::new()
        } else {
            let client = client.clone();
            let suspects = suspects.clone();
            tokio::task::spawn_blocking(move || {
                suspects
                    .into_iter()
                    .map(|(topic, p, next, high)| {
                        let end = confirm_end(&client, &topic, p, high);
                        (topic, p, next, end)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default()
        };
        let mut now_past = Vec::new();
        for (topic, partition, next, end) in confirmed {
            if next > end {
                now_past.push(PastEnd {
                    topic: topic.clone(),
                    partition,
                    stored: next,
                    end,
                });
            } else {
                lags.push((topic, partition, end - next));
            }
        }
        for (topic, partition, lag) in lags {
            metrics::gauge!(m::CONSUMER_LAG, "topic" => topic, "partition" => partition.to_string())
                .set(lag.max(0) as f64);
        }
        let current: BTreeSet<(String, i32)> = now_past
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect();
        for p in &now_past {
            metrics::gauge!(m::OFFSETS_PAST_END, "topic" => p.topic.clone(), "partition" => p.partition.to_string())
                .set(1.0);
            metrics::gauge!(m::CONSUMER_LAG, "topic" => p.topic.clone(), "partition" => p.partition.to_string())
                .set(0.0);
            if !past_end.contains(&(p.topic.clone(), p.partition)) {
                metrics::counter!(m::OFFSETS_PAST_END_DETECTED, "topic" => p.topic.clone())
                    .increment(1);
                tracing::error!(topic = %p.topic, partition = p.partition, stored = p.stored, end = p.end,
                    "stored offset is past the end of its partition (was the topic recreated?): new records would be skipped as already applied; repair with `lad-hub offsets reset --topic {} --to earliest`", p.topic);
            }
        }
        for (topic, partition) in past_end.difference(&current) {
            metrics::gauge!(m::OFFSETS_PAST_END, "topic" => topic.clone(), "partition" => partition.to_string())
                .set(0.0);
            tracing::info!(%topic, partition, "stored offset is within its partition again");
        }
        *past_end = current;
        self.readiness.observe(|o| o.past_end = now_past);
    }

    async fn stored_offsets(&self) -> Result<BTreeMap<(String, String, i32), i64>, sqlx::Error> {
        let (groups, topics): (Vec<String>, Vec<String>) = self.inputs.iter().cloned().unzip();
        let rows: Vec<(String, String, i32, i64)> = sqlx::query_as(
            "SELECT o.consumer_group, o.topic, o.kafka_partition, o.next_offset
             FROM hub_consumer_offsets o
             JOIN UNNEST($1::text[], $2::text[]) AS i(consumer_group, topic)
               ON i.consumer_group = o.consumer_group AND i.topic = o.topic
             WHERE o.next_offset IS NOT NULL",
        )
        .bind(groups)
        .bind(topics)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(g, t, p, o)| ((g, t, p), o))
            .collect())
    }
}

/// The watermarks of every partition of `topics` (blocking: librdkafka).
/// Metadata is asked per topic: a cluster may hold thousands of others.
fn watermarks(
    client: &BaseConsumer,
    topics: &[String],
) -> Result<Watermarks, rdkafka::error::KafkaError> {
    let mut out = Watermarks::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(topic), BROKER_TIMEOUT)?;
        for t in metadata.topics() {
            if t.name() != topic || t.error().is_some() {
                continue;
            }
            let parts = out.entry(t.name().to_owned()).or_default();
            for p in t.partitions() {
                let (low, high) = client.fetch_watermarks(t.name(), p.id(), BROKER_TIMEOUT)?;
                parts.insert(p.id(), (low, high));
            }
        }
    }
    Ok(out)
}

/// The offset after the last record of a partition, read rather than
/// trusted from the watermark: the last batch is fetched from `high - 1`.
pub(crate) fn confirm_end(client: &BaseConsumer, topic: &str, partition: i32, high: i64) -> i64 {
    if high <= 0 {
        return high.max(0);
    }
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(topic, partition, Offset::Offset(high - 1))
        .is_err()
        || client.assign(&tpl).is_err()
    {
        return high;
    }
    let mut end = high;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut got_any = false;
    while Instant::now() < deadline {
        match client.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) => {
                use rdkafka::message::Message;
                if msg.topic() == topic && msg.partition() == partition {
                    end = end.max(msg.offset() + 1);
                    got_any = true;
                }
            }
            Some(Err(_)) => break,
            None if got_any => break,
            None => {}
        }
    }
    let _ = client.unassign();
    end
}
