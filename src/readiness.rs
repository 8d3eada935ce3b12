//! `/readyz`: named checks with thresholds, so an orchestrator stops routing
//! to a node whose guarantees are at risk, and an operator reading the body
//! sees which one.
//!
//! The checks read what the loops report ([`HealthRegistry`]), what the
//! background monitor observed ([`Observed`], see `monitor.rs`), and one
//! database round trip with a short timeout. [`evaluate`] is pure.

use lad_consumers::health::{FailureKind, HealthRegistry, LoopStatus};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Thresholds {
    pub db_timeout: Duration,
    /// Brokers unanswered for longer than this: red.
    pub kafka_down: Duration,
    /// A pipeline on the same batch, or the relay failing, for longer: red.
    pub stall: Duration,
    /// Oldest unpublished outbox row older than this: red.
    pub outbox_age: Duration,
    /// Live reader more records behind than this: red.
    pub live_lag: i64,
}

/// A stored offset past the end of its partition (the topic was recreated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PastEnd {
    pub topic: String,
    pub partition: i32,
    pub stored: i64,
    pub end: i64,
}

/// What the background monitor saw last.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The last metadata request the brokers answered.
    pub kafka_ok_at: Option<Instant>,
    pub kafka_error: Option<String>,
    pub past_end: Vec<PastEnd>,
    /// Records of `lad.live.v1` not dispatched yet (gateway nodes).
    pub live_lag: Option<i64>,
}

/// Shared between the monitor (writer) and `/readyz` (reader).
#[derive(Debug, Clone)]
pub struct Readiness {
    pub thresholds: Thresholds,
    pub loops: HealthRegistry,
    observed: Arc<Mutex<Observed>>,
    started: Instant,
    runs_consumers: bool,
}

impl Readiness {
    pub fn new(thresholds: Thresholds, loops: HealthRegistry, runs_consumers: bool) -> Readiness {
        Readiness {
            thresholds,
            loops,
            observed: Arc::default(),
            started: Instant::now(),
            runs_consumers,
        }
    }

    pub fn observe(&self, update: impl FnOnce(&mut Observed)) {
        update(&mut self.observed.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn observed(&self) -> Observed {
        self.observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs every check now: the database round trip (bounded by its
    /// timeout) and the rest from memory.
    pub async fn check(&self, pool: &PgPool, live_reader_assigned: Option<bool>) -> Report {
        let db = tokio::time::timeout(
            self.thresholds.db_timeout,
            sqlx::query_scalar::<_, Option<f64>>(
                "SELECT (SELECT EXTRACT(EPOCH FROM now() - created_at)::float8
                         FROM hub_outbox ORDER BY id LIMIT 1)",
            )
            .fetch_one(pool),
        )
        .await;
        let database = match db {
            Ok(Ok(age)) => Ok(age.map(|secs| Duration::from_secs_f64(secs.max(0.0)))),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.thresholds.db_timeout.as_millis()
            )),
        };
        let inputs = Inputs {
            now: Instant::now(),
            started: self.started,
            database,
            observed: self.observed(),
            loops: if self.runs_consumers {
                self.loops.statuses()
            } else {
                Vec::new()
            },
            runs_consumers: self.runs_consumers,
            live_reader_assigned,
        };
        evaluate(&inputs, &self.thresholds)
    }
}

/// Everything one evaluation looks at.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub now: Instant,
    pub started: Instant,
    /// The age of the oldest outbox row (none when empty), or why the
    /// database did not answer.
    pub database: Result<Option<Duration>, String>,
    pub observed: Observed,
    pub loops: Vec<(String, LoopStatus)>,
    pub runs_consumers: bool,
    /// `None` on a node without a gateway.
    pub live_reader_assigned: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub checks: BTreeMap<String, Check>,
}

impl Report {
    pub fn ready(&self) -> bool {
        self.checks.values().all(|c| c.ok)
    }

    pub fn failing(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|(_, c)| !c.ok)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "status": if self.ready() { "ready" } else { "not_ready" },
            "failing": self.failing(),
            "checks": self.checks,
        })
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

