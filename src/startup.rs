//! Builds the running hub from its configuration: database, topics, the
//! outbox relay, one pipeline per input topic, the gateway and its HTTP
//! server. [`start`] returns once the listener is bound, with its address.

use crate::config::{DbArgs, ServeArgs};
use crate::gateway::{Gateway, GatewayConfig};
use crate::readiness::{Readiness, Thresholds};
use crate::{demo, http, maintenance, monitor};
use anyhow::Context;
use lad_consumers::ai::AiDomain;
use lad_consumers::billing::BillingDomain;
use lad_consumers::campaigns::CampaignsDomain;
use lad_consumers::health::HealthRegistry;
use lad_consumers::kafka::{ensure_topics, KafkaSettings};
use lad_consumers::live::LocalHandoff;
use lad_consumers::outbox::{Relay, RelayProducer, RelayWaker};
use lad_consumers::pipeline::{Domain, Pipeline, PipelineConfig};
use lad_consumers::voice::VoiceDomain;
use rdkafka::producer::FutureProducer;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Creates the database named in `url` when it does not exist, then applies
/// every pending migration.
pub async fn migrate(db: &DbArgs) -> anyhow::Result<PgPool> {
    let opts = PgConnectOptions::from_str(&db.database_url).context("DATABASE_URL")?;
    let name = opts.get_database().unwrap_or("postgres").to_owned();
    let mut admin = opts
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("connecting to Postgres")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        // A concurrent creator may win the race; the database exists either way.
        if let Err(e) = admin
            .execute(format!("CREATE DATABASE {quoted}").as_str())
            .await
        {
            tracing::debug!(error = %e, "create database");
        }
        tracing::info!(database = %name, "database created");
    }
    let pool = PgPoolOptions::new()
        .max_connections(db.db_pool_size)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await
        .context("connecting to the hub database")?;
    // The schema migration takes seconds by design: not a slow query to warn of.
    let mut conn = pool
        .connect_options()
        .as_ref()
        .clone()
        .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(60))
        .connect()
        .await?;
    MIGRATOR
        .run(&mut conn)
        .await
        .context("applying migrations")?;
    conn.close().await?;
    Ok(pool)
}

/// A running hub.
pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Running {
    /// Waits until every task stopped (after `shutdown` was cancelled, or a
    /// task failed, which stops the others).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(e) = result {
                tracing::error!(error = %e, "hub task failed; stopping");
                self.shutdown.cancel();
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

pub async fn start(args: ServeArgs) -> anyhow::Result<Running> {
    args.ops.validate().map_err(anyhow::Error::msg)?;
    // Before anything records: what start-up counts is exported too.
    let metrics = http::metrics_handle();
    let shutdown = CancellationToken::new();
    // Before anything else: a hub that would accept forged tokens must not
    // touch the database or the broker at all.
    let verifier = crate::safety::token_verifier(&args.auth).await?;
    let snapshot_pool = crate::safety::snapshot_pool(&args.db, &args.limits)?;
    let pool = migrate(&args.db).await?;
    // Today's dedupe partition must exist before the first batch.
    maintenance::dedupe_partitions(&pool, args.ops.dedupe_window_days)
        .await
        .context("creating the dedupe partitions")?;
    let kafka = args.kafka.settings().map_err(anyhow::Error::msg)?;
    ensure_topics(
        &kafka,
        &args.topics.all(),
        args.topic_partitions,
        args.topic_replication,
    )
    .await
    .context("creating topics (is the broker up? see KAFKA_BROKERS)")?;

    let mut tasks = JoinSet::new();
    tasks.spawn(keep_partitions_ahead(pool.clone(), shutdown.clone()));
    tasks.spawn(maintenance::run(
        pool.clone(),
        maintenance::Retention {
            dedupe_window_days: args.ops.dedupe_window_days,
            dead_letter_days: args.ops.dead_letter_retention_days,
        },
        Duration::from_secs_f64(args.ops.maintenance_interval_secs),
        shutdown.clone(),
    ));
    let ops = &args.ops;
    let readiness = Readiness::new(
        Thresholds {
            db_timeout: Duration::from_millis(ops.ready_db_timeout_ms),
            kafka_down: Duration::from_secs_f64(ops.ready_kafka_secs),
            stall: Duration::from_secs_f64(ops.ready_stall_secs),
            outbox_age: Duration::from_secs_f64(ops.ready_outbox_age_secs),
            live_lag: ops.ready_live_lag,
        },
        HealthRegistry::default(),
        args.runs_consumers(),
    );

    let mut gateway_cfg = GatewayConfig {
        verifier: Some(verifier),
        limits: args.limits.config(),
        ..GatewayConfig::default()
    };
    args.ws
        .apply(&mut gateway_cfg)
        .map_err(anyhow::Error::msg)?;
    let gateway = Gateway::new(snapshot_pool, gateway_cfg, shutdown.clone());

    if args.runs_consumers() {
        let producer: FutureProducer =
            kafka.producer_config().create().context("kafka producer")?;
        let relay_producer =
            RelayProducer::new(&kafka.producer_config()).context("relay's kafka producer")?;
        let relay =
            Relay::new(pool.clone(), relay_producer).with_health(readiness.loops.register("relay"));
        let waker = relay.waker();
        // Shutdown in order: the relay keeps publishing until every
        // pipeline has committed its last batch (each holds a sender of
        // `pipelines_running`; the channel closes when the last one
        // returns), then drains what they committed.
        let (pipelines_running, mut all_stopped) = tokio::sync::mpsc::channel::<()>(1);
        let relay_stop = CancellationToken::new();
        {
            let (stop, shutdown) = (relay_stop.clone(), shutdown.clone());
            tasks.spawn(async move {
                shutdown.cancelled().await;
                while all_stopped.recv().await.is_some() {}
                stop.cancel();
                Ok(())
            });
        }
        tasks.spawn(async move {
            relay.run(relay_stop).await;
            Ok(())
        });
        let t = &args.topics;
        let spawn = PipelineSpawner {
            args: &args,
            kafka: &kafka,
            pool: &pool,
            producer: &producer,
            waker: &waker,
            shutdown: &shutdown,
            local: args.runs_gateway().then(|| gateway.local_handoff()),
            health: &readiness.loops,
            running: pipelines_running,
        };
        spawn.pipeline(&mut tasks, "voice", &t.topic_voice, VoiceDomain)?;
        spawn.pipeline(&mut tasks, "campaigns", &t.topic_campaigns, CampaignsDomain)?;
        spawn.pipeline(&mut tasks, "billing", &t.topic_billing, BillingDomain)?;
        spawn.pipeline(&mut tasks, "ai", &t.topic_ai, AiDomain)?;
    }

    if args.runs_gateway() {
        let (g, k, topic, stop) = (
            gateway.clone(),
            kafka.clone(),
            args.topics.topic_live.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move { g.run_live_reader(&k, &topic, stop).await });
    }

    let t = &args.topics;
    let monitor = monitor::Monitor {
        pool: pool.clone(),
        kafka: kafka.clone(),
        inputs: [
            ("voice", &t.topic_voice),
            ("campaigns", &t.topic_campaigns),
            ("billing", &t.topic_billing),
            ("ai", &t.topic_ai),
        ]
        .into_iter()
        .map(|(name, topic)| (format!("{}.{name}", args.consumer_group), topic.clone()))
        .collect(),
        live: args
            .runs_gateway()
            .then(|| (t.topic_live.clone(), gateway.clone())),
        readiness: readiness.clone(),
        every: Duration::from_secs_f64(args.ops.monitor_interval_secs),
        runs_consumers: args.runs_consumers(),
    };
    tasks.spawn(monitor.run(shutdown.clone()));

    if args.demo {
        let demo_args = crate::config::DemoArgs {
            kafka: args.kafka.clone(),
            topics: args.topics.clone(),
            tenant: demo::DEMO_TENANT.parse().expect("valid uuid"),
            calls_per_second: 5.0,
            calls: None,
        };
        let stop = shutdown.clone();
        tasks.spawn(async move { demo::run(demo_args, stop).await });
    }

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http_addr))?;
    let addr = listener.local_addr()?;
    let app = http::router(http::AppState {
        pool,
        gateway: args.runs_gateway().then_some(gateway),
        metrics,
        readiness,
    });
    let stop = shutdown.clone();
    tasks.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .context("http server")
    });
    tracing::info!(%addr, role = %args.role, "lad-hub serving");
    Ok(Running {
        addr,
        shutdown,
        tasks,
    })
}

