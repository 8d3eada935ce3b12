//! `fanout`: many dashboards on few channels. The hub runs as a child
//! process (this binary's hidden `hub` command) so its memory can be read
//! apart from the clients'.

use crate::{
    collect_latencies, drop_database, fresh_run, hub_argv, latency_figures, machine,
    subscribed_client, token_for, Run, Socket,
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lad_hub::config::DEFAULT_BATCH_MAX;
use lad_hub::demo::Event;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Sockets opened at once while connecting.
const CONNECTING_AT_ONCE: usize = 64;

#[derive(clap::Args, Clone, Copy)]
pub struct Fanout {
    /// WebSocket clients, spread evenly over the tenants.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Tenants; each client subscribes to one tenant's `calls` channel.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// `call.started` events a second per tenant.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

impl Fanout {
    fn ticks(&self) -> usize {
        crate::ticks(self.seconds, self.rate)
    }

    /// The calls a run starts: one per tenant per tick.
    fn calls(&self) -> usize {
        self.ticks() * self.tenants
    }
}

/// The hub in a child process: started with a `lad-hub serve` command line,
/// stopped (gracefully) by closing its stdin.
pub(crate) struct ChildHub {
    child: Child,
    pub addr: SocketAddr,
}

impl ChildHub {
    pub async fn spawn(argv: &[String]) -> anyhow::Result<ChildHub> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("hub")
            .args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the hub process")?;
        let stdout = child.stdout.take().context("hub stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("hub did not start within 60 s")??
            .context("hub exited before it listened")?;
        let addr = line
            .strip_prefix("listening ")
            .context("unexpected first line from the hub")?
            .parse()?;
        Ok(ChildHub { child, addr })
    }

    /// CPU ticks the hub process has used so far.
    pub fn cpu_ticks(&self) -> Option<u64> {
        crate::cpu::process_ticks(self.child.id()?)
    }

    /// Resident memory of the hub process, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory the hub process has had, in KiB.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> anyhow::Result<u64> {
        let pid = self.child.id().context("hub exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field}"))
    }

    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let ready = Instant::now();
        while !lad_hub::http::probe_ready(self.addr).await {
            anyhow::ensure!(ready.elapsed() < Duration::from_secs(60), "hub not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The hidden `hub` command: serve with `argv` (a `lad-hub serve` command
/// line), print `listening <addr>`, stop when stdin closes.
pub async fn serve_child(argv: Vec<String>) -> anyhow::Result<()> {
    let hub = crate::start_hub(argv).await?;
    println!("listening {}", hub.addr);
    // Blocks until the parent closes the pipe (or dies).
    tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    })
    .await?;
    hub.shutdown.cancel();
    hub.wait().await
}

pub async fn run(brokers: &str, postgres: &str, f: Fanout) -> anyhow::Result<Value> {
    anyhow::ensure!(
        f.tenants > 0 && f.clients >= f.tenants,
        "need at least one client per tenant"
    );
    let run = fresh_run(postgres);
    let hub = ChildHub::spawn(&hub_argv(&run, "hub", brokers, 6, DEFAULT_BATCH_MAX, "all")).await?;
    let result = measure(&run, &hub, brokers, f).await;
    hub.stop().await;
    drop_database(postgres, &run.prefix).await;
    result
}

async fn measure(run: &Run, hub: &ChildHub, brokers: &str, f: Fanout) -> anyhow::Result<Value> {
    hub.wait_ready().await?;
    let producer = CallProducer::new(brokers, &format!("{}.voice", run.prefix))?;
    producer.warm_up(hub.addr).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = hub.rss_kib()?;
    let tenants: Vec<Uuid> = (0..f.tenants).map(|_| Uuid::new_v4()).collect();
    let connecting = Instant::now();
    let addr = hub.addr;
    let sockets: Vec<_> = futures_util::stream::iter(0..f.clients)
        .map(|i| connect(addr, tenants[i % tenants.len()]))
        .buffer_unordered(CONNECTING_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let connect_secs = connecting.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = hub.rss_kib()?;

    let (tx, rx) = tokio::sync::mpsc::channel::<f64>(100_000);
    let deliveries = Arc::new(Mutex::new(Counts::default()));
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(read(ws, tx.clone(), deliveries.clone())))
        .collect();
    drop(tx);

    // Every call.updated reaches every client of its tenant.
    let expected = f.calls() * f.clients / f.tenants;
    // Drained while the calls are produced: a reader that finds this
    // channel full stops reading its socket, and the wait would be timed
    // as the hub's.
    let collecting = tokio::spawn(collect_latencies(rx, expected, Duration::from_secs(15)));
    let producing = Instant::now();
    let cpu_start = crate::cpu::CpuSample::now();
    let hub_ticks = hub.cpu_ticks();
    producer.run(&tenants, f).await;
    let lats = collecting.await?;
    // Until the last delivery: past the produce window when the hub falls
    // behind (and 15 s past it when deliveries were lost).
    let delivering = producing.elapsed().as_secs_f64();
    let cpu = crate::cpu::window(cpu_start);
    let hub_cpu = crate::cpu::process_core_pct(hub_ticks, hub.cpu_ticks(), delivering);
    let rss_busy = hub.rss_kib()?;
    for r in readers {
        r.abort();
    }
    let counts = deliveries.lock().expect("not poisoned").clone();
    let per_idle_connection =
        (rss_idle.saturating_sub(rss_before) * 1024) as f64 / f.clients as f64;
    Ok(json!({
        "bench": "fanout",
        "clients": f.clients,
        "tenants": f.tenants,
        "call_started_per_second_per_tenant": f.rate,
        "seconds": f.seconds,
        "connect_seconds": crate::round(connect_secs),
        "hub_rss_kib": { "before_clients": rss_before, "idle_clients": rss_idle, "after_run": rss_busy },
        "hub_bytes_per_idle_connection": per_idle_connection.round(),
        "call_updated_expected": expected,
        "call_updated_received": lats.len(),
        "messages_received": counts.messages,
        "delivery_seconds": crate::round(delivering),
        "messages_per_second": crate::round(counts.messages as f64 / delivering),
        "closed": counts.closed,
        "latency_ms": latency_figures(lats),
        "machine": machine(),
        "cpu_during_run": cpu,
        "hub_cpu_pct_of_one_core": hub_cpu,
    }))
}

/// One dashboard: connected and subscribed to its tenant's `calls`.
async fn connect(addr: SocketAddr, tenant: Uuid) -> anyhow::Result<Socket> {
    let token = token_for(tenant, Uuid::new_v4(), "viewer")?;
    subscribed_client(addr, &token, &format!("tenant:{tenant}:calls")).await
}

#[derive(Default, Clone)]
struct Counts {
    messages: u64,
    /// Close codes the hub sent (4008: too slow).
    closed: BTreeMap<u16, u64>,
}

/// Counts every message; for `call.updated`, records now − `started_at`
/// (the produce time). Reads only the field it needs: 10,000 of these share
/// the cores with the hub.
async fn read(mut ws: Socket, tx: tokio::sync::mpsc::Sender<f64>, counts: Arc<Mutex<Counts>>) {
    while let Some(frame) = ws.next().await {
        match frame {
            Ok(Message::Text(t)) => {
                counts.lock().expect("not poisoned").messages += 1;
                if !t.contains(r#""type":"call.updated""#) {
                    continue;
                }
                let Some(started) =
                    field(&t, "started_at").and_then(|s| s.parse::<DateTime<Utc>>().ok())
                else {
                    continue;
                };
                let lat = (Utc::now() - started).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                if tx.send(lat).await.is_err() {
                    return;
                }
            }
            Ok(Message::Close(Some(c))) => {
                *counts
                    .lock()
                    .expect("not poisoned")
                    .closed
                    .entry(c.code.into())
                    .or_default() += 1;
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// The string value of `"name":"…"` in a JSON text.
pub(crate) fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(r#""{name}":""#);
    let start = text.find(&key)? + key.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// Produces `call.started` events for new calls, `started_at` = now.
pub(crate) struct CallProducer {
    producer: FutureProducer,
    topic: String,
    agent: Uuid,
}

impl CallProducer {
    pub fn new(brokers: &str, topic: &str) -> anyhow::Result<CallProducer> {
        Ok(CallProducer {
            producer: rdkafka::ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .set("linger.ms", "0")
                .create()?,
            topic: topic.to_owned(),
            agent: Uuid::new_v4(),
        })
    }

    fn send(&self, tenant: Uuid) {
        let call = Uuid::new_v4();
        let e = Event::new(
            call,
            "call.started",
            tenant,
            Utc::now(),
            json!({"call_id": call, "agent_id": self.agent, "direction": "outbound",
                   "from_number": "+15550100", "to_number": "+15550199"}),
        );
        let payload = e.payload();
        let _ = self
            .producer
            .send_result(FutureRecord::to(&self.topic).key(&e.key).payload(&payload));
    }

    /// Sends a call a second for a tenant of its own until one reaches a
    /// client: the voice pipeline's consumer group may still be joining,
    /// and its join is not what the run measures.
    pub async fn warm_up(&self, addr: SocketAddr) -> anyhow::Result<()> {
        let tenant = Uuid::new_v4();
        let mut ws = connect(addr, tenant).await?;
        let started = Instant::now();
        loop {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "no call came through within 60 s"
            );
            self.send(tenant);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, ws.next()).await {
                if let Ok(Message::Text(t)) = frame {
                    if t.contains(r#""type":"call.updated""#) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// A new call per tenant per tick: `f.calls()` in all.
    async fn run(&self, tenants: &[Uuid], f: Fanout) {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / f.rate));
        for _ in 0..f.ticks() {
            interval.tick().await;
            for tenant in tenants {
                self.send(*tenant);
            }
        }
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_field_is_found_in_a_frame() {
        let t = r#"{"op":"message","data":{"id":"x","started_at":"2026-11-28T05:00:00.123456Z","status":"initiated"}}"#;
        assert_eq!(field(t, "started_at"), Some("2026-11-28T05:00:00.123456Z"));
        assert_eq!(field(t, "status"), Some("initiated"));
        assert_eq!(field(t, "ended_at"), None);
    }
}
