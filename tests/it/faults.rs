//! Faults a production hub meets, injected while a steady stream flows:
//! Postgres terminating the hub's connections, Postgres refusing
//! connections for a while, the broker restarting, and a rolling restart
//! of three nodes whose clients move between them. Each test prints a
//! timeline (`t=+…s`) of what it did and when, and ends with the stored
//! aggregates equal to one clean run and every watching socket holding
//! every message of its channel, once.
//!
//! Sockets watch transcript channels (`tenant:{t}:call:{c}`): transcripts
//! are events, never conflated, so "every message, once" is a fair demand
//! of them (state messages may skip ids for a client that is behind).

use crate::support::*;
use crate::voice::{await_reference_stats, scripted_calls};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures_util::{SinkExt, StreamExt};
use lad_hub::demo::{CallScript, Event};
use rand::SeedableRng;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The `application_name` of the hub's Postgres sessions in these tests:
/// faults are aimed at its backends only, never at the test's own or at
/// other tests' databases.
const HUB_APPLICATION: &str = "lad-hub-under-fault";

/// A voice stream: scripted calls (the aggregates' reference) with the
/// transcripts of a few watched calls woven in evenly from the start, so
/// every watched channel has messages before the first fault.
struct Workload {
    tenant: Uuid,
    calls: Vec<(CallScript, DateTime<Utc>)>,
    step: ChronoDuration,
    watched: Vec<Uuid>,
    lines: i64,
    events: Vec<Event>,
}

impl Workload {
    fn new(seed: u64, calls: usize, watched: usize, lines: i64) -> Workload {
        let tenant = Uuid::new_v4();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let agents: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let step = ChronoDuration::minutes(1);
        let (calls, scripted) = scripted_calls(&mut rng, tenant, &agents, calls, step);
        let watched: Vec<Uuid> = (0..watched).map(|_| Uuid::new_v4()).collect();
        let per_round = scripted.len().div_ceil(lines as usize);
        let mut scripted = scripted.into_iter();
        let mut events = Vec::new();
        for seq in 0..lines {
            events.extend(
                watched
                    .iter()
                    .map(|call| transcript_line(tenant, *call, seq)),
            );
            events.extend(scripted.by_ref().take(per_round));
        }
        events.extend(scripted);
        Workload {
            tenant,
            calls,
            step,
            watched,
            lines,
            events,
        }
    }

    fn distinct_events(&self) -> i64 {
        self.events
            .iter()
            .map(Event::event_id)
            .collect::<HashSet<_>>()
            .len() as i64
    }

    fn records(&self, topics: &Topics) -> Vec<(String, Event)> {
        self.events
            .iter()
            .map(|e| (topics.voice(), e.clone()))
            .collect()
    }

    fn channel(&self, call: Uuid) -> String {
        format!("tenant:{}:call:{call}", self.tenant)
    }

    /// One socket per watched call, the i-th starting on `nodes[i % n]`;
    /// returns once every one of them is subscribed.
    async fn watch(
        &self,
        nodes: &[SocketAddr],
        secs: u64,
    ) -> Vec<tokio::task::JoinHandle<Watched>> {
        let bearer = token(self.tenant, Uuid::new_v4(), "member", &[]);
        let (subscribed, mut ready) = tokio::sync::mpsc::channel(self.watched.len());
        let watches = self
            .watched
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let watch = Watch {
                    nodes: nodes.to_vec(),
                    first: i % nodes.len(),
                    token: bearer.clone(),
                    channel: self.channel(*call),
                    expected: self.lines as usize,
                    subscribed: subscribed.clone(),
                };
                tokio::spawn(watch.run(Duration::from_secs(secs)))
            })
            .collect();
        for _ in &self.watched {
            tokio::time::timeout(Duration::from_secs(30), ready.recv())
                .await
                .expect("every socket subscribed within 30 s");
        }
        watches
    }

    /// Aggregates equal one clean run, and every transcript line (scripted
    /// and watched) is stored once.
    async fn assert_stored(&self, pool: &PgPool, timeline: &Timeline) {
        // The aggregates can be complete before the stream's last events
        // (transcript lines) are: wait for every event, then compare.
        let total = self.distinct_events();
        eventually(120, "every event applied", || async {
            (applied_events(pool).await >= total).then_some(())
        })
        .await;
        timeline.note("every event applied");
        await_reference_stats(
            pool,
            &self.calls,
            self.step,
            30,
            "aggregates equal the reference",
        )
        .await;
        timeline.note("aggregates equal one clean run");
        let scripted: i64 = self
            .calls
            .iter()
            .map(|(c, _)| i64::from(c.transcript_lines))
            .sum();
        let watched = self.watched.len() as i64 * self.lines;
        assert_eq!(
            count(pool, "SELECT count(*) FROM voice_call_transcripts").await,
            scripted + watched
        );
        assert_eq!(applied_events(pool).await, self.distinct_events());
        assert_eq!(
            count(pool, "SELECT count(*) FROM hub_dead_letters").await,
            0,
            "a fault made the hub dead-letter a good record"
        );
    }
}

