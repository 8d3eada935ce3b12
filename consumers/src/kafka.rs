//! librdkafka client configuration and topic administration.
//!
//! Every property can be overridden from the hub's configuration, so SASL/TLS
//! clusters (and the test broker's quirks, see ARCHITECTURE.md) need no code.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::time::Duration;

/// How to reach the cluster. `common` applies to every client; the two
/// specific lists are applied after it, so they win.
#[derive(Debug, Clone, Default)]
pub struct KafkaSettings {
    pub brokers: String,
    pub common: Vec<(String, String)>,
    pub consumer: Vec<(String, String)>,
    pub producer: Vec<(String, String)>,
}

/// Parses `key=value` pairs (the form of `--kafka-prop` and of the
/// comma-separated `LAD_KAFKA_*_PROPS` variables).
pub fn parse_props(items: &[String]) -> Result<Vec<(String, String)>, String> {
    items
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("kafka property {kv:?} is not key=value"))
        })
        .collect()
}

impl KafkaSettings {
    fn base(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.common {
            cfg.set(k, v);
        }
        cfg
    }

    /// A consumer that never commits on its own: the pipeline's offsets live
    /// in Postgres and Kafka commits only mirror them for lag tooling.
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        self.consumer_config_waiting(group_id, "5")
    }

    /// For consumers whose records are pushed to people as they type (the
    /// assistant's deltas, the live topic): a broker may hold an empty fetch
    /// for `fetch.wait.max.ms`, and some hold every fetch that long, so
    /// every hop pays it. Users can still override it.
    pub fn low_latency_consumer_config(&self, group_id: &str) -> ClientConfig {
        self.consumer_config_waiting(group_id, "1")
    }

    /// A pipeline's consumer: as [`Self::consumer_config`] (or, for a topic
    /// whose records are streamed to people, the low-latency one), with
    /// small fetches. The records of all partitions reach the pipeline
    /// through one queue, in the order of the fetch responses. Left at their
    /// defaults (1 MB a partition, 50 MB a response), a backlog arrives as
    /// runs of tens of thousands of one partition's records (tansu,
    /// measured), every lane but one has nothing to take, and the pipeline
    /// runs one transaction at a time. Small fetches interleave the
    /// partitions: measured with two lanes, 43 of 108 lanes started alone
    /// at the defaults, 5 of 103 with these (neither limit alone did it
    /// every time).
    pub fn pipeline_consumer_config(&self, group_id: &str, low_latency: bool) -> ClientConfig {
        let mut cfg = self.consumer_config_waiting(group_id, if low_latency { "1" } else { "5" });
        let defaults = [
            ("max.partition.fetch.bytes", "65536"),
            ("fetch.max.bytes", "1048576"),
        ];
        for (k, v) in defaults {
            if !self.overrides(k) {
                cfg.set(k, v);
            }
        }
        cfg
    }

    fn overrides(&self, key: &str) -> bool {
        self.common
            .iter()
            .chain(&self.consumer)
            .any(|(k, _)| k == key)
    }

    fn consumer_config_waiting(&self, group_id: &str, fetch_wait_ms: &str) -> ClientConfig {
        let mut cfg = self.base();
        cfg.set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", fetch_wait_ms)
            .set("enable.partition.eof", "false")
            .set("queued.max.messages.kbytes", "32768");
        for (k, v) in self.common.iter().chain(&self.consumer) {
            cfg.set(k, v);
        }
        cfg
    }

    pub fn producer_config(&self) -> ClientConfig {
        let mut cfg = self.base();
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("queue.buffering.max.messages", "200000");
        for (k, v) in self.common.iter().chain(&self.producer) {
            cfg.set(k, v);
        }
        cfg
    }
}

/// Creates the topics that do not exist yet. Existing topics are left as
/// they are: partition counts are an operator's decision once data flows.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    topics: &[&str],
    partitions: i32,
    replication: i32,
) -> Result<(), rdkafka::error::KafkaError> {
    let admin: AdminClient<DefaultClientContext> = settings.base().create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(rdkafka::error::KafkaError::AdminOp(code)).inspect_err(|_| {
                    tracing::error!(%topic, ?code, "could not create topic");
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn props_parse_from_flags_and_comma_lists() {
        let got = parse_props(&[
            "security.protocol=SASL_SSL, sasl.mechanism=PLAIN".into(),
            "batch.num.messages=1".into(),
        ])
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("security.protocol".into(), "SASL_SSL".into()),
                ("sasl.mechanism".into(), "PLAIN".into()),
                ("batch.num.messages".into(), "1".into()),
            ]
        );
        assert!(parse_props(&["novalue".into()]).is_err());
        assert!(parse_props(&["=x".into()]).is_err());
    }

    #[test]
    fn user_properties_override_the_defaults() {
        let s = KafkaSettings {
            brokers: "b:9092".into(),
            common: vec![("fetch.wait.max.ms".into(), "50".into())],
            consumer: vec![("session.timeout.ms".into(), "6000".into())],
            producer: vec![("linger.ms".into(), "0".into())],
        };
        let c = s.consumer_config("g");
        assert_eq!(c.get("fetch.wait.max.ms"), Some("50"));
        assert_eq!(c.get("session.timeout.ms"), Some("6000"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        let p = s.producer_config();
        assert_eq!(p.get("linger.ms"), Some("0"));
        assert_eq!(p.get("bootstrap.servers"), Some("b:9092"));
    }

    #[test]
    fn pipelines_fetch_small_unless_told_otherwise() {
        let mut s = KafkaSettings::default();
        let c = s.pipeline_consumer_config("g", false);
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("65536"));
        assert_eq!(c.get("fetch.max.bytes"), Some("1048576"));
        assert_eq!(c.get("fetch.wait.max.ms"), Some("5"));
        let streaming = s.pipeline_consumer_config("g", true);
        assert_eq!(streaming.get("fetch.wait.max.ms"), Some("1"));
        // Other consumers (the gateway's live reader) keep the defaults.
        assert_eq!(
            s.low_latency_consumer_config("g").get("fetch.max.bytes"),
            None
        );
        s.consumer = vec![("fetch.max.bytes".into(), "52428800".into())];
        let c = s.pipeline_consumer_config("g", false);
        assert_eq!(c.get("fetch.max.bytes"), Some("52428800"));
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("65536"));
    }
}
