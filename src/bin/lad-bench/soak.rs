//! `soak`: the hub under steady mixed traffic for a long while (30 minutes
//! by default) with many clients. What it answers: does the hub's memory
//! keep growing (RSS sampled every 10 s, its slope), does the outbox keep
//! up (rows waiting, sampled), does commit-to-socket latency hold in every
//! window (p99 per window, 5 minutes by default), and does any socket fail
//! (errors and closes: there should be none). The hub runs as a child
//! process (see `fanout`), so its memory is read apart from the clients'.
//!
//! Commit-to-socket: every committed record on `lad.live.v1` carries
//! `committed_at`, the clock of the batch that wrote it, read before its
//! writes (so the figure errs high by the transaction's own time). The
//! benchmark reads the topic beside its clients and matches each socket
//! message to its record by `id`. Assistant deltas are pushed on receipt,
//! before any commit, so they carry none and are left out of the figure.

use crate::fanout::{field, ChildHub};
use crate::{
    drop_database, fresh_run, hub_argv, latency_figures, machine, producer, subscribed_client,
    token_for, Socket,
};
use anyhow::Context;
use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use lad_hub::config::DEFAULT_BATCH_MAX;
use lad_hub::demo::{CallScript, Event};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const PARTITIONS: i32 = 6;
/// Sockets opened at once while connecting.
const CONNECTING_AT_ONCE: usize = 64;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Traffic is produced in this many ticks a second.
const TICKS_PER_SECOND: u32 = 10;
/// Deltas per assistant reply before it completes.
const DELTAS_PER_REPLY: u64 = 40;
const STEP_TYPES: &[&str] = &[
    "email",
    "linkedin_connect",
    "linkedin_message",
    "voice_call",
];
const STATUSES: &[&str] = &[
    "sent",
    "delivered",
    "opened",
    "clicked",
    "replied",
    "bounced",
];

#[derive(clap::Args, Clone, Copy)]
pub struct Soak {
    /// How long the traffic runs.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// WebSocket clients. Each holds its tenant's `calls` channel and one
    /// more: the billing channel, a campaign's, or its user's assistant
    /// channel, in turn.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    #[arg(long, default_value_t = 20)]
    tenants: usize,
    /// Voice calls a second (each a whole lifecycle of 3-8 events); as
    /// many billing usages and campaign activities a second, and one
    /// assistant reply streaming per tenant at ten deltas a second.
    #[arg(long, default_value_t = 10.0)]
    calls_per_second: f64,
    /// Length of each reported window.
    #[arg(long, default_value_t = 300)]
    window_seconds: u64,
}

pub async fn run(brokers: &str, postgres: &str, s: Soak) -> anyhow::Result<Value> {
    anyhow::ensure!(
        s.tenants > 0 && s.clients >= s.tenants,
        "need at least one client per tenant"
    );
    let run = fresh_run(postgres);
    let hub = ChildHub::spawn(&hub_argv(
        &run,
        "hub",
        brokers,
        PARTITIONS,
        DEFAULT_BATCH_MAX,
        "all",
    ))
    .await?;
    let result = soak(&run.prefix, &run.db_url, &hub, brokers, s).await;
    hub.stop().await;
    drop_database(postgres, &run.prefix).await;
    result
}

/// Who the traffic is for: per tenant, an agent set, a campaign and the
/// user the assistant answers.
struct Tenants {
    ids: Vec<Uuid>,
    agents: Vec<Uuid>,
    campaigns: Vec<Uuid>,
    users: Vec<Uuid>,
}

impl Tenants {
    fn new(n: usize) -> Tenants {
        let ids = |k: usize| (0..k).map(|_| Uuid::new_v4()).collect::<Vec<_>>();
        Tenants {
            ids: ids(n),
            agents: ids(10),
            campaigns: ids(n),
            users: ids(n),
        }
    }