fn transcript_line(tenant: Uuid, call: Uuid, seq: i64) -> Event {
    Event::new(
        call,
        "call.transcript",
        tenant,
        Utc::now(),
        json!({"call_id": call, "seq": seq, "speaker": "agent", "text": format!("line {seq}")}),
    )
}

/// One client on one channel, as the reconnect rules in the README say:
/// when its node goes it moves to the next one and resubscribes with its
/// last `position`, and it drops repeated messages by `id`.
struct Watch {
    nodes: Vec<SocketAddr>,
    first: usize,
    token: String,
    channel: String,
    expected: usize,
    /// Told once, when the first subscription is in place.
    subscribed: tokio::sync::mpsc::Sender<()>,
}

/// What a [`Watch`] received.
#[derive(Debug)]
struct Watched {
    channel: String,
    /// The first delivery of every message id, in arrival order.
    messages: Vec<Value>,
    /// Deliveries of an id already received (dropped).
    repeats: usize,
    /// Times its connection ended and it moved to another node.
    moves: usize,
    /// The `recovered` flag of every resubscription with `since`.
    recovered: Vec<bool>,
}

impl Watch {
    async fn run(self, within: Duration) -> Watched {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Watched {
            channel: self.channel.clone(),
            messages: Vec::new(),
            repeats: 0,
            moves: 0,
            recovered: Vec::new(),
        };
        let mut seen = HashSet::new();
        let mut node = self.first;
        let mut since: Option<String> = None;
        // After a move, a socket that already has everything stops there.
        'connections: while tokio::time::Instant::now() < deadline
            && out.messages.len() < self.expected
        {
            let url = format!("ws://{}/v1/ws?token={}", self.nodes[node], self.token);
            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
                // Its node is down or still starting: the next one.
                node = (node + 1) % self.nodes.len();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let mut subscribe = json!({"op": "subscribe", "id": 1, "channel": self.channel});
            if let Some(position) = &since {
                subscribe["since"] = json!(position);
            }
            if ws.send(Message::text(subscribe.to_string())).await.is_err() {
                continue;
            }
            // Once everything arrived, a second more to catch late repeats.
            let mut until = deadline;
            loop {
                let frame = match tokio::time::timeout_at(until, ws.next()).await {
                    Err(_) => break 'connections,
                    Ok(Some(Ok(Message::Text(t)))) => {
                        serde_json::from_str::<Value>(&t).expect("JSON frame")
                    }
                    Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => {
                        out.moves += 1;
                        node = (node + 1) % self.nodes.len();
                        continue 'connections;
                    }
                    Ok(Some(Ok(_))) => continue,
                };
                match frame["op"].as_str() {
                    Some("subscribed") => {
                        if since.is_some() {
                            out.recovered.push(frame["recovered"] == json!(true));
                        } else {
                            let _ = self.subscribed.try_send(());
                        }
                        since = frame["position"].as_str().map(str::to_owned);
                    }
                    Some("message") => {
                        since = frame["position"].as_str().map(str::to_owned);
                        let id = frame["id"].as_str().expect("message id").to_owned();
                        if seen.insert(id) {
                            out.messages.push(frame);
                        } else {
                            out.repeats += 1;
                        }
                        if out.messages.len() >= self.expected && until == deadline {
                            until = tokio::time::Instant::now() + Duration::from_secs(1);
                        }
                    }
                    _ => panic!("{}: unexpected frame {frame}", self.channel),
                }
            }
        }
        out
    }
}

