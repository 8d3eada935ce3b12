//! `burst`: one tenant's dialer starts many calls at once (or the hub works
//! through a backlog) while dashboards watch its `calls` channel. Measures
//! what a dashboard user feels: whether any reading client is cut, and how
//! long until every client holds every call's final state; and the hub's
//! peak memory meanwhile.

use crate::fanout::{field, CallProducer, ChildHub};
use crate::{drop_database, fresh_run, hub_argv, machine, produce_all, producer, token_for};
use futures_util::StreamExt;
use lad_hub::config::DEFAULT_BATCH_MAX;
use lad_hub::demo::call_burst;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

#[derive(clap::Args, Clone, Copy)]
pub struct Burst {
    /// Events in the burst: half `call.started`, half `call.ended`.
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Clients on the tenant's `calls` channel.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// How one client's run ended.
enum Outcome {
    /// It held every call's final state this long after the burst began.
    Current(Duration),
    /// The hub closed it with this code.
    Cut(u16),
    /// It ran out of time (or its socket failed) holding this many.
    Behind(usize),
}

pub async fn run(brokers: &str, postgres: &str, b: Burst) -> anyhow::Result<Value> {
    let run = fresh_run(postgres);
    let hub = ChildHub::spawn(&hub_argv(&run, "hub", brokers, 6, DEFAULT_BATCH_MAX, "all")).await?;
    let result = measure(&run.prefix, &hub, brokers, b).await;
    hub.stop().await;
    drop_database(postgres, &run.prefix).await;
    result
}

async fn measure(prefix: &str, hub: &ChildHub, brokers: &str, b: Burst) -> anyhow::Result<Value> {
    hub.wait_ready().await?;
    // The voice pipeline's group join is not what this measures.
    CallProducer::new(brokers, &format!("{prefix}.voice"))?
        .warm_up(hub.addr)
        .await?;
    let tenant = Uuid::new_v4();
    let calls = b.events / 2;
    let events = call_burst(tenant, Uuid::new_v4(), calls);
    let rss_before = hub.rss_kib()?;
    let mut sockets = Vec::with_capacity(b.clients);
    for _ in 0..b.clients {
        let token = token_for(tenant, Uuid::new_v4(), "viewer")?;
        sockets.push(
            crate::subscribed_client(hub.addr, &token, &format!("tenant:{tenant}:calls")).await?,
        );
    }
    let (tx, mut rx) = mpsc::channel(b.clients);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(b.timeout);
    for ws in sockets {
        tokio::spawn(follow(ws, calls, started, deadline, tx.clone()));
    }
    drop(tx);
    let cpu_start = crate::cpu::CpuSample::now();
    produce_all(&producer(brokers)?, &format!("{prefix}.voice"), &events).await?;
    let produce_secs = started.elapsed().as_secs_f64();

    let mut current = Vec::new();
    let mut cut: BTreeMap<u16, usize> = BTreeMap::new();
    let mut behind = Vec::new();
    while let Some(outcome) = rx.recv().await {
        match outcome {
            Outcome::Current(d) => current.push(d.as_secs_f64()),
            Outcome::Cut(code) => *cut.entry(code).or_default() += 1,
            Outcome::Behind(held) => behind.push(held),
        }
    }
    let cpu = crate::cpu::window(cpu_start);
    current.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        current
            .get(((current.len() as f64 - 1.0) * q).round() as usize)
            .map(|s| crate::round(*s))
    };
    Ok(json!({
        "bench": "burst",
        "events": b.events,
        "calls": calls,
        "clients": b.clients,
        "produce_seconds": crate::round(produce_secs),
        "clients_current": current.len(),
        "clients_cut": cut.values().sum::<usize>(),
        "cut_by_code": cut,
        "clients_behind_at_timeout": behind.len(),
        "calls_held_by_clients_behind": { "min": behind.iter().min(), "max": behind.iter().max() },
        "seconds_until_current": { "first": quantile(0.0), "median": quantile(0.5), "last": quantile(1.0) },
        "hub_rss_kib": { "before": rss_before, "peak": hub.peak_rss_kib()? },
        "machine": machine(),
        "cpu_during_run": cpu,
    }))
}

/// Reads like a dashboard: each call's latest status, until every call is
/// `completed`. Reads only the fields it needs: these clients share the
/// cores with the hub.
async fn follow(
    mut ws: crate::Socket,
    calls: usize,
    started: Instant,
    deadline: Instant,
    done: mpsc::Sender<Outcome>,
) {
    let mut status: HashMap<String, bool> = HashMap::with_capacity(calls);
    let mut completed = 0usize;
    let outcome = loop {
        let next = tokio::time::timeout_at(deadline.into(), ws.next()).await;
        match next {
            Ok(Some(Ok(Message::Text(t)))) => {
                if !t.contains(r#""type":"call.updated""#) {
                    continue;
                }
                let (Some(id), Some(state)) = (data_id(&t), field(&t, "status")) else {
                    continue;
                };
                let is_done = state == "completed";
                let was_done = status.insert(id.to_owned(), is_done).unwrap_or(false);
                completed = completed + usize::from(is_done) - usize::from(was_done);
                if completed == calls {
                    break Outcome::Current(started.elapsed());
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                break Outcome::Cut(frame.map_or(1005, |f| f.code.into()));
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) | Err(_) => break Outcome::Behind(completed),
        }
    };
    let _ = done.send(outcome).await;
}

/// The call id of a `call.updated` frame: the `id` inside its data.
fn data_id(text: &str) -> Option<&str> {
    let data = text.find(r#""data":{"#)?;
    field(&text[data..], "id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_updated_frame_names_its_call_and_status() {
        let t = r#"{"op":"message","id":"3.1","type":"call.updated","data":{"agent_id":"a","id":"0b1d5f3a-8f55-4c1c-a6a4-2f6c1d9e0a77","status":"completed"}}"#;
        assert_eq!(data_id(t), Some("0b1d5f3a-8f55-4c1c-a6a4-2f6c1d9e0a77"));
        assert_eq!(field(t, "status"), Some("completed"));
    }
}
