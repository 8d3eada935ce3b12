//! Operability: readiness going red and back (broker stopped and
//! restarted, a stalled pipeline, an old outbox row), the metrics moving
//! with the work, the dedupe window, dead letter replay, and the repair of
//! offsets left past the end of a recreated topic.

use crate::support::*;
use chrono::Utc;
use lad_hub::demo::Event;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

/// Fast background checks and short thresholds, so each test sees a state
/// change within seconds.
fn quick_ops(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("LAD_MONITOR_INTERVAL_SECS", "0.5"),
        ("LAD_READY_KAFKA_SECS", "3"),
        ("LAD_READY_STALL_SECS", "2"),
        ("LAD_READY_OUTBOX_AGE_SECS", "2"),
    ];
    env.extend_from_slice(extra);
    env.into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn readyz(addr: SocketAddr) -> (u16, Value) {
    let (status, body) = lad_hub::http::fetch(addr, "/readyz")
        .await
        .expect("the hub answers /readyz");
    (status, serde_json::from_str(&body).expect("a JSON body"))
}

/// Waits until `/readyz` is 503 and names `check` among the failing ones;
/// returns the body.
async fn red_with(addr: SocketAddr, check: &str, secs: u64) -> Value {
    eventually(secs, &format!("/readyz red naming {check}"), || async {
        let (status, body) = readyz(addr).await;
        let failing = body["failing"].as_array().cloned().unwrap_or_default();
        (status == 503 && failing.iter().any(|f| f == check)).then_some(body)
    })
    .await
}

async fn green(addr: SocketAddr, secs: u64) {
    eventually(secs, "/readyz 200", || async {
        (readyz(addr).await.0 == 200).then_some(())
    })
    .await;
}

fn lad_hub_cli(args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lad-hub"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run lad-hub");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn activity(tenant: Uuid, campaign: Uuid, enrollment: Uuid, status: &str) -> Event {
    Event::new(
        enrollment,
        "campaign.activity",
        tenant,
        Utc::now(),
        // One lead per enrollment: an enrollment's activities name its lead.
        json!({"campaign_id": campaign, "campaign_lead_id": enrollment,
               "lead_id": Uuid::from_u128(enrollment.as_u128() ^ 1),
               "step_id": Uuid::new_v4(), "step_type": "email", "status": status}),
    )
}

/// A broker of this test's own, so stopping it disturbs no other test.
struct OwnBroker {
    port: u16,
    storage: String,
    child: Option<Child>,
}

