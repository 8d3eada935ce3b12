//! Benchmarks (commands, not tests). Each prints its figures and writes them
//! as JSON under `bench-results/`.
//!
//! - `ingest`: N voice events (whole call lifecycles) produced first, then a
//!   hub started and timed until every record is committed; compared, in the
//!   same run, with a raw `COPY` of the rows it wrote into the same tables
//!   (the median of three loads), and with a generic sink (module
//!   [`sink`]) applying the same records.
//! - `deltas`: assistant reply deltas, produce → WebSocket client latency over
//!   many concurrent streams; on one node (the default: the consuming node
//!   hands deltas to its own sockets in-process) or, with `--across-nodes`,
//!   to clients of a gateway-only node (through `lad.live.v1`).
//! - `hop`: the same delta traffic through the broker alone (produce →
//!   consumer), the floor under the `deltas` figure.
//! - `fanout`: 10,000 WebSocket clients on 100 tenants' `calls` channels:
//!   the hub's memory per idle connection, then deliveries/s and produce →
//!   client latency of `call.updated` (module [`fanout`]).
//! - `burst`: 50,000 events of one tenant at once with 100 clients on its
//!   `calls` channel: clients cut, seconds until every client holds every
//!   call's final state, hub peak memory (module [`burst`]).
//! - `soak`: 30 minutes of mixed traffic (voice, billing, campaigns,
//!   assistant) with 1,000 clients: hub RSS over time and its slope, the
//!   outbox backlog, p99 commit-to-socket per window, socket errors
//!   (module [`soak`]).

mod burst;
mod cpu;
mod fanout;
mod sink;
mod soak;

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use lad_consumers::kafka::{ensure_topics, KafkaSettings};
use lad_hub::config::{Cli, Command, DEFAULT_BATCH_MAX};
use lad_hub::demo::{CallScript, Event};
use rand::SeedableRng;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "lad-bench", about = "LAD live hub benchmarks")]
struct Args {
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Server URL without a database name; each run creates its own databases.
    #[arg(
        long,
        env = "LAD_BENCH_PG",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    postgres: String,
    #[arg(long, default_value = "bench-results")]
    out_dir: String,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    Ingest {
        #[arg(long, default_value_t = 500_000)]
        events: usize,
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        #[arg(long, default_value_t = DEFAULT_BATCH_MAX)]
        batch_max: usize,
        /// Transactions each pipeline runs at once (`LAD_PIPELINE_CONCURRENCY`).
        #[arg(long, default_value_t = 2)]
        concurrency: u16,
        /// Skip the generic-sink baseline (it takes longer than the hub).
        #[arg(long)]
        no_baseline: bool,
    },
    Deltas {
        #[command(flatten)]
        traffic: DeltaTraffic,
        /// Clients on a second, gateway-only hub: the path of a delta
        /// consumed by another node.
        #[arg(long)]
        across_nodes: bool,
    },
    /// The broker alone under the `deltas` traffic (no hub): its share of
    /// the `deltas` figure.
    Hop {
        #[command(flatten)]
        traffic: DeltaTraffic,
        #[arg(long, default_value_t = 6)]
        partitions: i32,
    },
    Fanout(fanout::Fanout),
    Burst(burst::Burst),
    Soak(soak::Soak),
    /// Internal: `fanout`'s hub process (a `lad-hub serve` command line).
    #[command(hide = true)]
    Hub {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        argv: Vec<String>,
    },
}

/// Concurrent assistant replies, each streaming `rate` deltas a second.
#[derive(clap::Args, Clone, Copy)]
struct DeltaTraffic {
    #[arg(long, default_value_t = 100)]
    streams: usize,
    #[arg(long, default_value_t = 30.0)]
    rate: f64,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

impl DeltaTraffic {
    fn ticks(&self) -> usize {
        ticks(self.seconds, self.rate)
    }