    /// Client `i`'s token and channels.
    fn client(&self, i: usize) -> anyhow::Result<(String, [String; 2])> {
        let t = i % self.ids.len();
        let tenant = self.ids[t];
        let calls = format!("tenant:{tenant}:calls");
        Ok(match (i / self.ids.len()) % 3 {
            0 => (
                token_for(tenant, Uuid::new_v4(), "admin")?,
                [calls, format!("tenant:{tenant}:billing")],
            ),
            1 => (
                token_for(tenant, Uuid::new_v4(), "member")?,
                [
                    calls,
                    format!("tenant:{tenant}:campaign:{}", self.campaigns[t]),
                ],
            ),
            _ => (
                token_for(tenant, self.users[t], "member")?,
                [calls, format!("tenant:{tenant}:user:{}:ai", self.users[t])],
            ),
        })
    }
}

async fn soak(
    prefix: &str,
    db_url: &str,
    hub: &ChildHub,
    brokers: &str,
    s: Soak,
) -> anyhow::Result<Value> {
    hub.wait_ready().await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(db_url)
        .await?;
    let tenants = Tenants::new(s.tenants);
    let traffic = Traffic::new(brokers, prefix)?;
    traffic.fund(&tenants).await?;

    let started = Instant::now();
    let (arrivals_tx, arrivals_rx) = mpsc::channel::<(String, i64)>(200_000);
    let (commits_tx, commits_rx) = mpsc::channel::<Committed>(200_000);
    let counts = Arc::new(Mutex::new(SocketCounts::default()));
    let logins = (0..s.clients)
        .map(|i| tenants.client(i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let addr = hub.addr;
    let sockets: Vec<Socket> = futures_util::stream::iter(logins)
        .map(|(token, channels)| async move { client(addr, &token, &channels).await })
        .buffer_unordered(CONNECTING_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(read(ws, arrivals_tx.clone(), counts.clone())))
        .collect();
    drop(arrivals_tx);
    eprintln!(
        "soak: {} clients connected in {:.1} s",
        s.clients,
        started.elapsed().as_secs_f64()
    );
    let live = live_reader(brokers, &format!("{prefix}.live"), commits_tx)?;
    let window = Duration::from_secs(s.window_seconds.max(1));
    let run_for = Duration::from_secs(s.minutes * 60);
    let t0 = Instant::now();
    let origin_micros = Utc::now().timestamp_micros();
    let matching = tokio::spawn(match_latencies(
        arrivals_rx,
        commits_rx,
        origin_micros,
        window,
    ));

    let producing = tokio::spawn(traffic.run(tenants, s, run_for));
    let mut samples = Vec::new();
    let mut next = t0;
    while t0.elapsed() < run_for {
        next += SAMPLE_EVERY;
        tokio::time::sleep_until(next.into()).await;
        let sample = Sample {
            at_s: t0.elapsed().as_secs_f64(),
            rss_kib: hub.rss_kib()?,
            outbox_rows: outbox_rows(&pool).await?,
            socket: counts.lock().expect("not poisoned").clone(),
        };
        eprintln!(
            "soak: t={:.0}s rss {} KiB, outbox {} rows, {} messages, {} socket errors",
            sample.at_s,
            sample.rss_kib,
            sample.outbox_rows,
            sample.socket.messages,
            sample.socket.errors()
        );
        samples.push(sample);
    }
    let produced = producing.await??;
    // What was committed at the end still reaches the clients.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let end = counts.lock().expect("not poisoned").clone();
    let peak_rss = hub.peak_rss_kib()?;
    for r in readers {
        r.abort();
    }
    live.abort();
    let latencies = matching.await?;
    pool.close().await;

    let last_window = run_for.as_secs().div_ceil(window.as_secs()).max(1) - 1;
    let windows: Vec<Value> = (0..=last_window)
        .map(|w| {
            let (from, to) = (w * window.as_secs(), (w + 1) * window.as_secs());
            let in_window: Vec<&Sample> = samples
                .iter()
                .filter(|x| x.at_s > from as f64 && x.at_s <= to as f64)
                .collect();
            // The last window also takes what arrived after the traffic stopped.
            let upto = if w == last_window { u64::MAX } else { w };
            let gather = |by: &BTreeMap<u64, Vec<f64>>| -> Vec<f64> {
                by.range(w..=upto)
                    .flat_map(|(_, l)| l.iter().copied())
                    .collect()
            };
            let lats = gather(&latencies.to_socket);
            let to_log = gather(&latencies.to_log);
            json!({
                "from_s": from,
                "to_s": to,
                "deliveries_timed": lats.len(),
                "commit_to_socket_ms": latency_figures(lats),
                "commit_to_log_ms": latency_figures(to_log),
                "hub_rss_kib_at_end": in_window.last().map(|x| x.rss_kib),
                "outbox_rows_max": in_window.iter().map(|x| x.outbox_rows).max(),
                "socket_errors_so_far": in_window.last().map(|x| x.socket.errors()),
            })
        })
        .collect();
    let warm = samples.iter().filter(|x| x.at_s >= 60.0);
    let later = samples
        .iter()
        .filter(|x| x.at_s >= run_for.as_secs_f64() / 2.0);
    Ok(json!({
        "bench": "soak",
        "minutes": s.minutes,
        "clients": s.clients,
        "tenants": s.tenants,
        "calls_per_second": s.calls_per_second,
        "produced": produced,
        "window_seconds": window.as_secs(),
        "windows": windows,
        "hub_rss_kib": {
            "first_sample": samples.first().map(|x| x.rss_kib),
            "last_sample": samples.last().map(|x| x.rss_kib),
            "peak": peak_rss,
            "slope_kib_per_minute_after_first_minute": slope(warm),
            "slope_kib_per_minute_second_half": slope(later),
        },
        "outbox_rows_max": samples.iter().map(|x| x.outbox_rows).max(),
        "outbox_rows_at_end": samples.last().map(|x| x.outbox_rows),
        "messages_received": end.messages,
        "socket_errors": end.errors(),
        "socket_closes": end.closed,
        "rss_samples": samples.iter().map(|x| json!([crate::round(x.at_s), x.rss_kib, x.outbox_rows])).collect::<Vec<_>>(),
        "machine": machine(),
    }))
}

#[derive(Debug, Clone)]
struct Sample {
    at_s: f64,
    rss_kib: u64,
    outbox_rows: i64,
    socket: SocketCounts,
}

/// Least-squares slope of RSS over time, in KiB a minute.
fn slope<'a>(samples: impl Iterator<Item = &'a Sample>) -> Option<f64> {
    let points: Vec<(f64, f64)> = samples.map(|x| (x.at_s / 60.0, x.rss_kib as f64)).collect();
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let num: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    (den > 0.0).then(|| crate::round(num / den))
}

async fn outbox_rows(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM hub_outbox")
        .fetch_one(pool)
        .await?)
}

