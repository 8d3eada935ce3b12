//! Dashboards that stay live, end to end (hub processes, the real broker
//! and Postgres, real WebSocket clients): bursts that never cut a reading
//! client, a client that stops reading cut alone, `since` recovered from
//! `lad.live.v1` across a restart and across nodes, and heartbeats.

use crate::support::*;
use chrono::Utc;
use futures_util::StreamExt;
use lad_hub::demo::{call_burst, Event};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// What a dashboard on `tenant:{t}:calls` holds: each call's latest row.
#[derive(Default)]
struct CallsView {
    calls: HashMap<String, Value>,
    frames: usize,
}

impl CallsView {
    fn take(&mut self, frame: &Value) {
        self.frames += 1;
        match (frame["op"].as_str(), frame["type"].as_str()) {
            (Some("subscribed"), _) => {
                for row in frame["snapshot"]["calls_in_progress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    self.calls
                        .insert(row["id"].as_str().unwrap().into(), row.clone());
                }
            }
            (Some("message"), Some("call.updated")) => {
                let id = frame["data"]["id"].as_str().unwrap().to_owned();
                self.calls.insert(id, frame["data"].clone());
            }
            _ => {}
        }
    }

    /// True when every stored call of the tenant is held in its stored state.
    async fn matches(&self, pool: &PgPool, tenant: Uuid, expected: usize) -> bool {
        let stored: Vec<(Uuid, String, Option<i32>)> = sqlx::query_as(
            "SELECT id, status, duration_seconds FROM voice_call_logs WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_all(pool)
        .await
        .expect("calls");
        stored.len() == expected
            && stored.iter().all(|(id, status, duration)| {
                self.calls.get(&id.to_string()).is_some_and(|row| {
                    row["status"] == json!(status) && row["duration_seconds"] == json!(duration)
                })
            })
    }
}

/// Reads `client` into `view` until it equals the stored calls; fails on
/// any close or after `secs`. Returns how long it took.
async fn follow_until_current(
    client: &mut Client,
    view: &mut CallsView,
    pool: &PgPool,
    tenant: Uuid,
    expected: usize,
    secs: u64,
) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut last_check = Instant::now();
    loop {
        assert!(
            Instant::now() < deadline,
            "the client did not reach the stored state in {secs} s ({} frames, {} calls held)",
            view.frames,
            view.calls.len()
        );
        match tokio::time::timeout(Duration::from_millis(200), client.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => view.take(&serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                panic!("a reading client was closed: {frame:?}")
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => panic!("socket error: {e}"),
            Ok(None) => panic!("socket ended"),
            Err(_) => {}
        }
        if last_check.elapsed() > Duration::from_millis(500) {
            last_check = Instant::now();
            if view.matches(pool, tenant, expected).await {
                return started.elapsed();
            }
        }
    }
}

const BURST_CALLS: usize = 10_000;

#[sqlx::test(migrations = "./migrations")]
async fn a_burst_never_cuts_a_reading_client_and_it_ends_with_every_calls_stored_state(
    pool: PgPool,
) {
    let topics = Topics::new();
    let hub = Hub::start(
        &pool,
        &topics,
        HubOptions {
            batch_max: 5000,
            ..HubOptions::default()
        },
    )
    .await;
    let tenant = Uuid::new_v4();
    let user = Uuid::new_v4();
    let mut client = Client::connect(&hub.ws_url(&token(tenant, user, "viewer", &[]))).await;
    let sub = client.subscribe(&format!("tenant:{tenant}:calls")).await;
    assert_eq!(sub["op"], "subscribed");

    let events = call_burst(tenant, Uuid::new_v4(), BURST_CALLS);
    let produced = Instant::now();
    produce(&producer(false), &topics.voice(), &events).await;
    println!(
        "burst: {} events produced in {:?}",
        events.len(),
        produced.elapsed()
    );
    let mut view = CallsView::default();
    let took = follow_until_current(&mut client, &mut view, &pool, tenant, BURST_CALLS, 120).await;
    println!(
        "burst: the client held all {BURST_CALLS} calls' stored state {took:?} after subscribing, from {} frames",
        view.frames
    );
    assert!(view.frames > BURST_CALLS, "every call reached the client");
}

#[sqlx::test(migrations = "./migrations")]
async fn a_backlog_applied_at_start_never_cuts_a_reading_client(pool: PgPool) {
    let topics = Topics::new();
    // A gateway node first, with the client on it; the backlog waits in
    // the input topic until the consumers start and apply it at full speed.
    let gateway = Hub::start(
        &pool,
        &topics,
        HubOptions {
            extra_env: vec![("LAD_ROLE".into(), "gateway".into())],
            ..HubOptions::default()
        },
    )
    .await;
    let tenant = Uuid::new_v4();
    let mut client =
        Client::connect(&gateway.ws_url(&token(tenant, Uuid::new_v4(), "member", &[]))).await;
    assert_eq!(
        client.subscribe(&format!("tenant:{tenant}:calls")).await["op"],
        "subscribed"
    );
    let events = call_burst(tenant, Uuid::new_v4(), BURST_CALLS);
    produce(&producer(false), &topics.voice(), &events).await;
    let _consumers = Hub::start(
        &pool,
        &topics,
        HubOptions {
            batch_max: 5000,
            extra_env: vec![("LAD_ROLE".into(), "consumers".into())],
            ..HubOptions::default()
        },
    )
    .await;
    let mut view = CallsView::default();
    let took = follow_until_current(&mut client, &mut view, &pool, tenant, BURST_CALLS, 120).await;
    println!(
        "backlog: {} events applied at start; the client held every call's stored state after {took:?} ({} frames)",
        events.len(),
        view.frames
    );
}

/// `/proc/<pid>/status` in KiB: (VmRSS, VmHWM).
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("field")
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[sqlx::test(migrations = "./migrations")]
async fn a_client_that_stops_reading_is_closed_with_4008_and_a_reading_one_is_not(pool: PgPool) {
    let topics = Topics::new();
    let budget = 256 * 1024;
    let hub = Hub::start(
        &pool,
        &topics,
        HubOptions {
            batch_max: 5000,
            extra_env: vec![
                ("LAD_WS_BACKLOG_BYTES".into(), budget.to_string()),
                ("LAD_WS_STALL_SECS".into(), "2".into()),
            ],
            ..HubOptions::default()
        },
    )
    .await;
    let tenant = Uuid::new_v4();
    let url = hub.ws_url(&token(tenant, Uuid::new_v4(), "member", &[]));
    let channel = format!("tenant:{tenant}:calls");

    let mut reader = Client::connect(&url).await;
    assert_eq!(reader.subscribe(&channel).await["op"], "subscribed");
    let mut peer = Client::connect(&url).await;
    assert_eq!(peer.subscribe(&channel).await["op"], "subscribed");

    // First a burst with two clients reading: what the hub itself needs
    // for it.
    let agent = Uuid::new_v4();
    produce(
        &producer(false),
        &topics.voice(),
        &call_burst(tenant, agent, BURST_CALLS),
    )
    .await;
    let mut view = CallsView::default();
    let mut peer_view = CallsView::default();
    tokio::join!(
        follow_until_current(&mut reader, &mut view, &pool, tenant, BURST_CALLS, 120),
        follow_until_current(&mut peer, &mut peer_view, &pool, tenant, BURST_CALLS, 120)
    );
    let (rss_before, peak_before) = rss_kib(hub.pid());
    peer.ws.close(None).await.expect("the peer closes");

    // The second socket is replaced by one that will never read the next
    // burst. It connects only now, with a small receive buffer, so the
    // hub's writes block soon: a client with a buffer this small that did
    // read a burst would be at the mercy of TCP's small-window timers on a
    // loaded machine (it once read 1,713 frames in two minutes in CI).
    // The burst's calls have all ended, so its snapshot is small.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(hub.addr).await.unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .unwrap();
    let mut stalled = Client::from_ws(ws);
    assert_eq!(stalled.subscribe(&channel).await["op"], "subscribed");

    // Then the same burst with one client no longer reading.
    produce(
        &producer(false),
        &topics.voice(),
        &call_burst(tenant, agent, BURST_CALLS),
    )
    .await;
    let took =
        follow_until_current(&mut reader, &mut view, &pool, tenant, 2 * BURST_CALLS, 120).await;
    eventually(30, "the stalled socket closed with 4008", || async {
        let body = lad_hub::http::fetch(hub.addr, "/metrics").await?.1;
        body.contains(r#"lad_ws_closes_total{code="4008"} 1"#)
            .then_some(())
    })
    .await;
    let (rss_after, peak_after) = rss_kib(hub.pid());
    println!(
        "stalled: the reader was current after {took:?} ({} frames) and the stalled socket was closed; \
         hub RSS after a burst with both reading {rss_before} KiB (peak {peak_before}), \
         after the same burst with one stalled {rss_after} KiB (peak {peak_after})",
        view.frames
    );
    reader.send(json!({"op": "ping", "id": "still-here"})).await;
    loop {
        let f = reader
            .next_frame(10)
            .await
            .expect("the reader is still open");
        if f["op"] == "pong" {
            break;
        }
    }
    // What the stalled socket may hold: its event budget, plus one queued
    // entry per call (its latest frame, a slot and a key: under 2 KiB);
    // the rest is the slack of an allocator under a burst, which varies
    // from run to run by tens of MiB.
    let allowance_kib = (budget as u64 + BURST_CALLS as u64 * 2048) / 1024 + 64 * 1024;
    let grew = peak_after.saturating_sub(peak_before);
    assert!(
        grew < allowance_kib,
        "hub peak RSS grew by {grew} KiB with a stalled client (allowed {allowance_kib} KiB)"
    );

    // It reads again: what was in flight, then the end of the connection
    // (the close frame only if it still fitted in the socket's buffers).
    let mut tail = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(30), stalled.ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => tail += 1,
            Ok(Some(Err(_)) | None) => break None,
            Err(_) => panic!("the stalled socket was not closed"),
        }
    };
    println!("stalled: it then read {tail} frames in flight and the close ({code:?})");
    assert!(matches!(code, None | Some(4008)));
}