struct PipelineSpawner<'a> {
    args: &'a ServeArgs,
    kafka: &'a KafkaSettings,
    pool: &'a PgPool,
    producer: &'a FutureProducer,
    waker: &'a RelayWaker,
    shutdown: &'a CancellationToken,
    local: Option<LocalHandoff>,
    health: &'a HealthRegistry,
    /// Held by every pipeline task until it returns (see the relay's stop).
    running: tokio::sync::mpsc::Sender<()>,
}

impl PipelineSpawner<'_> {
    /// One consumer group per topic: a rebalance of one pipeline never
    /// pauses the others.
    fn pipeline<D: Domain>(
        &self,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        name: &str,
        topic: &str,
        domain: D,
    ) -> anyhow::Result<()> {
        let cfg = PipelineConfig {
            group: format!("{}.{name}", self.args.consumer_group),
            topic: topic.to_owned(),
            live_topic: self.args.topics.topic_live.clone(),
            dead_letter_topic: self.args.topics.topic_dead_letters.clone(),
            batch_max: self.args.batch_max,
            batch_wait: self.args.batch_wait(domain.streams_ephemeral()),
            concurrency: usize::from(self.args.pipeline_concurrency),
        };
        let pipeline = Pipeline::new(
            Arc::new(domain),
            self.pool.clone(),
            self.kafka,
            self.producer.clone(),
            self.waker.clone(),
            cfg,
        )
        .with_context(|| format!("{name} pipeline"))?;
        let pipeline = match &self.local {
            Some(local) => pipeline.with_local_handoff(local.clone()),
            None => pipeline,
        };
        let pipeline = pipeline.with_health(self.health.register(&format!("pipeline:{name}")));
        let stop = self.shutdown.clone();
        let running = self.running.clone();
        tasks.spawn(async move {
            let result = pipeline.run(stop).await.map_err(anyhow::Error::from);
            drop(running);
            result
        });
        Ok(())
    }
}

/// Keeps monthly `voice_call_logs` partitions three months ahead, so a new
/// month never lands in the default partition of a long-running hub.
async fn keep_partitions_ahead(pool: PgPool, shutdown: CancellationToken) -> anyhow::Result<()> {
    loop {
        match sqlx::query_scalar::<_, i32>("SELECT lad_ensure_voice_call_log_partitions(1, 3)")
            .fetch_one(&pool)
            .await
        {
            Ok(n) if n > 0 => tracing::info!(created = n, "voice_call_logs partitions created"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not create voice_call_logs partitions"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(6 * 3600)) => {}
        }
    }
}