#[derive(Debug, Default, Clone)]
struct SocketCounts {
    messages: u64,
    /// Sockets that ended in an error or without a close frame.
    failed: u64,
    /// Close codes the hub sent.
    closed: BTreeMap<u16, u64>,
}

impl SocketCounts {
    /// Any socket that ended during the run is an error: none should.
    fn errors(&self) -> u64 {
        self.failed + self.closed.values().sum::<u64>()
    }
}

/// A client subscribed to both `channels` (the second's reply is read by
/// [`read`] with the rest).
async fn client(addr: SocketAddr, token: &str, channels: &[String; 2]) -> anyhow::Result<Socket> {
    let mut ws = subscribed_client(addr, token, &channels[0]).await?;
    ws.send(Message::text(
        json!({"op": "subscribe", "id": 2, "channel": channels[1]}).to_string(),
    ))
    .await?;
    Ok(ws)
}

/// Counts messages and sends (id, arrival µs) of every committed one.
async fn read(mut ws: Socket, tx: mpsc::Sender<(String, i64)>, counts: Arc<Mutex<SocketCounts>>) {
    while let Some(frame) = ws.next().await {
        match frame {
            Ok(Message::Text(t)) => {
                if t.contains(r#""op":"error""#) {
                    counts.lock().expect("not poisoned").failed += 1;
                    continue;
                }
                if !t.starts_with(r#"{"op":"message""#) {
                    continue;
                }
                let now = Utc::now().timestamp_micros();
                counts.lock().expect("not poisoned").messages += 1;
                if let Some(id) = field(&t, "id").filter(|id| !id.starts_with("ai:")) {
                    // A full channel drops the sample, never stalls the socket.
                    let _ = tx.try_send((id.to_owned(), now));
                }
            }
            Ok(Message::Close(frame)) => {
                let code = frame.map_or(1005, |c| u16::from(c.code));
                *counts
                    .lock()
                    .expect("not poisoned")
                    .closed
                    .entry(code)
                    .or_default() += 1;
                return;
            }
            Ok(_) => {}
            Err(_) => {
                counts.lock().expect("not poisoned").failed += 1;
                return;
            }
        }
    }
    counts.lock().expect("not poisoned").failed += 1;
}