    fn figures(&self) -> Value {
        json!({
            "streams": self.streams,
            "deltas_per_second_per_stream": self.rate,
            "seconds": self.seconds,
        })
    }
}

const SECRET: &str = "benchmarks-only-secret-8e1f4c2a9b7d4e60a3c5";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let (name, figures) = match args.bench {
        Bench::Ingest {
            events,
            partitions,
            batch_max,
            concurrency,
            no_baseline,
        } => (
            "ingest",
            ingest(
                &args.brokers,
                &args.postgres,
                IngestShape {
                    events,
                    partitions,
                    batch_max,
                    concurrency,
                    baseline: !no_baseline,
                },
            )
            .await?,
        ),
        Bench::Deltas {
            traffic,
            across_nodes,
        } => (
            "deltas",
            deltas(&args.brokers, &args.postgres, traffic, across_nodes).await?,
        ),
        Bench::Fanout(f) => (
            "fanout",
            fanout::run(&args.brokers, &args.postgres, f).await?,
        ),
        Bench::Burst(b) => ("burst", burst::run(&args.brokers, &args.postgres, b).await?),
        Bench::Soak(s) => ("soak", soak::run(&args.brokers, &args.postgres, s).await?),
        Bench::Hub { argv } => return fanout::serve_child(argv).await,
        Bench::Hop {
            traffic,
            partitions,
        } => {
            let kafka = KafkaSettings {
                brokers: args.brokers.clone(),
                ..KafkaSettings::default()
            };
            (
                "hop",
                broker_hop(&args.brokers, &kafka, traffic, partitions).await?,
            )
        }
    };
    std::fs::create_dir_all(&args.out_dir)?;
    let file = format!(
        "{}/{name}-{}.json",
        args.out_dir,
        Utc::now().format("%Y%m%dT%H%M%S")
    );
    std::fs::write(&file, serde_json::to_string_pretty(&figures)?)?;
    println!("{}", serde_json::to_string_pretty(&figures)?);
    println!("written to {file}");
    Ok(())
}

struct Run {
    prefix: String,
    db_url: String,
}

fn fresh_run(postgres: &str) -> Run {
    let prefix = format!("bench{}", Uuid::new_v4().simple());
    let db_url = format!("{postgres}/{prefix}");
    Run { prefix, db_url }
}