impl OwnBroker {
    async fn start() -> OwnBroker {
        // tansu reads `sqlite://` + an absolute path as relative: `sqlite:///` + it.
        let storage = format!(
            "sqlite:///{}",
            std::env::temp_dir()
                .join(format!("lad-ops-tansu-{}.db", Uuid::new_v4().simple()))
                .display()
        );
        let mut broker = OwnBroker {
            port: free_port(),
            storage,
            child: None,
        };
        broker.up().await;
        broker
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn up(&mut self) {
        let tansu = std::env::var("TANSU")
            .ok()
            .or_else(|| {
                let home = std::env::var("HOME").ok()?;
                let p = std::path::Path::new(&home).join(".cargo/bin/tansu");
                p.exists().then(|| p.display().to_string())
            })
            .unwrap_or_else(|| "tansu".into());
        let url = format!("tcp://{}", self.addr());
        let child = Command::new(tansu)
            .args(["broker", "--listener-url", url.as_str()])
            .args(["--advertised-listener-url", url.as_str()])
            .args(["--storage-engine", self.storage.as_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu (scripts/broker.sh installs it)");
        self.child = Some(child);
        let addr = self.addr();
        eventually(30, "own broker listening", || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) }
        })
        .await;
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.down();
        if let Some(path) = self.storage.strip_prefix("sqlite:///") {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn readiness_is_red_while_the_broker_is_down_and_green_once_it_is_back(pool: PgPool) {
    let mut broker = OwnBroker::start().await;
    let topics = Topics::new();
    let env = quick_ops(&[]);
    let mut extra_env = env;
    extra_env.push(("KAFKA_BROKERS".into(), broker.addr()));
    let hub = Hub::start(
        &pool,
        &topics,
        HubOptions {
            extra_env,
            ..HubOptions::default()
        },
    )
    .await;
    let (status, body) = readyz(hub.addr).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["kafka"]["ok"], true);

    broker.down();
    let body = red_with(hub.addr, "kafka", 60).await;
    assert!(
        body["checks"]["kafka"]["detail"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{body}"
    );
    // Liveness is not readiness: the process is fine, only a dependency is away.
    assert_eq!(
        lad_hub::http::fetch(hub.addr, "/healthz").await.unwrap().0,
        200
    );
    // The gauge follows once the monitor's metadata request times out.
    eventually(20, "lad_kafka_reachable 0", || async {
        let m = metrics(hub.addr).await;
        (sample_sum(&m, "lad_kafka_reachable", &[]) == 0.0).then_some(())
    })
    .await;

    broker.up().await;
    green(hub.addr, 60).await;
    let m = metrics(hub.addr).await;
    assert_eq!(sample_sum(&m, "lad_kafka_reachable", &[]), 1.0);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_pipeline_stalled_on_its_batch_turns_readiness_red_until_it_lands(pool: PgPool) {
    let topics = Topics::new();
    let hub = Hub::start(
        &pool,
        &topics,
        HubOptions {
            extra_env: quick_ops(&[]),
            ..HubOptions::default()
        },
    )
    .await;
    let (tenant, campaign) = (Uuid::new_v4(), Uuid::new_v4());

    // A lock the batch cannot get: it waits in its transaction, neither
    // failing nor landing (what a stuck lock or a hung disk looks like).
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE campaign_step_stats IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let event = activity(tenant, campaign, Uuid::new_v4(), "sent");
    produce(&producer(false), &topics.campaigns(), &[event]).await;
    let body = red_with(hub.addr, "pipeline:campaigns", 60).await;
    assert!(
        body["checks"]["pipeline:campaigns"]["detail"]
            .as_str()
            .unwrap()
            .contains("same batch"),
        "{body}"
    );
    assert_eq!(body["checks"]["database"]["ok"], true, "{body}");

    blocker.rollback().await.unwrap();
    green(hub.addr, 30).await;
    let sql = format!("SELECT count(*) FROM campaign_step_stats WHERE campaign_id = '{campaign}'");
    assert_eq!(count(&pool, &sql).await, 1);
}

#[sqlx::test(migrations = "./migrations")]
async fn an_old_unreadable_outbox_row_is_reported_as_a_stuck_relay_and_an_old_outbox(pool: PgPool) {
    let topics = Topics::new();
    let hub = Hub::start(
        &pool,
        &topics,
        HubOptions {
            extra_env: quick_ops(&[]),
            ..HubOptions::default()
        },
    )
    .await;
    // A corrupt row (a bug, a manual edit): the relay can never publish it,
    // and everything after it waits. Retrying alone will not fix this.
    sqlx::query(
        "INSERT INTO hub_outbox (records, created_at) VALUES ('not json', now() - interval '1 hour')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let body = red_with(hub.addr, "relay", 30).await;
    let relay = body["checks"]["relay"]["detail"].as_str().unwrap();
    assert!(relay.contains("retrying will not fix"), "{body}");
    let body = red_with(hub.addr, "outbox", 30).await;
    assert!(
        body["checks"]["outbox"]["detail"]
            .as_str()
            .unwrap()
            .contains("oldest unpublished row"),
        "{body}"
    );
    let m = metrics(hub.addr).await;
    assert!(
        sample_sum(
            &m,
            "lad_loop_failures_total",
            &["loop=\"relay\"", "kind=\"permanent\""]
        ) >= 1.0,
        "{m}"
    );
    eventually(10, "the outbox age gauge", || async {
        let age = sample_sum(
            &metrics(hub.addr).await,
            "lad_outbox_oldest_age_seconds",
            &[],
        );
        (age >= 3000.0).then_some(())
    })
    .await;

    sqlx::query("DELETE FROM hub_outbox WHERE records = 'not json'")
        .execute(&pool)
        .await
        .unwrap();
    green(hub.addr, 30).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn metrics_describe_every_series_and_move_with_the_work(pool: PgPool) {
    let topics = Topics::new();
    let opts = || HubOptions {
        restartable: true,
        extra_env: quick_ops(&[]),
        ..HubOptions::default()
    };
    let worker = Hub::start(&pool, &topics, opts()).await;
    // A gateway-only node: it still reports the pipelines' lag (offsets are
    // in Postgres, watermarks on the brokers) while the worker is paused.
    let mut observer_opts = opts();
    observer_opts
        .extra_env
        .push(("LAD_ROLE".into(), "gateway".into()));
    let observer = Hub::start(&pool, &topics, observer_opts).await;

    let (tenant, campaign, enrollment) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut client =
        Client::connect(&worker.ws_url(&token(tenant, Uuid::new_v4(), "viewer", &[]))).await;
    let channel = format!("tenant:{tenant}:campaign:{campaign}");
    assert_eq!(client.subscribe(&channel).await["op"], "subscribed");
    // One key: every record in one partition, whose lag is then exact.
    let producer = producer(true);
    produce(
        &producer,
        &topics.campaigns(),
        &[activity(tenant, campaign, enrollment, "sent")],
    )
    .await;
    client.messages_until(30, |m| !m.is_empty()).await;

    // The relay records its latency once the broker acknowledged the drain,
    // which may be just after the gateway already dispatched the record.
    let m = eventually(10, "the relay's histogram", || async {
        let m = metrics(worker.addr).await;
        m.contains("lad_relay_publish_seconds_count").then_some(m)
    })
    .await;
    for help in [
        "# HELP lad_commit_to_socket_seconds",
        "# TYPE lad_commit_to_socket_seconds histogram",
        "# TYPE lad_batch_seconds histogram",
        "# HELP lad_produce_to_commit_seconds",
        "# HELP lad_relay_publish_seconds",
        "# HELP lad_outbox_rows",
        "# HELP lad_db_pool_connections",
        "# HELP lad_consumer_lag",
    ] {
        assert!(m.contains(help), "{help} missing:\n{m}");
    }
    assert!(m.contains("lad_commit_to_socket_seconds_bucket{le=\"0.05\"}"));
    assert!(sample_sum(&m, "lad_commit_to_socket_seconds_count", &[]) >= 1.0);
    assert!(sample_sum(&m, "lad_produce_to_commit_seconds_count", &[]) >= 1.0);
    assert!(sample_sum(&m, "lad_relay_publish_seconds_count", &[]) >= 1.0);
    assert!(sample_sum(&m, "lad_db_pool_connections", &["state=\"idle\""]) >= 1.0);
    assert!(m.contains("lad_outbox_rows "), "{m}");

    // Refusals and auth failures by reason.
    let mut intruder =
        Client::connect(&worker.ws_url(&token(Uuid::new_v4(), Uuid::new_v4(), "owner", &[]))).await;
    assert_eq!(intruder.subscribe(&channel).await["code"], "forbidden");
    assert!(
        tokio_tungstenite::connect_async(worker.ws_url("not-a-token"))
            .await
            .is_err()
    );
    let m = metrics(worker.addr).await;
    assert!(sample_sum(&m, "lad_ws_requests_refused_total", &["code=\"forbidden\""]) >= 1.0);
    assert!(sample_sum(&m, "lad_auth_failures_total", &[]) >= 1.0, "{m}");

    // Lag rises while the worker is paused...
    let campaigns = topics.campaigns();
    let lag = |addr| {
        let campaigns = campaigns.clone();
        async move {
            sample_sum(
                &metrics(addr).await,
                "lad_consumer_lag",
                &[&format!("topic=\"{campaigns}\"")],
            )
        }
    };
    let status = Command::new("kill")
        .args(["-STOP", &worker.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let more: Vec<Event> = (0..20)
        .map(|_| activity(tenant, campaign, enrollment, "opened"))
        .collect();
    produce(&producer, &topics.campaigns(), &more).await;
    let paused = eventually(30, "lag of 20 on the observer", || async {
        let l = lag(observer.addr).await;
        (l >= 20.0).then_some(l)
    })
    .await;
    assert_eq!(paused, 20.0);

    // ...and falls back to zero once it resumes, with deliveries counted.
    let status = Command::new("kill")
        .args(["-CONT", &worker.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    eventually(60, "lag back to 0", || async {
        (lag(observer.addr).await == 0.0).then_some(())
    })
    .await;
    client.messages_until(30, |m| m.len() >= 20).await;
    let m = metrics(worker.addr).await;
    assert!(sample_sum(&m, "lad_commit_to_socket_seconds_count", &[]) >= 21.0);
    assert!(
        sample_sum(
            &m,
            "lad_events_applied_total",
            &[&format!("topic=\"{campaigns}\"")]
        ) >= 21.0
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn the_dedupe_window_drops_old_partitions_and_still_catches_a_repeat_inside_it(pool: PgPool) {
    // An applied-event partition from long ago, as a hub running for weeks leaves.
    sqlx::query(
        "CREATE TABLE hub_processed_events_20200101 PARTITION OF hub_processed_events
         FOR VALUES FROM ('2020-01-01') TO ('2020-01-02')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO hub_processed_events VALUES (gen_random_uuid(), '2020-01-01')")
        .execute(&pool)
        .await
        .unwrap();
    let topics = Topics::new();
    let hub = Hub::start(
        &pool,
        &topics,
        HubOptions {
            extra_env: quick_ops(&[
                ("LAD_DEDUPE_WINDOW_DAYS", "2"),
                ("LAD_MAINTENANCE_INTERVAL_SECS", "1"),
            ]),
            ..HubOptions::default()
        },
    )
    .await;
    let partitions = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'hub_processed_events'::regclass ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let names = partitions().await;
    assert!(!names.contains(&"hub_processed_events_20200101".to_owned()));
    let today = Utc::now().date_naive();
    let oldest_kept = (today - chrono::Duration::days(2))
        .format("hub_processed_events_%Y%m%d")
        .to_string();
    let too_old = (today - chrono::Duration::days(3))
        .format("hub_processed_events_%Y%m%d")
        .to_string();
    assert!(names.contains(&oldest_kept), "{names:?}");
    assert!(!names.contains(&too_old), "{names:?}");
    let today_part = today.format("hub_processed_events_%Y%m%d").to_string();
    assert!(names.contains(&today_part), "{names:?}");
    let m = metrics(hub.addr).await;
    assert!(
        sample_sum(&m, "lad_dedupe_partitions_dropped_total", &[]) >= 1.0,
        "{m}"
    );

    // A repeat inside the window, at another offset, is caught by event_id
    // even with other content: a credit under the same event_id with a new
    // idempotency key (which alone would credit again), since a credit has
    // no row of its own unique by event_id and the window is what dedupes it.
    let tenant = Uuid::new_v4();
    let event = Event::new(
        tenant,
        "billing.credit",
        tenant,
        Utc::now(),
        json!({"idempotency_key": "fund-1", "amount": "100", "reason": "top-up"}),
    );
    let producer = producer(false);
    produce(&producer, &topics.billing(), std::slice::from_ref(&event)).await;
    let balance = format!(
        "SELECT COALESCE(sum(current_balance), 0)::bigint FROM billing_wallets WHERE tenant_id = '{tenant}'"
    );
    eventually(30, "the event applied", || async {
        (count(&pool, &balance).await == 100).then_some(())
    })
    .await;
    let mut repeat = event.clone();
    repeat.value["data"]["idempotency_key"] = json!("fund-2");
    produce(&producer, &topics.billing(), std::slice::from_ref(&repeat)).await;
    await_duplicates(hub.addr, &topics.billing(), 1.0).await;
    assert_eq!(count(&pool, &balance).await, 100, "applied once");
    let stored = format!(
        "SELECT count(*) FROM hub_processed_events WHERE event_id = '{}' AND applied_on >= current_date - 1",
        event.event_id()
    );
    assert!(count(&pool, &stored).await >= 1);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_dead_letter_replayed_after_its_cause_is_fixed_is_applied_once(pool: PgPool) {
    let topics = Topics::new();
    let _hub = Hub::start(&pool, &topics, HubOptions::default()).await;
    let tenant = Uuid::new_v4();
    let now = Utc::now();
    let fund = Event::new(
        tenant,
        "billing.credit",
        tenant,
        now,
        json!({"idempotency_key": "fund", "amount": "100", "reason": "top-up"}),
    );
    let usage = Event::new(
        tenant,
        "billing.usage",
        tenant,
        now,
        json!({"idempotency_key": "use-1", "feature_key": "enrichment",
               "usage_items": [{"category": "enrichment", "provider": "acme", "model": "people",
                                "unit": "request", "quantity": "3"}]}),
    );
    let producer = producer(false);
    produce(&producer, &topics.billing(), &[fund]).await;
    produce(&producer, &topics.billing(), std::slice::from_ref(&usage)).await;
    let letters = format!(
        "SELECT count(*) FROM hub_dead_letters WHERE topic = '{}'",
        topics.billing()
    );
    eventually(30, "the unpriced usage dead-lettered", || async {
        (count(&pool, &letters).await == 1).then_some(())
    })
    .await;

    let db = vec![("DATABASE_URL", database_url(&pool).await)];
    let billing = topics.billing();
    let (ok, out, err) = lad_hub_cli(
        &[
            "dead-letters",
            "list",
            "--topic",
            &billing,
            "--reason",
            "rule_violation",
            "--since",
            "1h",
        ],
        &db,
    );
    assert!(ok, "{err}");
    let listed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1, "{out}");
    assert_eq!(listed[0]["event_id"], json!(usage.event_id()));
    assert!(
        listed[0]["reason"].as_str().unwrap().contains("acme"),
        "{out}"
    );
    assert_eq!(listed[0]["replayed_at"], Value::Null);
    let (ok, out, _) = lad_hub_cli(
        &["dead-letters", "list", "--topic", "some.other.topic"],
        &db,
    );
    assert!(ok && out.is_empty(), "{out}");

    // The cause is fixed: the item gets a price.
    sqlx::query(
        "INSERT INTO billing_pricing_catalog (category, provider, model, unit, unit_price)
         VALUES ('enrichment', 'acme', 'people', 'request', 2)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut env = db.clone();
    env.push(("KAFKA_BROKERS", brokers()));
    let (ok, out, err) = lad_hub_cli(&["dead-letters", "replay", "--topic", &billing], &env);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let balance = format!(
        "SELECT count(*) FROM billing_wallets WHERE tenant_id = '{tenant}' AND current_balance = 94"
    );
    eventually(30, "the replayed usage charged", || async {
        (count(&pool, &balance).await == 1).then_some(())
    })
    .await;

    // Replaying again sends nothing: it was marked replayed.
    let (ok, out, _) = lad_hub_cli(&["dead-letters", "replay", "--topic", &billing], &env);
    assert!(ok && out.is_empty(), "{out}");
    let (_, out, _) = lad_hub_cli(&["dead-letters", "list", "--topic", &billing], &db);
    let listed: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_ne!(listed["replayed_at"], Value::Null);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ledger = format!(
        "SELECT count(*) FROM billing_ledger_transactions l JOIN billing_wallets w ON w.id = l.wallet_id
         WHERE w.tenant_id = '{tenant}'"
    );
    assert_eq!(count(&pool, &ledger).await, 2, "one credit, one charge");
    assert_eq!(count(&pool, &letters).await, 1, "not rejected again");
}

#[sqlx::test(migrations = "./migrations")]
async fn offsets_left_past_the_end_of_a_recreated_topic_are_detected_and_reset(pool: PgPool) {
    let topics = Topics::new();
    let mut hub = Hub::start(
        &pool,
        &topics,
        HubOptions {
            restartable: true,
            extra_env: quick_ops(&[]),
            ..HubOptions::default()
        },
    )
    .await;
    let (tenant, campaign, enrollment) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let sql = format!(
        "SELECT COALESCE(sum(count), 0)::bigint FROM campaign_step_stats WHERE campaign_id = '{campaign}'"
    );
    let applied = || async { count(&pool, &sql).await };
    // One record per batch and one key: one partition, every offset a batch
    // boundary (tansu, see ARCHITECTURE.md).
    let producer = producer(true);
    let first: Vec<Event> = (0..5)
        .map(|_| activity(tenant, campaign, enrollment, "sent"))
        .collect();
    produce(&producer, &topics.campaigns(), &first).await;
    eventually(30, "five applied", || async {
        (applied().await == 5).then_some(())
    })
    .await;

    // The topic is deleted and created again. The hub is stopped meanwhile:
    // with tansu 0.6, deleting a topic under a subscribed librdkafka
    // consumer crashes the consumer's process (SIGSEGV inside librdkafka),
    // so the hub starts again on the recreated topic, as it would after
    // such a crash or a deploy; the repair itself runs under the running hub.
    hub.terminate();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let campaigns = topics.campaigns();
    for r in admin.delete_topics(&[&campaigns], &opts).await.unwrap() {
        r.expect("topic deleted");
    }
    eventually(30, "topic recreated", || async {
        let created = admin
            .create_topics(
                &[NewTopic::new(&campaigns, 3, TopicReplication::Fixed(1))],
                &opts,
            )
            .await
            .ok()?;
        created.into_iter().all(|r| r.is_ok()).then_some(())
    })
    .await;
    hub.respawn().await;
    let second: Vec<Event> = (0..2)
        .map(|_| activity(tenant, campaign, enrollment, "opened"))
        .collect();
    produce(&producer, &campaigns, &second).await;

    let body = red_with(hub.addr, "offsets", 60).await;
    assert!(
        body["checks"]["offsets"]["detail"]
            .as_str()
            .unwrap()
            .contains(&campaigns),
        "{body}"
    );
    let m = metrics(hub.addr).await;
    assert!(
        sample_sum(
            &m,
            "lad_consumer_offsets_past_end",
            &[&format!("topic=\"{campaigns}\"")]
        ) >= 1.0,
        "{m}"
    );
    assert!(sample_sum(&m, "lad_consumer_offsets_past_end_total", &[]) >= 1.0);
    assert_eq!(
        applied().await,
        5,
        "the new records were skipped, not applied"
    );

    let env = vec![
        ("DATABASE_URL", database_url(&pool).await),
        ("KAFKA_BROKERS", brokers()),
    ];
    let (ok, out, err) = lad_hub_cli(
        &[
            "offsets", "reset", "--topic", &campaigns, "--to", "earliest",
        ],
        &env,
    );
    assert!(ok, "{err}");
    let row: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["before"], 5, "{out}");
    assert_eq!(row["after"], 0, "{out}");

    // The pipeline acts on the reset at the partition's next record: it
    // seeks back to 0 and applies what it had skipped.
    produce(
        &producer,
        &campaigns,
        &[activity(tenant, campaign, enrollment, "clicked")],
    )
    .await;
    eventually(
        60,
        "the skipped records applied after the reset",
        || async { (applied().await == 8).then_some(()) },
    )
    .await;
    green(hub.addr, 30).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn json_logs_are_one_object_per_line_with_the_same_fields(pool: PgPool) {
    let out = Command::new(env!("CARGO_BIN_EXE_lad-hub"))
        .arg("migrate")
        .env("DATABASE_URL", database_url(&pool).await)
        .env("LAD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .output()
        .expect("run lad-hub migrate");
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    let applied = lines
        .iter()
        .find(|l| l["message"] == "migrations applied")
        .expect("the migrate log line");
    assert_eq!(applied["level"], "INFO");
    assert!(applied["timestamp"].is_string() && applied["target"].is_string());
}

#[sqlx::test(migrations = "./migrations")]
async fn dead_letters_past_their_retention_are_deleted(pool: PgPool) {
    for (offset, age_days) in [(1i64, 40), (2, 10)] {
        sqlx::query(
            "INSERT INTO hub_dead_letters (topic, kafka_partition, kafka_offset, reason, error_kind, created_at)
             VALUES ('t', 0, $1, 'r', 'invalid_json', now() - make_interval(days => $2))",
        )
        .bind(offset)
        .bind(age_days)
        .execute(&pool)
        .await
        .unwrap();
    }
    let deleted = lad_hub::maintenance::expire_dead_letters(&pool, 30)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let left: Vec<i64> = sqlx::query_scalar("SELECT kafka_offset FROM hub_dead_letters")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, [2]);
}

#[sqlx::test(migrations = "./migrations")]
async fn sigterm_publishes_every_batch_committed_before_the_relay_stops(pool: PgPool) {
    let topics = Topics::new();
    let mut hub = Hub::start(
        &pool,
        &topics,
        HubOptions {
            batch_max: 100,
            ..HubOptions::default()
        },
    )
    .await;
    let (tenant, campaign) = (Uuid::new_v4(), Uuid::new_v4());
    let events: Vec<Event> = (0..3000)
        .map(|_| activity(tenant, campaign, Uuid::new_v4(), "sent"))
        .collect();
    produce(&producer(false), &topics.campaigns(), &events).await;
    let sql = format!(
        "SELECT COALESCE(sum(count), 0)::bigint FROM campaign_step_stats WHERE campaign_id = '{campaign}'"
    );
    eventually(60, "the first batches applied", || async {
        (count(&pool, &sql).await > 0).then_some(())
    })
    .await;
    // Mid-stream: pipelines finish their batch, then the relay drains.
    hub.terminate();
    assert_eq!(
        count(&pool, "SELECT count(*) FROM hub_outbox").await,
        0,
        "every committed batch was published before the hub exited"
    );
}