pub fn evaluate(inputs: &Inputs, t: &Thresholds) -> Report {
    let mut checks = BTreeMap::new();
    let mut put = |name: &str, ok: bool, detail: String| {
        checks.insert(name.to_owned(), Check { ok, detail });
    };

    match &inputs.database {
        Ok(_) => put("database", true, "answers".into()),
        Err(e) => put("database", false, e.clone()),
    }

    // Before the first answer, count from the start: a hub that never
    // reached its brokers is as red as one that lost them.
    let since = inputs.observed.kafka_ok_at.unwrap_or(inputs.started);
    let silent = inputs.now.saturating_duration_since(since);
    if silent > t.kafka_down {
        let why = inputs
            .observed
            .kafka_error
            .clone()
            .unwrap_or_else(|| "no answer".into());
        put(
            "kafka",
            false,
            format!("brokers unreachable for {}: {why}", secs(silent)),
        );
    } else {
        put("kafka", true, "reachable".into());
    }

    if inputs.runs_consumers {
        for (name, status) in &inputs.loops {
            let (ok, detail) = loop_check(status, inputs.now, t.stall);
            put(name, ok, detail);
        }
        match &inputs.database {
            Ok(Some(age)) if *age > t.outbox_age => put(
                "outbox",
                false,
                format!(
                    "oldest unpublished row is {} old (threshold {})",
                    secs(*age),
                    secs(t.outbox_age)
                ),
            ),
            Ok(Some(age)) => put("outbox", true, format!("oldest row {} old", secs(*age))),
            Ok(None) => put("outbox", true, "empty".into()),
            // Already red under "database".
            Err(_) => {}
        }
        if inputs.observed.past_end.is_empty() {
            put("offsets", true, "within their partitions".into());
        } else {
            let list: Vec<String> = inputs
                .observed
                .past_end
                .iter()
                .map(|p| {
                    format!(
                        "{}[{}] stored {} > end {}",
                        p.topic, p.partition, p.stored, p.end
                    )
                })
                .collect();
            put(
                "offsets",
                false,
                format!(
                    "stored offsets past the end of their partition (topic recreated?): {}; repair with `lad-hub offsets reset`",
                    list.join(", ")
                ),
            );
        }
    }

    match inputs.live_reader_assigned {
        None => {}
        Some(false) => put("live_reader", false, "not assigned yet".into()),
        Some(true) => match inputs.observed.live_lag {
            Some(lag) if lag > t.live_lag => put(
                "live_reader",
                false,
                format!("{lag} records behind (threshold {})", t.live_lag),
            ),
            Some(lag) => put("live_reader", true, format!("{lag} records behind")),
            None => put("live_reader", true, "assigned".into()),
        },
    }
    Report { checks }
}