/// A committed record as read from `lad.live.v1`: its id, its
/// `committed_at` and when this reader got it (µs).
struct Committed {
    id: String,
    at: i64,
    read: i64,
}

/// Reads `lad.live.v1` from the start and sends every committed record.
fn live_reader(
    brokers: &str,
    topic: &str,
    tx: mpsc::Sender<Committed>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}.soak-reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(tokio::spawn(async move {
        while let Ok(m) = consumer.recv().await {
            let read = Utc::now().timestamp_micros();
            let Some(value) = m
                .payload()
                .and_then(|p| serde_json::from_slice::<Value>(p).ok())
            else {
                continue;
            };
            let committed = value["committed_at"]
                .as_str()
                .and_then(|s| s.parse::<chrono::DateTime<Utc>>().ok());
            if let (Some(id), Some(at)) = (value["id"].as_str(), committed) {
                let record = Committed {
                    id: id.to_owned(),
                    at: at.timestamp_micros(),
                    read,
                };
                if tx.send(record).await.is_err() {
                    return;
                }
            }
        }
    }))
}

/// Latencies in ms, by window.
#[derive(Default)]
struct Latencies {
    /// Commit → socket, by window of arrival at the socket.
    to_socket: BTreeMap<u64, Vec<f64>>,
    /// Commit → read back from `lad.live.v1` by the benchmark (the outbox
    /// relay and one broker hop: the part of the above before the gateway).
    to_log: BTreeMap<u64, Vec<f64>>,
}

/// Pairs socket arrivals with their records' commit times (whichever
/// comes first waits for the other).
async fn match_latencies(
    mut arrivals: mpsc::Receiver<(String, i64)>,
    mut commits: mpsc::Receiver<Committed>,
    origin_micros: i64,
    window: Duration,
) -> Latencies {
    let mut committed: HashMap<String, i64> = HashMap::new();
    let mut waiting: HashMap<String, Vec<i64>> = HashMap::new();
    let mut out = Latencies::default();
    let window_micros = window.as_micros() as i64;
    let window_of = |t: i64| ((t - origin_micros).max(0) / window_micros) as u64;
    let ms = |from: i64, to: i64| (to - from) as f64 / 1000.0;
    let mut reading_commits = true;
    loop {
        tokio::select! {
            a = arrivals.recv() => match a {
                Some((id, arrived)) => match committed.get(&id) {
                    Some(at) => out.to_socket.entry(window_of(arrived)).or_default().push(ms(*at, arrived)),
                    None => waiting.entry(id).or_default().push(arrived),
                },
                None => break,
            },
            c = commits.recv(), if reading_commits => match c {
                Some(c) => {
                    out.to_log.entry(window_of(c.read)).or_default().push(ms(c.at, c.read));
                    for arrived in waiting.remove(&c.id).unwrap_or_default() {
                        out.to_socket.entry(window_of(arrived)).or_default().push(ms(c.at, arrived));
                    }
                    committed.insert(c.id, c.at);
                }
                None => reading_commits = false,
            },
        }
    }
    out
}

/// The traffic generator: every tick, its share of voice calls, billing
/// usages, campaign activities and assistant deltas.
struct Traffic {
    producer: FutureProducer,
    voice: String,
    billing: String,
    campaigns: String,
    ai: String,
}

impl Traffic {
    fn new(brokers: &str, prefix: &str) -> anyhow::Result<Traffic> {
        Ok(Traffic {
            producer: producer(brokers)?,
            voice: format!("{prefix}.voice"),
            billing: format!("{prefix}.billing"),
            campaigns: format!("{prefix}.campaigns"),
            ai: format!("{prefix}.ai"),
        })
    }

    fn send(&self, topic: &str, e: &Event) {
        let payload = e.payload();
        let _ = self
            .producer
            .send_result(FutureRecord::to(topic).key(&e.key).payload(&payload));
    }