/// A `tenant:{t}:call:{c}` transcript of lines `seqs`.
fn lines(tenant: Uuid, call: Uuid, seqs: std::ops::Range<i32>) -> Vec<Event> {
    seqs.map(|seq| {
        Event::new(
            call,
            "call.transcript",
            tenant,
            Utc::now(),
            json!({"call_id": call, "seq": seq, "speaker": "agent", "text": format!("line {seq}")}),
        )
    })
    .collect()
}

async fn stored_lines(pool: &PgPool, call: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM voice_call_transcripts WHERE call_id = $1")
        .bind(call)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The transcript seqs of `messages`.
fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["data"]["seq"].as_i64().unwrap())
        .collect()
}

/// Subscribes with `since` and returns the `subscribed` frame.
async fn resubscribe(client: &mut Client, channel: &str, since: &str) -> Value {
    client
        .send(json!({"op": "subscribe", "id": 1, "channel": channel, "since": since}))
        .await;
    client.next_frame(30).await.expect("subscribed")
}

/// Receives the first ten lines of a call's transcript on `node`, then
/// leaves; returns the channel and the last position seen.
async fn watch_first_lines(
    node: &Hub,
    pool: &PgPool,
    producer: &rdkafka::producer::FutureProducer,
    topics: &Topics,
    url_token: &str,
    tenant: Uuid,
    call: Uuid,
) -> (String, String) {
    let channel = format!("tenant:{tenant}:call:{call}");
    let mut client = Client::connect(&node.ws_url(url_token)).await;
    assert_eq!(client.subscribe(&channel).await["op"], "subscribed");
    produce(producer, &topics.voice(), &lines(tenant, call, 0..10)).await;
    let got = client.messages_until(30, |m| m.len() >= 10).await;
    assert_eq!(seqs(&got), (0..10).collect::<Vec<_>>());
    let last = got[9]["position"].as_str().unwrap().to_owned();
    drop(client);
    eventually(30, "ten lines stored", || async {
        (stored_lines(pool, call).await == 10).then_some(())
    })
    .await;
    (channel, last)
}