/// The `lad-hub serve` command line of a benchmark's hub. `group` names
/// the consumer group: the setup run and the timed run use different ones,
/// so the timed hub never waits on a member the broker still remembers from
/// the setup run.
fn hub_argv(
    run: &Run,
    group: &str,
    brokers: &str,
    partitions: i32,
    batch_max: usize,
    role: &str,
) -> Vec<String> {
    let p = &run.prefix;
    [
        "lad-hub",
        "serve",
        "--database-url",
        &run.db_url,
        "--kafka-brokers",
        brokers,
        "--jwt-secret",
        SECRET,
        "--http-addr",
        "127.0.0.1:0",
        "--consumer-group",
        &format!("{p}.{group}"),
        "--topic-voice",
        &format!("{p}.voice"),
        "--topic-campaigns",
        &format!("{p}.campaigns"),
        "--topic-billing",
        &format!("{p}.billing"),
        "--topic-ai",
        &format!("{p}.ai"),
        "--topic-live",
        &format!("{p}.live"),
        "--topic-dead-letters",
        &format!("{p}.dead-letters"),
        "--topic-partitions",
        &partitions.to_string(),
        "--batch-max",
        &batch_max.to_string(),
        "--role",
        role,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts a hub in this process from a `lad-hub serve` command line.
async fn start_hub(argv: Vec<String>) -> anyhow::Result<lad_hub::startup::Running> {
    let Command::Serve(serve) = Cli::try_parse_from(argv)?.command else {
        anyhow::bail!("not a `lad-hub serve` command line");
    };
    lad_hub::startup::start(*serve).await
}

fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    Ok(rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("batch.num.messages", "10000")
        .create()?)
}

/// Produces and returns the next offset per partition (what the hub must reach).
async fn produce_all(
    p: &FutureProducer,
    topic: &str,
    events: &[Event],
) -> anyhow::Result<HashMap<i32, i64>> {
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for chunk in events.chunks(50_000) {
        let mut deliveries = Vec::with_capacity(chunk.len());
        for e in chunk {
            let payload = e.payload();
            loop {
                match p.send_result(FutureRecord::to(topic).key(&e.key).payload(&payload)) {
                    Ok(d) => break deliveries.push(d),
                    Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
                }
            }
        }
        for d in deliveries {
            let delivery = d.await?.map_err(|(e, _)| e)?;
            let (partition, offset) = (delivery.partition, delivery.offset);
            let end = ends.entry(partition).or_default();
            *end = (*end).max(offset + 1);
        }
    }
    Ok(ends)
}

struct IngestShape {
    events: usize,
    partitions: i32,
    batch_max: usize,
    concurrency: u16,
    baseline: bool,
}

async fn ingest(brokers: &str, postgres: &str, shape: IngestShape) -> anyhow::Result<Value> {
    let IngestShape {
        events: n,
        partitions,
        batch_max,
        concurrency,
        baseline,
    } = shape;
    let run = fresh_run(postgres);
    let topic = format!("{}.voice", run.prefix);
    let tenants: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    let agents: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut events = Vec::with_capacity(n + 8);
    let start = Utc::now() - chrono::Duration::hours(1);
    let mut i = 0usize;
    while events.len() < n {
        let script = CallScript::random(&mut rng, tenants[i % tenants.len()], &agents);
        events.extend(script.events(
            start + chrono::Duration::milliseconds(i as i64),
            chrono::Duration::seconds(5),
        ));
        i += 1;
    }
    events.truncate(n);

    // The hub creates the topics (and the database) on start; do that first,
    // stop it, then produce everything, then time a fresh start.
    let hub = start_hub(hub_argv(
        &run, "setup", brokers, partitions, batch_max, "all",
    ))
    .await?;
    hub.shutdown.cancel();
    hub.wait().await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&run.db_url)
        .await?;
    // Funds for every call, so the billing chain charges (the common path).
    for t in &tenants {
        sqlx::query(
            "INSERT INTO billing_wallets (tenant_id, current_balance) VALUES ($1, 1000000000)",
        )
        .bind(t)
        .execute(&pool)
        .await
        .context("seeding wallets")?;
    }
    let p = producer(brokers)?;
    let t0 = Instant::now();
    let ends = produce_all(&p, &topic, &events).await?;
    let produce_secs = t0.elapsed().as_secs_f64();
    eprintln!("produced {n} events in {produce_secs:.1}s; starting the hub");

    let t0 = Instant::now();
    let cpu_start = cpu::CpuSample::now();
    // The hub runs in this process, so its CPU is this process's.
    let hub_ticks = cpu::process_ticks(std::process::id());
    let postgres_ticks = cpu::ticks_of_processes_named("postgres");
    let mut argv = hub_argv(&run, "hub", brokers, partitions, batch_max, "all");
    argv.extend(["--pipeline-concurrency".to_owned(), concurrency.to_string()]);
    let hub = start_hub(argv).await?;
    // When the first batch committed: what came before it is the hub's
    // start (its connections, the consumer group's join), not ingest.
    let mut first_commit_secs = None;
    loop {
        let rows: Vec<(i32, Option<i64>)> = sqlx::query_as(
            "SELECT kafka_partition, next_offset FROM hub_consumer_offsets WHERE topic = $1",
        )
        .bind(&topic)
        .fetch_all(&pool)
        .await?;
        if first_commit_secs.is_none() && rows.iter().any(|(_, o)| o.unwrap_or(0) > 0) {
            first_commit_secs = Some(t0.elapsed().as_secs_f64());
        }
        let done = ends
            .iter()
            .all(|(p, end)| rows.iter().any(|(q, o)| q == p && o.unwrap_or(0) >= *end));
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hub_secs = t0.elapsed().as_secs_f64();
    let cpu = cpu::window(cpu_start);
    let hub_core_pct =
        cpu::process_core_pct(hub_ticks, cpu::process_ticks(std::process::id()), hub_secs);
    let postgres_core_pct = cpu::process_core_pct(
        Some(postgres_ticks),
        Some(cpu::ticks_of_processes_named("postgres")),
        hub_secs,
    );
    hub.shutdown.cancel();
    hub.wait().await?;
    let events_per_sec = n as f64 / hub_secs;

    let (copy_rows, copy_runs) = copy_same_rows(&pool, postgres).await?;
    let copy_secs = median(&copy_runs);
    let sink = if baseline {
        eprintln!("hub done in {hub_secs:.1}s; now the generic sink");
        let figures = sink::run(brokers, postgres, &topic, &ends, batch_max).await?;
        let secs = figures["seconds"].as_f64().unwrap_or(f64::NAN);
        json!({
            "figures": figures,
            "ratio_hub_to_sink": round(secs / hub_secs),
        })
    } else {
        Value::Null
    };
    let figures = json!({
        "bench": "ingest",
        "events": n,
        "partitions": partitions,
        "batch_max": batch_max,
        "concurrency": concurrency,
        "generic_sink": sink,
        "produce_seconds": round(produce_secs),
        "hub_seconds": round(hub_secs),
        "hub_first_commit_seconds": first_commit_secs.map(round),
        "hub_events_per_second": events_per_sec.round(),
        "copy_rows": copy_rows,
        "copy_seconds": round(copy_secs),
        "copy_seconds_each_run": copy_runs.into_iter().map(round).collect::<Vec<_>>(),
        "copy_rows_per_second": (copy_rows as f64 / copy_secs).round(),
        "ratio_hub_to_copy": round(copy_secs / hub_secs),
        "machine": machine(),
        "cpu_during_run": cpu,
        // CPU time per event: of the whole machine (Postgres and the broker
        // included) and of the hub alone. On a shared host it swings with
        // the host's speed much as events/s does (BENCHMARKS.md).
        "machine_cpu_us_per_event": cpu_us_per_event(
            cpu["busy_pct"].as_f64().map(|p| p / 100.0 * cpus() as f64),
            hub_secs,
            n,
        ),
        "hub_core_pct": hub_core_pct,
        "hub_cpu_us_per_event": cpu_us_per_event(hub_core_pct.as_f64().map(|p| p / 100.0), hub_secs, n),
        // Postgres's backends together (this machine's, whoever else uses
        // it): what a change to the hub's statements moves.
        "postgres_core_pct": postgres_core_pct,
        "postgres_cpu_us_per_event": cpu_us_per_event(postgres_core_pct.as_f64().map(|p| p / 100.0), hub_secs, n),
    });
    pool.close().await;
    drop_database(postgres, &run.prefix).await;
    Ok(figures)
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Microseconds of CPU per event from `cores` busy on average over `secs`.
fn cpu_us_per_event(cores: Option<f64>, secs: f64, events: usize) -> Value {
    match cores {
        Some(cores) if events > 0 => json!((cores * secs / events as f64 * 1e7).round() / 10.0),
        _ => Value::Null,
    }
}

/// Times `COPY` loads of the same rows.
const COPY_RUNS: usize = 3;

/// The hub's output tables, copied out and then `COPY`ed into the same
/// tables of a fresh, migrated database: the floor any ingest path pays.
/// Loaded [`COPY_RUNS`] times (a fresh database each), because one load's
/// time swings by half on a shared machine (4.7 to 7.3 s within ten
/// minutes, measured); returns the rows and every run's seconds.
async fn copy_same_rows(src: &PgPool, postgres: &str) -> anyhow::Result<(u64, Vec<f64>)> {
    const TABLES: &[&str] = &[
        "voice_call_logs",
        "voice_call_transcripts",
        "voice_call_analysis",
        "voice_call_stats_daily",
        "billing_wallets",
        "billing_usage_events",
        "billing_ledger_transactions",
        "hub_processed_events",
    ];
    let mut dumps = Vec::new();
    let mut conn = src.acquire().await?;
    for t in TABLES {
        let mut out = Vec::new();
        let mut stream = conn
            .copy_out_raw(&format!(
                "COPY (SELECT * FROM {t}) TO STDOUT (FORMAT binary)"
            ))
            .await?;
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        drop(stream);
        dumps.push((*t, out));
    }
    drop(conn);
    let mut rows = 0u64;
    let mut runs = Vec::with_capacity(COPY_RUNS);
    for _ in 0..COPY_RUNS {
        let (name, mut conn) = migrated_database(postgres, "benchcopy").await?;
        let t0 = Instant::now();
        rows = 0;
        for (t, data) in &dumps {
            let mut copy = conn
                .copy_in_raw(&format!("COPY {t} FROM STDIN (FORMAT binary)"))
                .await?;
            copy.send(data.as_slice()).await?;
            rows += copy.finish().await?;
        }
        runs.push(t0.elapsed().as_secs_f64());
        conn.close().await?;
        drop_database(postgres, &name).await;
    }
    Ok((rows, runs))
}

fn median(xs: &[f64]) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// A new database named `prefix` + a random suffix, with the hub's schema,
/// and a connection to it; returns its name (for [`drop_database`]).
async fn migrated_database(postgres: &str, prefix: &str) -> anyhow::Result<(String, PgConnection)> {
    let name = format!("{prefix}{}", Uuid::new_v4().simple());
    let url = format!("{postgres}/{name}");
    let db = lad_hub::config::DbArgs {
        database_url: url.clone(),
        db_pool_size: 1,
    };
    lad_hub::startup::migrate(&db).await?.close().await;
    Ok((name, PgConnection::connect(&url).await?))
}

async fn drop_database(postgres: &str, name: &str) {
    if let Ok(mut c) = PgConnection::connect(&format!("{postgres}/postgres")).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await;
    }
}

async fn deltas(
    brokers: &str,
    postgres: &str,
    traffic: DeltaTraffic,
    across_nodes: bool,
) -> anyhow::Result<Value> {
    let run = fresh_run(postgres);
    let roles: &[&str] = if across_nodes {
        &["consumers", "gateway"]
    } else {
        &["all"]
    };
    let mut hubs = Vec::new();
    for role in roles {
        hubs.push(start_hub(hub_argv(&run, "hub", brokers, 6, DEFAULT_BATCH_MAX, role)).await?);
    }
    let ready = Instant::now();
    for hub in &hubs {
        while !lad_hub::http::probe_ready(hub.addr).await {
            anyhow::ensure!(ready.elapsed() < Duration::from_secs(60), "hub not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The clients' node: the only one, or the gateway-only one.
    let addr = hubs.last().expect("a hub").addr;
    let tenant = Uuid::new_v4();
    let users: Vec<Uuid> = (0..traffic.streams).map(|_| Uuid::new_v4()).collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<f64>(100_000);
    let mut readers = Vec::new();
    for user in &users {
        let token = token_for(tenant, *user, "member")?;
        let channel = format!("tenant:{tenant}:user:{user}:ai");
        let mut ws = subscribed_client(addr, &token, &channel).await?;
        let tx = tx.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(Message::Text(t))) = ws.next().await {
                let Ok(v) = serde_json::from_str::<Value>(&t) else {
                    continue;
                };
                if v["type"] != "ai.reply.delta" {
                    continue;
                }
                let sent: i64 = v["data"]["delta"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let lat = (Utc::now().timestamp_micros() - sent) as f64 / 1000.0;
                if tx.send(lat).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let producer = DeltaProducer::new(brokers, &format!("{}.ai", run.prefix), tenant)?;
    producer.warm_up(users[0], &mut rx).await?;
    let (expected, lats, cpu) = producer.timed_run(&users, traffic, rx).await?;
    for r in readers {
        r.abort();
    }
    for hub in hubs {
        hub.shutdown.cancel();
        let _ = hub.wait().await;
    }
    drop_database(postgres, &run.prefix).await;
    Ok(latency_report(
        "deltas",
        traffic,
        json!({ "across_nodes": across_nodes }),
        expected,
        lats,
        cpu,
    ))
}

/// The broker alone under the `deltas` traffic: produce → a consumer
/// configured as the hub's assistant pipeline is. The floor under the
/// hub's figure on this broker.
async fn broker_hop(
    brokers: &str,
    kafka: &KafkaSettings,
    traffic: DeltaTraffic,
    partitions: i32,
) -> anyhow::Result<Value> {
    let topic = format!("bench{}.hop", Uuid::new_v4().simple());
    ensure_topics(kafka, &[&topic], partitions, 1).await?;
    let consumer: StreamConsumer = kafka.low_latency_consumer_config(&topic).create()?;
    consumer.subscribe(&[&topic])?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<f64>(100_000);
    let reader = tokio::spawn(async move {
        while let Ok(m) = consumer.recv().await {
            let now = Utc::now().timestamp_micros();
            let sent = m
                .payload()
                .and_then(|p| serde_json::from_slice::<Value>(p).ok())
                .and_then(|v| v["data"]["delta"].as_str()?.parse::<i64>().ok());
            if let Some(sent) = sent {
                if tx.send((now - sent) as f64 / 1000.0).await.is_err() {
                    break;
                }
            }
        }
    });
    let users: Vec<Uuid> = (0..traffic.streams).map(|_| Uuid::new_v4()).collect();
    let producer = DeltaProducer::new(brokers, &topic, Uuid::new_v4())?;
    producer.warm_up(users[0], &mut rx).await?;
    let (expected, lats, cpu) = producer.timed_run(&users, traffic, rx).await?;
    reader.abort();
    Ok(latency_report(
        "hop",
        traffic,
        json!({ "partitions": partitions }),
        expected,
        lats,
        cpu,
    ))
}

/// Produces `ai.reply.delta` events whose text is their send time in µs.
struct DeltaProducer {
    producer: FutureProducer,
    topic: String,
    tenant: Uuid,
    conversation: Uuid,
}

impl DeltaProducer {
    fn new(brokers: &str, topic: &str, tenant: Uuid) -> anyhow::Result<DeltaProducer> {
        Ok(DeltaProducer {
            producer: rdkafka::ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .set("linger.ms", "0")
                .create()?,
            topic: topic.to_owned(),
            tenant,
            conversation: Uuid::new_v4(),
        })
    }

    fn send(&self, user: Uuid, message: Uuid, seq: i64) {
        let e = Event::new(
            self.conversation,
            "ai.reply.delta",
            self.tenant,
            Utc::now(),
            json!({"conversation_id": self.conversation, "message_id": message, "user_id": user,
                   "seq": seq, "delta": Utc::now().timestamp_micros().to_string()}),
        );
        let payload = e.payload();
        let _ = self.producer.send_result(
            FutureRecord::to(&self.topic)
                .key(&message.to_string())
                .payload(&payload),
        );
    }

    /// Sends a delta a second until one comes out at the other end: the
    /// consumer group may still be settling, and its join is not what the
    /// timed run measures. Whatever else of the warm-up arrives is dropped.
    async fn warm_up(
        &self,
        user: Uuid,
        rx: &mut tokio::sync::mpsc::Receiver<f64>,
    ) -> anyhow::Result<()> {
        let message = Uuid::new_v4();
        let started = Instant::now();
        for seq in 0.. {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "no delta came through within 60 s"
            );
            self.send(user, message, seq);
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        while rx.try_recv().is_ok() {}
        Ok(())
    }

    /// [`Self::run`] with the latencies collected as they come. Returns how
    /// many deltas were sent, the latencies that came back, and the
    /// machine's shares during the run.
    async fn timed_run(
        &self,
        users: &[Uuid],
        traffic: DeltaTraffic,
        rx: tokio::sync::mpsc::Receiver<f64>,
    ) -> anyhow::Result<(usize, Vec<f64>, Value)> {
        let expected = traffic.ticks() * users.len();
        // Drained while the run goes: a reader that finds the channel full
        // stops reading, and the wait would be timed as latency.
        let collecting = tokio::spawn(collect_latencies(rx, expected, Duration::from_secs(10)));
        let cpu_start = cpu::CpuSample::now();
        self.run(users, traffic).await;
        let lats = collecting.await?;
        Ok((expected, lats, cpu::window(cpu_start)))
    }

    /// One reply per user, `traffic.rate` deltas a second each, all streams ticking
    /// together (the harder case: every tick is a burst of `users.len()`).
    async fn run(&self, users: &[Uuid], traffic: DeltaTraffic) {
        let messages: Vec<(Uuid, Uuid)> = users.iter().map(|u| (*u, Uuid::new_v4())).collect();
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / traffic.rate));
        for seq in 0..traffic.ticks() as i64 {
            interval.tick().await;
            for (user, message) in &messages {
                self.send(*user, *message, seq);
            }
        }
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}

/// Latencies until `expected` arrived or `quiet` passed without one.
async fn collect_latencies(
    mut rx: tokio::sync::mpsc::Receiver<f64>,
    expected: usize,
    quiet: Duration,
) -> Vec<f64> {
    let mut lats = Vec::with_capacity(expected);
    while lats.len() < expected {
        match tokio::time::timeout(quiet, rx.recv()).await {
            Ok(Some(l)) => lats.push(l),
            _ => break,
        }
    }
    lats
}

/// A latency benchmark's figures: what ran, what arrived, the percentiles.
fn latency_report(
    bench: &str,
    traffic: DeltaTraffic,
    setup: Value,
    expected: usize,
    lats: Vec<f64>,
    cpu: Value,
) -> Value {
    let mut figures = traffic.figures();
    figures["bench"] = bench.into();
    figures["setup"] = setup;
    figures["expected"] = expected.into();
    figures["received"] = lats.len().into();
    figures["latency_ms"] = latency_figures(lats);
    figures["machine"] = machine();
    figures["cpu_during_run"] = cpu;
    figures
}

fn latency_figures(mut lats: Vec<f64>) -> Value {
    lats.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let pct = |q: f64| {
        lats.get(((lats.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .map_or(f64::NAN, round)
    };
    json!({
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "p999": pct(0.999),
        "max": lats.last().copied().map_or(f64::NAN, round),
    })
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A client of the hub at `addr`, subscribed to `channel` (its `subscribed`
/// frame read).
async fn subscribed_client(addr: SocketAddr, token: &str, channel: &str) -> anyhow::Result<Socket> {
    // tungstenite zeroes its whole read buffer (128 KiB by default) on every
    // read; these clients share the hub's two cores, so they read into 4 KiB
    // (a live frame is well under 1 KiB).
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{addr}/v1/ws?token={token}"),
        Some(config),
        false,
    )
    .await?;
    ws.send(Message::text(
        json!({"op": "subscribe", "id": 1, "channel": channel}).to_string(),
    ))
    .await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains(r#""op":"subscribed""#) => return Ok(ws),
            Some(Ok(Message::Text(t))) => anyhow::bail!("subscribe refused: {t}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("closed while subscribing"),
        }
    }
}

/// A token the benchmark's hubs accept, valid for an hour.
fn token_for(tenant: Uuid, user: Uuid, role: &str) -> anyhow::Result<String> {
    let claims = json!({"sub": user, "tenant_id": tenant, "role": role,
                        "exp": Utc::now().timestamp() + 3600});
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )?)
}

/// How many ticks a run of `seconds` at `rate` ticks a second has.
fn ticks(seconds: u64, rate: f64) -> usize {
    (seconds as f64 * rate) as usize
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
    });
    json!({
        "cpus": cpus(),
        "cpu": cpu,
        "os": std::env::consts::OS,
    })
}