    /// Every wallet gets funds for the whole run first, so usages charge
    /// (the common path) rather than end as insufficient funds.
    async fn fund(&self, tenants: &Tenants) -> anyhow::Result<()> {
        for tenant in &tenants.ids {
            let e = Event::new(
                tenant,
                "billing.credit",
                *tenant,
                Utc::now(),
                json!({"idempotency_key": "soak-funds", "amount": "1000000000", "reason": "soak"}),
            );
            self.send(&self.billing, &e);
        }
        self.producer
            .flush(Duration::from_secs(10))
            .context("funding the wallets")?;
        Ok(())
    }

    /// Produces until `run_for` passed; returns what it produced, by kind.
    async fn run(self, tenants: Tenants, s: Soak, run_for: Duration) -> anyhow::Result<Value> {
        let mut rng = StdRng::seed_from_u64(30);
        let per_tick = s.calls_per_second / f64::from(TICKS_PER_SECOND);
        let mut owed = 0.0;
        let mut produced = BTreeMap::<&str, u64>::new();
        // One reply streaming per tenant; a new one when it completes.
        let mut replies: Vec<(Uuid, u64)> =
            tenants.ids.iter().map(|_| (Uuid::new_v4(), 0)).collect();
        let mut interval = tokio::time::interval(Duration::from_secs(1) / TICKS_PER_SECOND);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < run_for {
            interval.tick().await;
            owed += per_tick;
            while owed >= 1.0 {
                owed -= 1.0;
                n += 1;
                let t = rng.gen_range(0..tenants.ids.len());
                let tenant = tenants.ids[t];
                let call = CallScript::random(&mut rng, tenant, &tenants.agents);
                for e in call.events(Utc::now(), chrono::Duration::seconds(1)) {
                    self.send(&self.voice, &e);
                    *produced.entry("voice").or_default() += 1;
                }
                let usage = Event::new(
                    tenant,
                    "billing.usage",
                    tenant,
                    Utc::now(),
                    json!({"idempotency_key": format!("soak-{n}"), "feature_key": "apollo_search",
                           "usage_items": [], "total_cost": "0.01"}),
                );
                self.send(&self.billing, &usage);
                *produced.entry("billing").or_default() += 1;
                let enrollment = Uuid::from_u128(rng.gen_range(0..200) + ((t as u128) << 64));
                let activity = Event::new(
                    enrollment,
                    "campaign.activity",
                    tenant,
                    Utc::now(),
                    json!({"campaign_id": tenants.campaigns[t], "campaign_lead_id": enrollment,
                           "lead_id": enrollment, "step_id": Uuid::from_u128(rng.gen_range(0..5)),
                           "step_type": STEP_TYPES[rng.gen_range(0..STEP_TYPES.len())],
                           "status": STATUSES[rng.gen_range(0..STATUSES.len())]}),
                );
                self.send(&self.campaigns, &activity);
                *produced.entry("campaigns").or_default() += 1;
            }
            for (t, (message, seq)) in replies.iter_mut().enumerate() {
                let (tenant, user) = (tenants.ids[t], tenants.users[t]);
                let data = json!({"conversation_id": *message, "message_id": *message,
                                  "user_id": user, "seq": *seq, "delta": format!("w{seq} ")});
                self.send(
                    &self.ai,
                    &Event::new(*message, "ai.reply.delta", tenant, Utc::now(), data),
                );
                *produced.entry("ai").or_default() += 1;
                *seq += 1;
                if *seq == DELTAS_PER_REPLY {
                    let content: String = (0..DELTAS_PER_REPLY).map(|s| format!("w{s} ")).collect();
                    let data = json!({"conversation_id": *message, "message_id": *message,
                                      "user_id": user, "content": content, "tokens_used": 40});
                    self.send(
                        &self.ai,
                        &Event::new(*message, "ai.reply.completed", tenant, Utc::now(), data),
                    );
                    *produced.entry("ai").or_default() += 1;
                    *message = Uuid::new_v4();
                    *seq = 0;
                }
            }
        }
        self.producer
            .flush(Duration::from_secs(30))
            .context("flushing the traffic")?;
        Ok(json!(produced))
    }
}
