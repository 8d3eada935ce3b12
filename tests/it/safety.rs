//! Safe to deploy: the start refusals, secrets kept out of `--help` and
//! logs, the health subcommand, Postgres over TLS, the connection caps and
//! subscribe rate limit, and a subscribe flood that leaves ingestion alone.

use crate::support::*;
use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use lad_hub::demo::Event;
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

const DB_PASSWORD: &str = "db-pass-never-shown-71c3";
const KAFKA_PASSWORD: &str = "kafka-pass-never-shown-5e2a";
const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/// Runs `lad-hub` with `env` (and nothing inherited that configures it) and
/// returns its output; fails the test if it is still running after 30 s.
fn run_hub(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lad-hub"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("LAD_") || k == "DATABASE_URL" || k == "KAFKA_BROKERS" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("lad-hub runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("lad-hub {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// A strong secret for processes this file starts itself.
fn strong_secret() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

#[test]
fn serve_refuses_to_start_with_an_empty_short_or_default_secret_or_none_at_all() {
    // Nothing listens on port 1: a refusal must come before any connection.
    let db = format!("postgres://lad:{DB_PASSWORD}@127.0.0.1:1/lad");
    for (secret, expected) in [
        (Some(""), "LAD_JWT_SECRET is empty"),
        (Some("s3cr3t-but-short"), "at least 32 are required"),
        (Some("change-me"), "published default"),
        (Some("dev-secret-change-me"), "published default"),
        (Some(&*"x".repeat(48)), "repeats a single character"),
        (None, "no way to verify tokens"),
    ] {
        let mut env = vec![("DATABASE_URL", db.as_str())];
        if let Some(s) = secret {
            env.push(("LAD_JWT_SECRET", s));
        }
        let out = run_hub(&["serve"], &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{secret:?}: {stderr}");
        assert!(stderr.contains("refusing to start"), "{stderr}");
        assert!(stderr.contains(expected), "{secret:?}: {stderr}");
        if let Some(s) = secret.filter(|s| !s.is_empty()) {
            assert!(!stderr.contains(s), "the secret is shown: {stderr}");
        }
        assert!(!stderr.contains(DB_PASSWORD), "{stderr}");
    }
}

#[test]
fn help_and_start_errors_never_show_secrets() {
    let secret = strong_secret();
    let db = format!("postgres://lad:{DB_PASSWORD}@127.0.0.1:1/lad?sslmode=prefer");
    let props = format!("security.protocol=SASL_SSL,sasl.password={KAFKA_PASSWORD}");
    let env = [
        ("DATABASE_URL", db.as_str()),
        ("LAD_JWT_SECRET", secret.as_str()),
        ("LAD_KAFKA_PROPS", props.as_str()),
        ("LAD_KAFKA_PRODUCER_PROPS", props.as_str()),
    ];
    let help = run_hub(&["serve", "--help"], &env);
    let shown = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success());
    assert!(
        shown.contains("DATABASE_URL") && shown.contains("LAD_JWT_SECRET"),
        "{shown}"
    );
    for hidden in [DB_PASSWORD, KAFKA_PASSWORD, &secret] {
        assert!(!shown.contains(hidden), "--help shows a secret:\n{shown}");
    }
    let migrate_help = run_hub(&["migrate", "--help"], &env);
    assert!(!String::from_utf8_lossy(&migrate_help.stdout).contains(DB_PASSWORD));

    // A start that fails on the database says so, without its password.
    let out = run_hub(&["serve"], &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("connecting to Postgres"), "{stderr}");
    for hidden in [DB_PASSWORD, KAFKA_PASSWORD, &secret] {
        assert!(!stderr.contains(hidden), "a secret in the error:\n{stderr}");
    }
}

/// `url` of the test's database with `host` and query `params`.
async fn url_with(pool: &PgPool, host: &str, password: Option<&str>, params: &str) -> String {
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let user = password.map_or("postgres".to_owned(), |p| format!("postgres:{p}"));
    format!("postgres://{user}@{host}:5432/{name}?{params}")
}

#[sqlx::test(migrations = "./migrations")]
async fn postgres_over_tls_works_with_require_and_verify_full_and_a_wrong_name_or_ca_is_refused(
    pool: PgPool,
) {
    let verify_full = format!("sslmode=verify-full&sslrootcert={SNAKEOIL}");
    // The snakeoil certificate names `localhost`: verify-full holds by that name.
    for params in ["sslmode=require", verify_full.as_str()] {
        let url = url_with(&pool, "localhost", None, params).await;
        let out = run_hub(&["migrate"], &[("DATABASE_URL", url.as_str())]);
        assert!(
            out.status.success(),
            "{params}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let opts: PgConnectOptions = url.parse().unwrap();
        let mut conn = opts.connect().await.expect("TLS connection");
        let tls: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(tls, "{params}: the session is not encrypted");
    }
    // By address the name does not match; with public CAs the issuer is unknown.
    for (host, params) in [
        ("127.0.0.1", verify_full.clone()),
        (
            "localhost",
            "sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt".to_owned(),
        ),
    ] {
        let url = url_with(&pool, host, Some(DB_PASSWORD), &params).await;
        let out = run_hub(&["migrate"], &[("DATABASE_URL", url.as_str())]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{host} {params} connected");
        assert!(stderr.contains("connecting to Postgres"), "{stderr}");
        assert!(!stderr.contains(DB_PASSWORD), "{stderr}");
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_hub_over_verified_tls_is_healthy_and_keeps_its_secrets_out_of_the_log(pool: PgPool) {
    let url = url_with(
        &pool,
        "localhost",
        Some(DB_PASSWORD),
        &format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"),
    )
    .await;
    let topics = Topics::new();
    let hub = Hub::start(
        &pool,
        &topics,
        HubOptions {
            extra_env: vec![("DATABASE_URL".into(), url)],
            ..HubOptions::default()
        },
    )
    .await;
    // A subscribe opens the snapshot pool; it and the main pool use TLS.
    let tenant = Uuid::new_v4();
    let mut client =
        Client::connect(&hub.ws_url(&token(tenant, Uuid::new_v4(), "viewer", &[]))).await;
    assert_eq!(
        client.subscribe(&format!("tenant:{tenant}:calls")).await["op"],
        "subscribed"
    );
    let sessions: Vec<(String, bool)> = sqlx::query_as(
        "SELECT a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.datname = current_database() AND s.ssl",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let snapshots = lad_hub::safety::SNAPSHOT_APPLICATION_NAME;
    assert!(
        sessions.iter().any(|(app, _)| app == snapshots),
        "the snapshot pool holds no TLS session: {sessions:?}"
    );
    assert!(
        sessions.iter().any(|(app, _)| app.is_empty()),
        "the main pool holds no TLS session: {sessions:?}"
    );
    let plain_snapshots: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.datname = current_database() AND a.application_name = $1 AND NOT s.ssl",
    )
    .bind(snapshots)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(plain_snapshots, 0);

    // `lad-hub health` (the container check): 0 when ready, also given the
    // unspecified address the container listens on; 1 when nothing answers.
    let port = hub.addr.port().to_string();
    for addr in [hub.addr.to_string(), format!("0.0.0.0:{port}")] {
        let out = run_hub(&["health", "--http-addr", &addr], &[]);
        assert!(out.status.success(), "health {addr}");
    }
    let idle = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = idle.local_addr().unwrap().to_string();
    drop(idle);
    let out = run_hub(&["health", "--http-addr", &closed], &[]);
    assert_eq!(out.status.code(), Some(1));

    let log = std::fs::read_to_string(&hub.log).unwrap();
    assert!(log.contains("lad-hub serving"), "{log}");
    assert!(!log.contains(DB_PASSWORD), "{log}");
    assert!(!log.contains(JWT_SECRET), "{log}");
}

/// The upgrade's status and JSON body (none when it succeeded).
async fn try_connect(hub: &Hub, token: &str) -> Result<Client, (u16, Value)> {
    match tokio_tungstenite::connect_async(hub.ws_url(token)).await {
        Ok((ws, _)) => Ok(Client::from_ws(ws)),
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("upgrade failed without a status: {e}"),
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn connection_caps_refuse_with_a_clear_status_subscribes_are_rate_limited_per_user_and_a_client_ignoring_it_is_closed(
    pool: PgPool,
) {
    let topics = Topics::new();
    let hub = Hub::start(
        &pool,
        &topics,
        HubOptions {
            extra_env: vec![
                ("LAD_MAX_CONNECTIONS".into(), "6".into()),
                ("LAD_MAX_CONNECTIONS_PER_TENANT".into(), "4".into()),
                ("LAD_MAX_CONNECTIONS_PER_USER".into(), "2".into()),
                ("LAD_SUBSCRIBE_RATE".into(), "2".into()),
                ("LAD_SUBSCRIBE_BURST".into(), "3".into()),
            ],
            ..HubOptions::default()
        },
    )
    .await;
    let (t1, t2) = (Uuid::new_v4(), Uuid::new_v4());
    let users: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let tok = |t: Uuid, u: Uuid| token(t, u, "member", &[]);

    let mut open = Vec::new();
    open.push(
        try_connect(&hub, &tok(t1, users[0]))
            .await
            .expect("1st of user 0"),
    );
    open.push(
        try_connect(&hub, &tok(t1, users[0]))
            .await
            .expect("2nd of user 0"),
    );
    let (status, body) = try_connect(&hub, &tok(t1, users[0]))
        .await
        .err()
        .expect("user cap");
    assert_eq!(
        (status, &body["error"], &body["limit"], &body["max"]),
        (
            429,
            &json!("too_many_connections"),
            &json!("user"),
            &json!(2)
        )
    );
    // Another user of the tenant is not affected by user 0's cap...
    open.push(try_connect(&hub, &tok(t1, users[1])).await.expect("user 1"));
    open.push(
        try_connect(&hub, &tok(t1, users[1]))
            .await
            .expect("user 1 again"),
    );
    // ...until the tenant's cap.
    let (status, body) = try_connect(&hub, &tok(t1, users[2]))
        .await
        .err()
        .expect("tenant cap");
    assert_eq!((status, &body["limit"]), (429, &json!("tenant")));
    // Another tenant is not affected by t1's cap, until the node's.
    open.push(try_connect(&hub, &tok(t2, users[3])).await.expect("t2"));
    open.push(
        try_connect(&hub, &tok(t2, users[4]))
            .await
            .expect("t2 again"),
    );
    let (status, body) = try_connect(&hub, &tok(t2, users[2]))
        .await
        .err()
        .expect("node cap");
    assert_eq!((status, &body["limit"]), (503, &json!("node")));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("6 open connections"),
        "{body}"
    );

    // A closed socket gives its place back.
    let mut gone = open.remove(0);
    gone.ws.close(None).await.unwrap();
    while gone.ws.next().await.is_some() {}
    let back = eventually(10, "the place of a closed socket", || async {
        try_connect(&hub, &tok(t1, users[0])).await.ok()
    })
    .await;
    open.push(back);

    // Subscribes: a burst of 3, then 2/s; the refusal says when to retry.
    let channel = format!("tenant:{t1}:calls");
    let flooder = &mut open[0];
    for _ in 0..3 {
        assert_eq!(flooder.subscribe(&channel).await["op"], "subscribed");
    }
    let refused = flooder.subscribe(&channel).await;
    assert_eq!(
        (&refused["op"], &refused["code"]),
        (&json!("error"), &json!("rate_limited"))
    );
    assert!(
        refused["message"].as_str().unwrap().contains("retry in"),
        "{refused}"
    );
    // Another socket (even of the same tenant) still subscribes.
    assert_eq!(open[1].subscribe(&channel).await["op"], "subscribed");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(open[0].subscribe(&channel).await["op"], "subscribed");

    // A client that keeps sending past its refusals is closed with 1008
    // once it exceeds its frame budget (200 at once by default).
    let ignorer = &mut open[2];
    let frame = |id: u32| {
        let f = json!({"op": "subscribe", "id": id, "channel": format!("tenant:{t1}:calls")});
        Message::text(f.to_string())
    };
    for id in 0..200 {
        ignorer.ws.send(frame(id)).await.expect("within the burst");
    }
    // One frame at a time from here, so the hub never closes with frames
    // of ours unread (that would be a reset, not a close frame).
    let mut code = None;
    'sending: for id in 200..400 {
        ignorer.ws.send(frame(id)).await.expect("open until closed");
        let reply = format!(r#""id":{id},"#);
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ignorer.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains(&reply) => break,
                Ok(Some(Ok(Message::Close(f)))) => {
                    code = f.map(|f| u16::from(f.code));
                    break 'sending;
                }
                Ok(Some(Ok(_))) => continue,
                other => panic!("no reply nor close: {other:?}"),
            }
        }
    }
    assert_eq!(code, Some(1008));
    // Another user's socket is not affected (user 1 spent its own bucket).
    let other = format!("tenant:{t2}:calls");
    assert_eq!(open[3].subscribe(&other).await["op"], "subscribed");
}

/// Produces one `call.started` of `tenant` every `gap`, `n` in all, and
/// returns produce → `call.updated` on `client` latencies, in ms, sorted.
async fn ingestion_latencies(
    producer: &rdkafka::producer::FutureProducer,
    topics: &Topics,
    client: &mut Client,
    tenant: Uuid,
    n: usize,
    gap: Duration,
) -> Vec<f64> {
    // One producer for every phase: a new one would wait for its
    // connection, and that wait would be in every phase's first latencies.
    let producer = producer.clone();
    let calls: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    let topic = topics.voice();
    let sender = {
        let calls = calls.clone();
        tokio::spawn(async move {
            let mut deliveries = Vec::with_capacity(calls.len());
            for call in calls {
                let e = Event::new(
                    call,
                    "call.started",
                    tenant,
                    Utc::now(),
                    json!({
                    "call_id": call, "agent_id": Uuid::nil(), "direction": "outbound",
                    "from_number": "+15550000001", "to_number": "+15550000002"}),
                );
                let payload = e.payload();
                let d = producer
                    .send_result(FutureRecord::to(&topic).key(&e.key).payload(&payload))
                    .map_err(|(e, _)| e)
                    .expect("enqueued");
                deliveries.push(d);
                tokio::time::sleep(gap).await;
            }
            for d in deliveries {
                d.await.expect("delivery").expect("delivered");
            }
        })
    };
    let mut latencies = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} calls pushed",
            seen.len()
        );
        let Some(f) = client.next_frame(30).await else {
            panic!("socket went quiet after {} calls", seen.len())
        };
        if f["type"] != "call.updated" || !seen.insert(f["data"]["id"].clone()) {
            continue;
        }
        let started: chrono::DateTime<Utc> =
            serde_json::from_value(f["data"]["started_at"].clone()).expect("started_at");
        latencies.push((Utc::now() - started).num_microseconds().unwrap() as f64 / 1000.0);
    }
    sender.await.unwrap();
    latencies.sort_by(f64::total_cmp);
    latencies
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What the flooding sockets got.
#[derive(Default)]
struct FloodCounts {
    served: AtomicU64,
    limited: AtomicU64,
    /// Closed by the hub (1008: it kept sending past `rate_limited`).
    closed: AtomicU64,
}

/// One flooding client: subscribe, unsubscribe, again, as fast as the hub
/// answers, until `stop` (idle while `paused`); after a `rate_limited` it waits the time the
/// refusal names (a client that does not is cut off: see the caps test),
/// and it reconnects if closed.
/// Frames are classified by their head: parsing every 100 KB snapshot
/// would make the test, not the hub, the machine's busiest process.
async fn flood(
    url: &str,
    channel: &str,
    stop: &AtomicBool,
    paused: &AtomicBool,
    counts: &FloodCounts,
) {
    while !stop.load(Ordering::Relaxed) {
        let (mut ws, _) = match tokio_tungstenite::connect_async(url).await {
            Ok(c) => c,
            // The user's connection cap while its old socket closes.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut id = 0u64;
        'socket: while !stop.load(Ordering::Relaxed) {
            if paused.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            id += 1;
            let sub = json!({"op": "subscribe", "id": id, "channel": channel});
            let unsub = json!({"op": "unsubscribe", "id": format!("u{id}"), "channel": channel});
            for frame in [sub, unsub] {
                if ws.send(Message::text(frame.to_string())).await.is_err() {
                    break 'socket;
                }
            }
            let answers = [
                format!(r#"{{"op":"subscribed","id":{id},"#),
                format!(r#"{{"op":"error","id":{id},"#),
            ];
            let (mut subscribe_answered, mut unsubscribe_answered) = (false, false);
            while !(subscribe_answered && unsubscribe_answered) {
                let t = match ws.next().await {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        counts.closed.fetch_add(1, Ordering::Relaxed);
                        break 'socket;
                    }
                    Some(Ok(_)) => continue,
                };
                let head = &t.as_str()[..t.len().min(160)];
                if head.starts_with(&answers[0]) {
                    counts.served.fetch_add(1, Ordering::Relaxed);
                    subscribe_answered = true;
                } else if head.starts_with(&answers[1]) {
                    if head.contains(r#""code":"rate_limited""#) {
                        counts.limited.fetch_add(1, Ordering::Relaxed);
                        let refusal: Value = serde_json::from_str(t.as_str()).expect("JSON");
                        let ms: u64 = refusal["message"]
                            .as_str()
                            .and_then(|m| m.split("retry in ").nth(1))
                            .and_then(|m| m.trim_end_matches(" ms").parse().ok())
                            .expect("the refusal says when to retry");
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    subscribe_answered = true;
                } else if head.contains(&format!(r#""id":"u{id}""#)) {
                    unsubscribe_answered = true;
                }
            }
        }
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_subscribe_flood_leaves_ingestion_latency_within_twice_idle(pool: PgPool) {
    let topics = Topics::new();
    let hub = Hub::start(&pool, &topics, HubOptions::default()).await;
    let (measured, flooded) = (Uuid::new_v4(), Uuid::new_v4());

    // The flooded tenant has 300 calls in progress: every snapshot of its
    // `calls` channel reads and serializes them all.
    let seed: Vec<Event> = (0..300)
        .map(|_| {
            let call = Uuid::new_v4();
            Event::new(
                call,
                "call.started",
                flooded,
                Utc::now(),
                json!({
                "call_id": call, "agent_id": Uuid::new_v4(), "direction": "outbound",
                "from_number": "+15550000001", "to_number": "+15550000002"}),
            )
        })
        .collect();
    produce(&producer(false), &topics.voice(), &seed).await;
    eventually(60, "the seeded calls", || async {
        let n = count(
            &pool,
            &format!("SELECT count(*) FROM voice_call_logs WHERE tenant_id = '{flooded}'"),
        )
        .await;
        (n == 300).then_some(())
    })
    .await;

    let mut watcher =
        Client::connect(&hub.ws_url(&token(measured, Uuid::new_v4(), "viewer", &[]))).await;
    assert_eq!(
        watcher.subscribe(&format!("tenant:{measured}:calls")).await["op"],
        "subscribed"
    );
    let latency_producer = producer(false);
    const ROUNDS: usize = 8;
    const PER_PHASE: usize = 40;
    let gap = Duration::from_millis(10);
    ingestion_latencies(&latency_producer, &topics, &mut watcher, measured, 50, gap).await;

    // The flood: viewer sockets re-subscribing in a loop, as fast as the hub
    // answers: three users (one token each), four sockets each. It starts
    // paused; the machine's other load varies, so idle and flooded phases
    // alternate and each figure pools its phases.
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(FloodCounts::default());
    let channel = format!("tenant:{flooded}:calls");
    let mut flooders = Vec::new();
    for _ in 0..3 {
        let url = hub.ws_url(&token(flooded, Uuid::new_v4(), "viewer", &[]));
        for _ in 0..4 {
            let (url, stop, paused, counts, channel) = (
                url.clone(),
                stop.clone(),
                paused.clone(),
                counts.clone(),
                channel.clone(),
            );
            flooders.push(tokio::spawn(async move {
                flood(&url, &channel, &stop, &paused, &counts).await
            }));
        }
    }
    // First the bursts are used up, so the phases measure the sustained rate.
    eventually(60, "the flood to use up its bursts", || async {
        (counts.limited.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await;
    let watch_stop = Arc::new(AtomicBool::new(false));
    let pool_watch = {
        let (pool, stop) = (pool.clone(), watch_stop.clone());
        tokio::spawn(async move {
            let mut most = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1
                     AND datname = current_database()",
                )
                .bind(lad_hub::safety::SNAPSHOT_APPLICATION_NAME)
                .fetch_one(&pool)
                .await
                .unwrap();
                most = most.max(n);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            most
        })
    };
    let (mut idle, mut flooded_latencies) = (Vec::new(), Vec::new());
    let (mut flood_secs, mut served_flooding) = (0.0, 0);
    // Short phases pair each flooded one with an idle one under about the
    // same background load (the machine runs other builds and tests).
    for _ in 0..ROUNDS {
        paused.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        idle.extend(
            ingestion_latencies(
                &latency_producer,
                &topics,
                &mut watcher,
                measured,
                PER_PHASE,
                gap,
            )
            .await,
        );
        paused.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (t0, served0) = (Instant::now(), counts.served.load(Ordering::Relaxed));
        flooded_latencies.extend(
            ingestion_latencies(
                &latency_producer,
                &topics,
                &mut watcher,
                measured,
                PER_PHASE,
                gap,
            )
            .await,
        );
        flood_secs += t0.elapsed().as_secs_f64();
        served_flooding += counts.served.load(Ordering::Relaxed) - served0;
    }
    stop.store(true, Ordering::Relaxed);
    watch_stop.store(true, Ordering::Relaxed);
    let snapshot_connections = pool_watch.await.unwrap();
    for f in flooders {
        f.abort();
    }

    idle.sort_by(f64::total_cmp);
    flooded_latencies.sort_by(f64::total_cmp);
    let (idle50, idle95) = (percentile(&idle, 0.5), percentile(&idle, 0.95));
    let (flood50, flood95) = (
        percentile(&flooded_latencies, 0.5),
        percentile(&flooded_latencies, 0.95),
    );
    println!(
        "ingestion latency, produce -> call.updated, {ROUNDS} x {PER_PHASE} calls per figure: \
         idle p50 {idle50:.1} ms p95 {idle95:.1} ms; under flood p50 {flood50:.1} ms \
         p95 {flood95:.1} ms (x{:.2} p50); flood: 12 sockets of 3 users re-subscribing to \
         300 calls in progress, {:.0} snapshots/s while flooding, {} subscribes rate_limited; \
         snapshot connections at most {snapshot_connections}",
        flood50 / idle50,
        served_flooding as f64 / flood_secs,
        counts.limited.load(Ordering::Relaxed),
    );
    assert!(
        snapshot_connections <= 2,
        "{snapshot_connections} snapshot connections"
    );
    assert!(
        flood50 <= 2.0 * idle50,
        "median ingestion latency {flood50:.1} ms under the flood, {idle50:.1} ms idle"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn snapshot_reads_run_on_their_own_small_pool_with_a_statement_timeout(pool: PgPool) {
    let db = lad_hub::config::DbArgs {
        database_url: url_with(&pool, "127.0.0.1", None, "sslmode=prefer").await,
        db_pool_size: 16,
    };
    let limits = lad_hub::config::LimitArgs {
        max_connections: 10,
        max_connections_per_tenant: 10,
        max_connections_per_user: 10,
        subscribe_rate: 1.0,
        subscribe_burst: 1,
        ws_frame_rate: 1.0,
        ws_frame_burst: 1,
        snapshot_pool_size: 1,
        snapshot_timeout_ms: 150,
    };
    let snapshots = lad_hub::safety::snapshot_pool(&db, &limits).expect("pool");
    let (timeout, app): (String, String) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'), current_setting('application_name')",
    )
    .fetch_one(&snapshots)
    .await
    .unwrap();
    assert_eq!(
        (timeout.as_str(), app.as_str()),
        ("150ms", lad_hub::safety::SNAPSHOT_APPLICATION_NAME)
    );
    let slow = sqlx::query("SELECT pg_sleep(2)").execute(&snapshots).await;
    let e = slow.expect_err("cut by the statement timeout").to_string();
    assert!(e.contains("statement timeout"), "{e}");
    // One connection: a second reader waits for it rather than opening another.
    let held = snapshots.acquire().await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(300), snapshots.acquire()).await;
    assert!(waited.is_err(), "a second connection was opened");
    drop(held);
}

#[sqlx::test(migrations = "./migrations")]
async fn subscribes_waiting_together_share_one_snapshot_read_begun_after_them(pool: PgPool) {
    use lad_consumers::live::Channel;
    use lad_hub::gateway::snapshot::{SnapshotError, SnapshotReads};
    use sqlx::postgres::PgPoolOptions;

    let tenant_id = Uuid::new_v4();
    let channel = Channel::Calls { tenant_id };
    let one = PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let reads = SnapshotReads::new(one.clone());
    let in_progress = |snapshot: &serde_json::value::RawValue| -> usize {
        let v: Value = serde_json::from_str(snapshot.get()).unwrap();
        v["calls_in_progress"].as_array().expect("calls").len()
    };

    // Starts a call of the tenant, then frees the read pool's connection.
    let call_then_release = |held: sqlx::pool::PoolConnection<sqlx::Postgres>| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO voice_call_logs (tenant_id, status, started_at)
                 VALUES ($1, 'in_progress', now())",
            )
            .bind(tenant_id)
            .execute(&pool)
            .await
            .unwrap();
            drop(held);
        }
    };

    // The pool's one connection is taken: the reads queue behind it. The
    // call commits after the subscribes began and before their query
    // started, so a read begun after them shows it. `join!` polls the reads
    // first: all five are waiting before the release.
    let held = one.acquire().await.unwrap();
    let waiting = futures_util::future::join_all((0..5).map(|_| reads.read(channel)));
    let (shared, ()) = tokio::join!(waiting, call_then_release(held));
    let shared: Vec<_> = shared.into_iter().map(Result::unwrap).collect();
    for s in &shared {
        assert!(Arc::ptr_eq(s, &shared[0]), "five reads, one query");
        assert_eq!(in_progress(s), 1);
    }

    // A later subscribe gets a read of its own, with what committed since.
    let held = one.acquire().await.unwrap();
    let (later, ()) = tokio::join!(reads.read(channel), call_then_release(held));
    let later = later.unwrap();
    assert!(!Arc::ptr_eq(&later, &shared[0]));
    assert_eq!(in_progress(&later), 2);

    // A read that fails reaches every subscriber that shared it.
    one.close().await;
    let failed = futures_util::future::join_all((0..3).map(|_| reads.read(channel))).await;
    for f in failed {
        assert!(matches!(f, Err(SnapshotError::Query(_))), "{f:?}");
    }
}