impl Watched {
    /// Every line of the transcript, in order, each once (after dropping
    /// repeats by id), and every resubscription resumed where it left.
    fn assert_every_line_once(&self, lines: i64) {
        let seqs: Vec<i64> = self
            .messages
            .iter()
            .map(|m| m["data"]["seq"].as_i64().expect("seq"))
            .collect();
        assert_eq!(
            seqs,
            (0..lines).collect::<Vec<_>>(),
            "{}: every line, in order, once",
            self.channel
        );
        assert!(
            self.recovered.iter().all(|r| *r),
            "{}: a resubscription was not recovered: {:?}",
            self.channel,
            self.recovered
        );
    }
}

async fn collect(watches: Vec<tokio::task::JoinHandle<Watched>>) -> Vec<Watched> {
    let mut out = Vec::new();
    for w in watches {
        out.push(w.await.expect("watch"));
    }
    out
}

/// Polls `/readyz` every 100 ms in the background, notes every change on
/// the timeline, and keeps the sequence of states seen.
struct ReadyProbe {
    states: Arc<Mutex<Vec<bool>>>,
    stop: CancellationToken,
}

impl ReadyProbe {
    fn start(addr: SocketAddr, timeline: Timeline) -> ReadyProbe {
        let states = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (seen, stopped) = (states.clone(), stop.clone());
        tokio::spawn(async move {
            while !stopped.is_cancelled() {
                // An answer that takes longer than this counts as not ready.
                let answer = tokio::time::timeout(
                    Duration::from_secs(2),
                    lad_hub::http::fetch(addr, "/readyz"),
                )
                .await;
                let (ready, body) = match answer {
                    Ok(Some((status, body))) => (status == 200, body),
                    Ok(None) => (false, "no answer".to_owned()),
                    Err(_) => (false, "no answer within 2 s".to_owned()),
                };
                {
                    let mut states = seen.lock().expect("not poisoned");
                    if states.last() != Some(&ready) {
                        states.push(ready);
                        let shown = if ready { "green" } else { "red" };
                        timeline.note(format_args!("/readyz {shown}: {body}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        ReadyProbe { states, stop }
    }

    fn states(&self) -> Vec<bool> {
        self.states.lock().expect("not poisoned").clone()
    }

    fn is_red(&self) -> bool {
        self.states().last() == Some(&false)
    }

    fn is_green(&self) -> bool {
        self.states().last() == Some(&true)
    }
}

impl Drop for ReadyProbe {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A connection to the server's `postgres` database, to aim faults at the
/// test's database from outside it.
async fn admin() -> PgConnection {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (root, _) = base.rsplit_once('/').expect("DATABASE_URL has a database");
    PgConnection::connect(&format!("{root}/postgres"))
        .await
        .expect("admin connection")
}

async fn database_name(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .expect("current_database")
}

/// `pg_terminate_backend` on every session of the hub (its application
/// name) in `database`; returns how many there were.
async fn terminate_hub_sessions(admin: &mut PgConnection, database: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = $1 AND application_name = $2",
    )
    .bind(database)
    .bind(HUB_APPLICATION)
    .fetch_one(admin)
    .await
    .expect("pg_terminate_backend")
}

async fn allow_connections(admin: &mut PgConnection, database: &str, allow: bool) {
    let quoted = format!("\"{}\"", database.replace('"', "\"\""));
    sqlx::query(&format!(
        "ALTER DATABASE {quoted} WITH ALLOW_CONNECTIONS {allow}"
    ))
    .execute(admin)
    .await
    .expect("ALTER DATABASE");
}

/// A hub whose Postgres sessions carry [`HUB_APPLICATION`].
async fn hub_under_fault(pool: &PgPool, topics: &Topics, extra: Vec<(String, String)>) -> Hub {
    let url = format!(
        "{}?application_name={HUB_APPLICATION}",
        database_url(pool).await
    );
    let mut extra_env = vec![("DATABASE_URL".to_owned(), url)];
    extra_env.extend(extra);
    Hub::start(
        pool,
        topics,
        HubOptions {
            restartable: true,
            batch_max: 100,
            extra_env,
        },
    )
    .await
}

async fn applied(pool: &PgPool) -> i64 {
    applied_events(pool).await
}

#[sqlx::test(migrations = "./migrations")]
async fn postgres_terminating_the_hubs_connections_mid_stream_loses_and_doubles_nothing(
    pool: PgPool,
) {
    let topics = Topics::new();
    let mut hub = hub_under_fault(&pool, &topics, Vec::new()).await;
    let database = database_name(&pool).await;
    let mut admin = admin().await;
    let work = Workload::new(31, 200, 4, 60);
    let total = work.distinct_events();
    // Subscribed before the stream: the watches must see every line.
    let watches = work.watch(&[hub.addr], 120).await;

    let timeline = Timeline::start();
    let probe = ReadyProbe::start(hub.addr, timeline);
    let feeder = PacedFeeder::start(
        producer(true),
        work.records(&topics),
        Duration::from_secs(25),
    );
    timeline.note(format_args!(
        "stream of {} records ({total} distinct events) starts, over 25 s",
        feeder.total()
    ));
    for round in 1..=3 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = applied(&pool).await;
        let terminated = terminate_hub_sessions(&mut admin, &database).await;
        timeline.note(format_args!(
            "fault #{round}: pg_terminate_backend on the hub's {terminated} sessions \
             ({before}/{total} events applied, {}/{} records produced)",
            feeder.produced(),
            feeder.total()
        ));
        assert!(terminated > 0, "the hub had sessions to terminate");
        assert!(feeder.is_flowing(), "fault #{round} came after the stream");
        assert!(before < total, "fault #{round} hit an idle hub");
    }
    feeder.finish().await;
    timeline.note("stream ended");

    work.assert_stored(&pool, &timeline).await;
    let watched = collect(watches).await;
    timeline.note("every watching socket has its transcript");
    for w in &watched {
        w.assert_every_line_once(work.lines);
        assert_eq!(
            (w.moves, w.repeats),
            (0, 0),
            "{}: nothing pushed twice, never cut",
            w.channel
        );
    }
    eventually(30, "the hub ready", || async {
        probe.is_green().then_some(())
    })
    .await;
    assert!(hub.is_running(), "the hub kept running");
}

#[sqlx::test(migrations = "./migrations")]
async fn postgres_refusing_connections_for_seconds_turns_readyz_red_and_back_and_loses_nothing(
    pool: PgPool,
) {
    let topics = Topics::new();
    let mut hub = hub_under_fault(&pool, &topics, Vec::new()).await;
    let database = database_name(&pool).await;
    let mut admin = admin().await;
    let work = Workload::new(32, 200, 4, 60);
    let total = work.distinct_events();
    let watches = work.watch(&[hub.addr], 120).await;

    let timeline = Timeline::start();
    let probe = ReadyProbe::start(hub.addr, timeline);
    eventually(10, "/readyz green", || async {
        probe.is_green().then_some(())
    })
    .await;
    let feeder = PacedFeeder::start(
        producer(true),
        work.records(&topics),
        Duration::from_secs(25),
    );
    timeline.note(format_args!(
        "stream of {} records ({total} distinct events) starts, over 25 s",
        feeder.total()
    ));
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = applied(&pool).await;
    // The test's database only: other tests share this Postgres. Its
    // sessions are ended after new ones are refused, twice, so that one
    // opening meanwhile is ended too.
    allow_connections(&mut admin, &database, false).await;
    let mut terminated = terminate_hub_sessions(&mut admin, &database).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    terminated += terminate_hub_sessions(&mut admin, &database).await;
    timeline.note(format_args!(
        "fault: the database refuses connections, the hub's {terminated} sessions ended \
         ({before}/{total} events applied, {}/{} records produced)",
        feeder.produced(),
        feeder.total()
    ));
    assert!(
        feeder.is_flowing() && before < total,
        "the fault hit an idle hub"
    );
    eventually(10, "/readyz red", || async { probe.is_red().then_some(()) }).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        hub.is_running(),
        "the hub kept running without its database"
    );
    allow_connections(&mut admin, &database, true).await;
    timeline.note(format_args!(
        "the database accepts connections again ({}/{} records produced)",
        feeder.produced(),
        feeder.total()
    ));
    eventually(30, "/readyz green again", || async {
        probe.is_green().then_some(())
    })
    .await;
    feeder.finish().await;
    timeline.note("stream ended");

    work.assert_stored(&pool, &timeline).await;
    let watched = collect(watches).await;
    timeline.note("every watching socket has its transcript");
    for w in &watched {
        w.assert_every_line_once(work.lines);
        assert_eq!(
            (w.moves, w.repeats),
            (0, 0),
            "{}: nothing pushed twice, never cut",
            w.channel
        );
    }
    let states = probe.states();
    assert!(
        states.first() == Some(&true) && states.contains(&false) && states.last() == Some(&true),
        "/readyz went from green to red and back: {states:?}"
    );
    assert!(hub.is_running(), "the hub kept running");
}

/// A tansu broker of the test's own on persistent storage (`sqlite://`
/// in a directory of its own), so it can be restarted without losing
/// what it acknowledged. The shared broker on 9092 keeps its records in
/// memory and serves the other tests: it is never restarted.
struct OwnBroker {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl OwnBroker {
    async fn start() -> OwnBroker {
        let dir = std::env::temp_dir().join(format!("lad-broker-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("broker directory");
        let port = free_port();
        let child = Self::spawn(port, &dir);
        let broker = OwnBroker { port, dir, child };
        broker.wait_listening().await;
        broker
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(port: u16, dir: &std::path::Path) -> Child {
        // What scripts/broker.sh installs; TANSU names another binary.
        let tansu = std::env::var_os("TANSU")
            .map(PathBuf::from)
            .or_else(|| {
                let installed = PathBuf::from(std::env::var_os("HOME")?).join(".cargo/bin/tansu");
                installed.exists().then_some(installed)
            })
            .unwrap_or_else(|| PathBuf::from("tansu"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("tansu.log"))
            .expect("broker log");
        let url = format!("tcp://127.0.0.1:{port}");
        // tansu resolves a sqlite path against its working directory.
        Command::new(tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://broker.db"])
            .current_dir(dir)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn tansu (scripts/broker.sh installs it)")
    }

    async fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(self.bootstrap())
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "own broker did not listen");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: the broker crashes. (Its SIGTERM path answers produce
    /// requests with an unknown error for seconds while it stops, which
    /// producers do not retry; a crash only drops connections, which they
    /// do.)
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn start_again(&mut self) {
        self.child = Self::spawn(self.port, &self.dir);
        self.wait_listening().await;
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_broker_restart_mid_stream_loses_and_doubles_nothing(pool: PgPool) {
    let mut broker = OwnBroker::start().await;
    let topics = Topics::new();
    let mut hub = hub_under_fault(
        &pool,
        &topics,
        vec![("KAFKA_BROKERS".to_owned(), broker.bootstrap())],
    )
    .await;
    let work = Workload::new(33, 200, 4, 60);
    let total = work.distinct_events();
    let watches = work.watch(&[hub.addr], 150).await;

    let timeline = Timeline::start();
    let feeder = PacedFeeder::start(
        producer_for(&broker.bootstrap(), true),
        work.records(&topics),
        Duration::from_secs(25),
    );
    timeline.note(format_args!(
        "stream of {} records ({total} distinct events) starts, over 25 s, on a broker of its own",
        feeder.total()
    ));
    tokio::time::sleep(Duration::from_secs(8)).await;
    let before = applied(&pool).await;
    timeline.note(format_args!(
        "fault: broker killed ({before}/{total} events applied, {}/{} records produced)",
        feeder.produced(),
        feeder.total()
    ));
    assert!(
        feeder.is_flowing() && before < total,
        "the fault hit an idle hub"
    );
    broker.kill();
    timeline.note("broker down (SIGKILL)");
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.start_again().await;
    timeline.note(format_args!(
        "broker back on its storage ({}/{} records produced)",
        feeder.produced(),
        feeder.total()
    ));
    feeder.finish().await;
    timeline.note("stream ended");

    work.assert_stored(&pool, &timeline).await;
    let watched = collect(watches).await;
    timeline.note("every watching socket has its transcript");
    for w in &watched {
        w.assert_every_line_once(work.lines);
        assert_eq!(
            (w.moves, w.repeats),
            (0, 0),
            "{}: nothing pushed twice, never cut",
            w.channel
        );
    }
    assert!(hub.is_running(), "the hub kept running");
}

/// Three `lad-hub serve` processes in one consumer group, each stopped
/// with SIGTERM and started again in turn while the stream flows. A clean
/// stop hands a node's partitions to the others (tansu keeps a killed
/// member's partitions while others live, see ARCHITECTURE.md), which is
/// what a rolling deploy does anyway.
#[sqlx::test(migrations = "./migrations")]
async fn a_rolling_restart_of_three_nodes_under_load_loses_and_doubles_nothing(pool: PgPool) {
    let topics = Topics::new();
    let node = || {
        Hub::start(
            &pool,
            &topics,
            HubOptions {
                restartable: true,
                batch_max: 100,
                ..HubOptions::default()
            },
        )
    };
    let (a, b, c) = tokio::join!(node(), node(), node());
    let mut nodes = [a, b, c];
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let work = Workload::new(34, 200, 6, 60);
    let total = work.distinct_events();
    let watches = work.watch(&addrs, 180).await;

    let timeline = Timeline::start();
    let feeder = PacedFeeder::start(
        producer(true),
        work.records(&topics),
        Duration::from_secs(35),
    );
    timeline.note(format_args!(
        "stream of {} records ({total} distinct events) starts, over 35 s; {} sockets on 3 nodes",
        feeder.total(),
        work.watched.len()
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (i, hub) in nodes.iter_mut().enumerate() {
        let before = applied(&pool).await;
        timeline.note(format_args!(
            "node {i}: SIGTERM ({before}/{total} events applied, {}/{} records produced)",
            feeder.produced(),
            feeder.total()
        ));
        assert!(
            feeder.is_flowing() && before < total,
            "node {i} stopped after the stream"
        );
        hub.stop_gracefully().await;
        timeline.note(format_args!("node {i}: stopped"));
        hub.start_again().await;
        timeline.note(format_args!("node {i}: ready again"));
        // Its consumers rejoin the group before the next node goes.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    feeder.finish().await;
    timeline.note("stream ended");

    work.assert_stored(&pool, &timeline).await;
    let watched = collect(watches).await;
    let moves: usize = watched.iter().map(|w| w.moves).sum();
    let repeats: usize = watched.iter().map(|w| w.repeats).sum();
    let resumed: usize = watched.iter().map(|w| w.recovered.len()).sum();
    timeline.note(format_args!(
        "every socket has its transcript: {moves} moves between nodes, \
         {resumed} resubscriptions with since, {repeats} repeats dropped by id"
    ));
    for w in &watched {
        timeline.note(format_args!(
            "  {}: {} lines, {} moves, recovered {:?}, {} repeats",
            w.channel,
            w.messages.len(),
            w.moves,
            w.recovered,
            w.repeats
        ));
    }
    for w in &watched {
        w.assert_every_line_once(work.lines);
        assert!(w.moves >= 1, "{}: its node stopped, it moved", w.channel);
    }
    for (i, hub) in nodes.iter_mut().enumerate() {
        assert!(hub.is_running(), "node {i} runs");
    }
}