/// A loop is red when it fails for a reason retrying will not fix, or when
/// its unit of work in hand (retries included) or its failure streak is
/// older than the threshold.
fn loop_check(status: &LoopStatus, now: Instant, stall: Duration) -> (bool, String) {
    if let Some(f) = &status.failure {
        let failing = now.saturating_duration_since(f.since);
        if f.kind == FailureKind::Permanent {
            return (
                false,
                format!(
                    "failing for a reason retrying will not fix ({} attempts, {}): {}",
                    f.attempts,
                    secs(failing),
                    f.error
                ),
            );
        }
        if failing > stall {
            return (
                false,
                format!(
                    "retrying for {} ({} attempts): {}",
                    secs(failing),
                    f.attempts,
                    f.error
                ),
            );
        }
    }
    if let Some(busy) = status.busy_since {
        let on_it = now.saturating_duration_since(busy);
        if on_it > stall {
            return (
                false,
                format!(
                    "on the same batch for {} (threshold {})",
                    secs(on_it),
                    secs(stall)
                ),
            );
        }
    }
    match &status.failure {
        Some(f) => (true, format!("retrying a transient failure: {}", f.error)),
        None => (true, "running".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lad_consumers::health::Failure;

    fn thresholds() -> Thresholds {
        Thresholds {
            db_timeout: Duration::from_secs(1),
            kafka_down: Duration::from_secs(30),
            stall: Duration::from_secs(60),
            outbox_age: Duration::from_secs(60),
            live_lag: 1000,
        }
    }

    fn healthy(now: Instant) -> Inputs {
        Inputs {
            now,
            started: now - Duration::from_secs(600),
            database: Ok(None),
            observed: Observed {
                kafka_ok_at: Some(now - Duration::from_secs(2)),
                kafka_error: None,
                past_end: Vec::new(),
                live_lag: Some(0),
            },
            loops: vec![("pipeline:voice".into(), LoopStatus::default())],
            runs_consumers: true,
            live_reader_assigned: Some(true),
        }
    }

    #[test]
    fn a_healthy_hub_is_ready_and_names_every_check() {
        let r = evaluate(&healthy(Instant::now()), &thresholds());
        assert!(r.ready(), "{:?}", r.failing());
        let names: Vec<&str> = r.checks.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "database",
                "kafka",
                "live_reader",
                "offsets",
                "outbox",
                "pipeline:voice"
            ]
        );
    }

    #[test]
    fn brokers_silent_past_the_threshold_turn_it_red() {
        let now = Instant::now();
        let mut i = healthy(now);
        i.observed.kafka_ok_at = Some(now - Duration::from_secs(29));
        assert!(evaluate(&i, &thresholds()).ready());
        i.observed.kafka_ok_at = Some(now - Duration::from_secs(31));
        i.observed.kafka_error = Some("all brokers down".into());
        let r = evaluate(&i, &thresholds());
        assert_eq!(r.failing(), ["kafka"]);
        assert!(r.checks["kafka"].detail.contains("all brokers down"));
    }

    #[test]
    fn a_hub_that_never_reached_its_brokers_is_red_after_the_threshold() {
        let now = Instant::now();
        let mut i = healthy(now);
        i.observed.kafka_ok_at = None;
        assert_eq!(evaluate(&i, &thresholds()).failing(), ["kafka"]);
        i.started = now - Duration::from_secs(5);
        assert!(evaluate(&i, &thresholds()).ready());
    }

    #[test]
    fn a_transient_failure_is_tolerated_until_the_stall_threshold() {
        let now = Instant::now();
        let mut i = healthy(now);
        let failing = |since| LoopStatus {
            busy_since: Some(since),
            failure: Some(Failure {
                since,
                kind: FailureKind::Transient,
                attempts: 3,
                error: "connection refused".into(),
            }),
        };
        i.loops[0].1 = failing(now - Duration::from_secs(10));
        assert!(evaluate(&i, &thresholds()).ready());
        i.loops[0].1 = failing(now - Duration::from_secs(61));
        assert_eq!(evaluate(&i, &thresholds()).failing(), ["pipeline:voice"]);
    }

    #[test]
    fn a_permanent_failure_is_red_at_once() {
        let now = Instant::now();
        let mut i = healthy(now);
        i.loops[0].1.failure = Some(Failure {
            since: now,
            kind: FailureKind::Permanent,
            attempts: 1,
            error: "relation does not exist".into(),
        });
        assert_eq!(evaluate(&i, &thresholds()).failing(), ["pipeline:voice"]);
    }

    #[test]
    fn a_batch_blocked_without_failing_is_a_stall() {
        let now = Instant::now();
        let mut i = healthy(now);
        i.loops[0].1.busy_since = Some(now - Duration::from_secs(61));
        assert_eq!(evaluate(&i, &thresholds()).failing(), ["pipeline:voice"]);
    }

    #[test]
    fn an_old_outbox_row_past_end_offsets_and_a_late_reader_are_red() {
        let now = Instant::now();
        let mut i = healthy(now);
        i.database = Ok(Some(Duration::from_secs(61)));
        i.observed.past_end = vec![PastEnd {
            topic: "t".into(),
            partition: 0,
            stored: 50,
            end: 3,
        }];
        i.observed.live_lag = Some(1001);
        let r = evaluate(&i, &thresholds());
        assert_eq!(r.failing(), ["live_reader", "offsets", "outbox"]);
        assert_eq!(r.to_json()["status"], "not_ready");
    }

    #[test]
    fn an_unreachable_database_is_red_and_the_gateway_only_node_skips_consumer_checks() {
        let now = Instant::now();
        let mut i = healthy(now);
        i.runs_consumers = false;
        i.loops.clear();
        i.database = Err("no answer within 1000 ms".into());
        let r = evaluate(&i, &thresholds());
        assert_eq!(r.failing(), ["database"]);
        assert!(!r.checks.contains_key("outbox"));
    }
}