/// Lines 10..30, produced and stored while the client is away.
async fn miss_twenty_lines(
    pool: &PgPool,
    producer: &rdkafka::producer::FutureProducer,
    topics: &Topics,
    tenant: Uuid,
    call: Uuid,
) {
    produce(producer, &topics.voice(), &lines(tenant, call, 10..30)).await;
    eventually(30, "thirty lines stored", || async {
        (stored_lines(pool, call).await == 30).then_some(())
    })
    .await;
}

/// Resubscribes with `since` on `node`: exactly lines 10..30, in order,
/// once, then the live lines after them.
async fn assert_recovers_the_rest(
    node: &Hub,
    producer: &rdkafka::producer::FutureProducer,
    topics: &Topics,
    url_token: &str,
    (tenant, call): (Uuid, Uuid),
    (channel, since): (&str, &str),
) {
    let mut client = Client::connect(&node.ws_url(url_token)).await;
    let sub = resubscribe(&mut client, channel, since).await;
    assert_eq!(
        (&sub["op"], &sub["recovered"], &sub["position"]),
        (&json!("subscribed"), &json!(true), &json!(since)),
        "{sub}"
    );
    let missed = client.messages_until(30, |m| m.len() >= 20).await;
    assert_eq!(seqs(&missed), (10..30).collect::<Vec<_>>());
    produce(producer, &topics.voice(), &lines(tenant, call, 30..35)).await;
    let live = client.messages_until(30, |m| m.len() >= 5).await;
    assert_eq!(
        seqs(&live),
        (30..35).collect::<Vec<_>>(),
        "no seam: none lost, none twice"
    );
    client.send(json!({"op": "ping", "id": "probe"})).await;
    assert_eq!(
        client.next_frame(10).await,
        Some(json!({"op": "pong", "id": "probe"})),
        "nothing more was queued"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn since_recovers_from_the_log_across_a_hub_restart(pool: PgPool) {
    let topics = Topics::new();
    let mut hub = Hub::start(
        &pool,
        &topics,
        HubOptions {
            restartable: true,
            ..HubOptions::default()
        },
    )
    .await;
    let producer = producer(true);
    let (tenant, call) = (Uuid::new_v4(), Uuid::new_v4());
    let bearer = token(tenant, Uuid::new_v4(), "member", &[]);
    let (channel, since) =
        watch_first_lines(&hub, &pool, &producer, &topics, &bearer, tenant, call).await;
    println!("restart: the client left at {since}");
    miss_twenty_lines(&pool, &producer, &topics, tenant, call).await;
    // Give the relay time to publish the last rows before the restart.
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.restart().await;
    println!("restart: the hub was restarted; its rings are empty");

    // A restart's reconnect wave: many clients resume at once and share
    // the reads of the log.
    const WAVE: usize = 12;
    let wave = (0..WAVE).map(|_| async {
        let mut client = Client::connect(&hub.ws_url(&bearer)).await;
        let sub = resubscribe(&mut client, &channel, &since).await;
        assert_eq!(sub["recovered"], json!(true), "{sub}");
        seqs(&client.messages_until(30, |m| m.len() >= 20).await)
    });
    for got in futures_util::future::join_all(wave).await {
        assert_eq!(got, (10..30).collect::<Vec<_>>());
    }
    let metrics = lad_hub::http::fetch(hub.addr, "/metrics").await.unwrap().1;
    let scans: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lad_ws_log_replay_scans_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no scan counter in {metrics}"));
    println!("restart: {WAVE} clients recovered together with {scans} scans of the log");
    assert!(scans < WAVE as u64 / 2, "{scans} scans for {WAVE} clients");

    assert_recovers_the_rest(
        &hub,
        &producer,
        &topics,
        &bearer,
        (tenant, call),
        (&channel, &since),
    )
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn since_recovers_from_the_log_on_another_node(pool: PgPool) {
    let topics = Topics::new();
    let restartable = || HubOptions {
        restartable: true,
        ..HubOptions::default()
    };
    let node_a = Hub::start(&pool, &topics, restartable()).await;
    let node_b = Hub::start(
        &pool,
        &topics,
        HubOptions {
            extra_env: vec![("LAD_ROLE".into(), "gateway".into())],
            ..restartable()
        },
    )
    .await;
    let producer = producer(true);
    let (tenant, call) = (Uuid::new_v4(), Uuid::new_v4());
    let bearer = token(tenant, Uuid::new_v4(), "member", &[]);
    let (channel, since) =
        watch_first_lines(&node_a, &pool, &producer, &topics, &bearer, tenant, call).await;
    miss_twenty_lines(&pool, &producer, &topics, tenant, call).await;
    println!("nodes: the client left node A at {since} and comes back on node B");
    assert_recovers_the_rest(
        &node_b,
        &producer,
        &topics,
        &bearer,
        (tenant, call),
        (&channel, &since),
    )
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_client_that_never_answers_pings_is_closed_within_the_configured_time(pool: PgPool) {
    let topics = Topics::new();
    let hub = Hub::start(
        &pool,
        &topics,
        HubOptions {
            extra_env: vec![
                ("LAD_WS_PING_SECS".into(), "1".into()),
                ("LAD_WS_PONG_TIMEOUT_SECS".into(), "1".into()),
            ],
            ..HubOptions::default()
        },
    )
    .await;
    let url = hub.ws_url(&token(Uuid::new_v4(), Uuid::new_v4(), "member", &[]));
    // tungstenite answers a ping only while it is polled: this one never is.
    let (mut silent, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let mut answering = Client::connect(&url).await;
    let opened = Instant::now();
    let answering_reads = tokio::spawn(async move {
        let frame = answering.next_frame(5).await;
        (answering, frame)
    });
    let gone = eventually(10, "the silent socket closed", || async {
        let body = lad_hub::http::fetch(hub.addr, "/metrics").await?.1;
        body.contains(r#"lad_ws_closes_total{code="4009"} 1"#)
            .then(|| opened.elapsed())
    })
    .await;
    println!("heartbeat: the silent socket was closed {gone:?} after it opened (ping 1 s + 1 s)");
    assert!(
        gone < Duration::from_secs(4),
        "closed within ping + timeout (+1 s)"
    );
    // The metrics above prove the hub closed it with 4009. What the client
    // reads back is racy by TCP's nature: reading now, tungstenite answers
    // the queued pings on a socket the hub has closed, and the reset that
    // follows can discard the close frame. So: the connection has ended,
    // and any close frame that got through says 4009.
    let mut codes = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = silent.next().await {
            if let Message::Close(Some(f)) = m {
                codes.push(u16::from(f.code));
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the silent socket's connection ended");
    assert!(codes.iter().all(|c| *c == 4009), "{codes:?}");
    let (mut answering, frame) = answering_reads.await.unwrap();
    assert_eq!(frame, None, "the answering client got no frame and stayed");
    answering.send(json!({"op": "ping", "id": 1})).await;
    assert_eq!(
        answering.next_frame(5).await,
        Some(json!({"op": "pong", "id": 1}))
    );
}
