//! What every end-to-end test needs: its own topics and consumer group on the
//! real broker, its own database (from `#[sqlx::test]`), a producer, a hub
//! (a real process, so it can be SIGKILLed), and WebSocket clients.

use futures_util::{SinkExt, StreamExt};
use lad_hub::demo::Event;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

pub const JWT_SECRET: &str = "integration-tests-only-3f9c2a7e5b8d41c6a0e2f7b9";

pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Unique topic names and group for one test.
#[derive(Debug, Clone)]
pub struct Topics {
    pub prefix: String,
}

impl Topics {
    pub fn new() -> Topics {
        Topics {
            prefix: format!("t{}", Uuid::new_v4().simple()),
        }
    }
    pub fn voice(&self) -> String {
        format!("{}.voice", self.prefix)
    }
    pub fn campaigns(&self) -> String {
        format!("{}.campaigns", self.prefix)
    }
    pub fn billing(&self) -> String {
        format!("{}.billing", self.prefix)
    }
    pub fn ai(&self) -> String {
        format!("{}.ai", self.prefix)
    }
    pub fn live(&self) -> String {
        format!("{}.live", self.prefix)
    }
    pub fn dead_letters(&self) -> String {
        format!("{}.dead-letters", self.prefix)
    }
}

/// The URL of the database a `#[sqlx::test]` pool points at.
pub async fn database_url(pool: &PgPool) -> String {
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .expect("current_database");
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (root, _) = base.rsplit_once('/').expect("DATABASE_URL has a database");
    format!("{root}/{name}")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A hub process serving one test's topics and database.
pub struct Hub {
    pub addr: SocketAddr,
    /// The process's stderr (every start of it, appended).
    pub log: std::path::PathBuf,
    child: Child,
    env: Vec<(String, String)>,
}

pub struct HubOptions {
    /// One record per producer batch: needed whenever the hub may resume in
    /// the middle of its own output (tansu skips the rest of a batch when
    /// a fetch starts inside it; see ARCHITECTURE.md).
    pub restartable: bool,
    pub batch_max: usize,
    pub extra_env: Vec<(String, String)>,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            restartable: false,
            batch_max: 500,
            extra_env: Vec::new(),
        }
    }
}

impl Hub {
    pub async fn start(pool: &PgPool, topics: &Topics, opts: HubOptions) -> Hub {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut env = vec![
            ("DATABASE_URL".into(), database_url(pool).await),
            ("KAFKA_BROKERS".into(), brokers()),
            ("LAD_HTTP_ADDR".into(), addr.to_string()),
            ("LAD_JWT_SECRET".into(), JWT_SECRET.into()),
            ("LAD_TOPIC_VOICE".into(), topics.voice()),
            ("LAD_TOPIC_CAMPAIGNS".into(), topics.campaigns()),
            ("LAD_TOPIC_BILLING".into(), topics.billing()),
            ("LAD_TOPIC_AI".into(), topics.ai()),
            ("LAD_TOPIC_LIVE".into(), topics.live()),
            ("LAD_TOPIC_DEAD_LETTERS".into(), topics.dead_letters()),
            (
                "LAD_CONSUMER_GROUP".into(),
                format!("{}.hub", topics.prefix),
            ),
            ("LAD_TOPIC_PARTITIONS".into(), "3".into()),
            ("LAD_DB_POOL_SIZE".into(), "6".into()),
            ("LAD_BATCH_MAX".into(), opts.batch_max.to_string()),
            // A killed lone member is replaced after the session timeout:
            // keep it short (tansu keeps a dead member of several, see ARCHITECTURE.md).
            (
                "LAD_KAFKA_CONSUMER_PROPS".into(),
                "session.timeout.ms=6000,heartbeat.interval.ms=1000".into(),
            ),
            ("RUST_LOG".into(), "info,rdkafka=warn,sqlx=warn".into()),
        ];
        if opts.restartable {
            env.push((
                "LAD_KAFKA_PRODUCER_PROPS".into(),
                "batch.num.messages=1".into(),
            ));
        }
        env.extend(opts.extra_env);
        let log = std::env::temp_dir().join(format!("lad-hub-{}.log", Uuid::new_v4().simple()));
        let child = Self::spawn(&env, &log);
        let hub = Hub {
            addr,
            log,
            child,
            env,
        };
        hub.wait_ready().await;
        hub
    }

    fn spawn(env: &[(String, String)], log: &std::path::Path) -> Child {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        Command::new(env!("CARGO_BIN_EXE_lad-hub"))
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn lad-hub")
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if lad_hub::http::probe_ready(self.addr).await {
                return;
            }
            assert!(Instant::now() < deadline, "hub did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown path runs, whatever the hub was doing.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait: the graceful path.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    pub async fn restart(&mut self) {
        self.kill();
        self.start_again().await;
    }

    /// Starts a stopped hub again with the same settings (address included,
    /// so clients find it where it was).
    pub async fn start_again(&mut self) {
        self.child = Self::spawn(&self.env, &self.log);
        self.wait_ready().await;
    }

    /// SIGTERM, without blocking the test's runtime while the hub drains
    /// (its sockets, the test's other tasks, keep running meanwhile).
    pub async fn stop_gracefully(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.is_running() {
            assert!(
                Instant::now() < deadline,
                "hub did not exit within 60 s of SIGTERM; its log: {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills and starts the hub again, waiting only until it answers
    /// (`/healthz`): for tests that expect it to start not ready.
    pub async fn respawn(&mut self) {
        self.kill();
        self.child = Self::spawn(&self.env, &self.log);
        let deadline = Instant::now() + Duration::from_secs(60);
        while lad_hub::http::fetch(self.addr, "/healthz").await.is_none() {
            assert!(Instant::now() < deadline, "hub did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/v1/ws?token={token}", self.addr)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn producer(one_record_per_batch: bool) -> FutureProducer {
    producer_for(&brokers(), one_record_per_batch)
}

/// A producer to the broker at `bootstrap` (a test's own broker).
pub fn producer_for(bootstrap: &str, one_record_per_batch: bool) -> FutureProducer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "1");
    if one_record_per_batch {
        cfg.set("batch.num.messages", "1");
    }
    cfg.create().expect("producer")
}

/// Produces raw payloads with keys, waiting for every delivery.
pub async fn produce_raw(producer: &FutureProducer, topic: &str, records: &[(String, Vec<u8>)]) {
    let mut deliveries = Vec::with_capacity(records.len());
    for (key, payload) in records {
        loop {
            match producer.send_result(FutureRecord::to(topic).key(key).payload(payload)) {
                Ok(d) => {
                    deliveries.push(d);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    for d in deliveries {
        d.await.expect("delivery").expect("delivered");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

pub async fn produce(producer: &FutureProducer, topic: &str, events: &[Event]) {
    let records: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| (e.key.clone(), e.payload()))
        .collect();
    produce_raw(producer, topic, &records).await;
}

/// Polls `check` until it returns `Some`, or fails the test after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Distinct events applied: the ids kept in `hub_processed_events`, plus
/// the voice events and the activities, which their own rows dedupe
/// instead (`Domain::deduped_by_own_row`): a transcript line, the ids a
/// call's row and its analysis keep, an activity. An id applied within ten
/// minutes of midnight UTC is kept under both days (see the pipeline's
/// `DEDUPE_SQL`), so ids are counted once each: counting rows made a test
/// run at 00:06 UTC see more events applied than it had sent.
pub async fn applied_events(pool: &PgPool) -> i64 {
    count(
        pool,
        "SELECT (SELECT count(DISTINCT event_id) FROM hub_processed_events)
              + (SELECT count(*) FROM voice_call_transcripts)
              + (SELECT COALESCE(sum(cardinality(applied_event_ids)), 0) FROM voice_call_logs)
              + (SELECT COALESCE(sum(cardinality(applied_event_ids)), 0) FROM voice_call_analysis)
              + (SELECT count(*) FROM campaign_lead_activities)",
    )
    .await
}

/// The hub's `/metrics` text.
pub async fn metrics(addr: SocketAddr) -> String {
    lad_hub::http::fetch(addr, "/metrics")
        .await
        .expect("the hub answers /metrics")
        .1
}

/// The sum of the samples of `name` whose labels contain every one of `labels`.
pub fn sample_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the hub counted at least `n` duplicates on `topic`.
pub async fn await_duplicates(addr: SocketAddr, topic: &str, n: f64) {
    let label = format!("topic=\"{topic}\"");
    eventually(30, "the repeats counted as duplicates", || async {
        let m = metrics(addr).await;
        (sample_sum(&m, "lad_events_duplicate_total", &[&label]) >= n).then_some(())
    })
    .await;
}

pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

pub fn token(tenant: Uuid, user: Uuid, role: &str, caps: &[&str]) -> String {
    let claims = json!({
        "sub": user, "tenant_id": tenant, "role": role,
        "exp": chrono::Utc::now().timestamp() + 3600,
        "caps": caps,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("token")
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Client {
    pub ws: Ws,
    next_id: u64,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Client::from_ws(ws)
    }

    pub fn from_ws(ws: Ws) -> Client {
        Client { ws, next_id: 1 }
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    /// Subscribes and returns the `subscribed` (or `error`) reply.
    pub async fn subscribe(&mut self, channel: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"op": "subscribe", "id": id, "channel": channel}))
            .await;
        loop {
            let f = self.next_frame(10).await.expect("a reply to subscribe");
            if f["id"] == json!(id) {
                return f;
            }
        }
    }

    /// The next text frame as JSON, or `None` after `secs` of silence.
    pub async fn next_frame(&mut self, secs: u64) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(serde_json::from_str(&t).expect("JSON frame"))
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Waits for the close frame and returns its code.
    pub async fn close_code(&mut self, secs: u64) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Collects `message` frames until `done` says so, or fails after `secs`.
    pub async fn messages_until(
        &mut self,
        secs: u64,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut out = Vec::new();
        while !done(&out) {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .as_secs()
                .max(1);
            assert!(
                Instant::now() < deadline,
                "timed out; got {} messages",
                out.len()
            );
            match self.next_frame(left).await {
                Some(f) if f["op"] == "message" => out.push(f),
                Some(_) => {}
                None => panic!("socket went quiet after {} messages", out.len()),
            }
        }
        out
    }
}

/// Seconds since a fault test started: each step it takes is printed on
/// this clock, so a reader of the output sees where every fault landed.
#[derive(Debug, Clone, Copy)]
pub struct Timeline(Instant);

impl Timeline {
    pub fn start() -> Timeline {
        Timeline(Instant::now())
    }

    pub fn note(&self, what: impl std::fmt::Display) {
        println!("t=+{:.1}s {what}", self.0.elapsed().as_secs_f64());
    }
}

/// Produces records (topic, event) at a steady pace in the background,
/// a small chunk five times a second, so that faults injected meanwhile
/// land on a hub that has work in hand.
pub struct PacedFeeder {
    produced: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    total: usize,
    task: tokio::task::JoinHandle<()>,
}

impl PacedFeeder {
    /// Spreads `records` evenly over `over`. A chunk's deliveries are
    /// awaited before the next one: while the broker is away the stream
    /// pauses, as a real producer's would, and resumes when it is back.
    pub fn start(producer: FutureProducer, records: Vec<(String, Event)>, over: Duration) -> Self {
        use std::sync::atomic::Ordering;
        let total = records.len();
        let produced = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = produced.clone();
        let task = tokio::spawn(async move {
            let ticks = (over.as_secs_f64() * 5.0).ceil().max(1.0) as usize;
            let per_tick = total.div_ceil(ticks).max(1);
            let start = tokio::time::Instant::now();
            for (i, chunk) in records.chunks(per_tick).enumerate() {
                tokio::time::sleep_until(start + over.mul_f64(i as f64 / ticks as f64)).await;
                let mut deliveries = Vec::with_capacity(chunk.len());
                for (topic, event) in chunk {
                    let payload = event.payload();
                    loop {
                        let record = FutureRecord::to(topic).key(&event.key).payload(&payload);
                        match producer.send_result(record) {
                            Ok(d) => break deliveries.push(d),
                            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                }
                for d in deliveries {
                    d.await.expect("delivery").expect("delivered");
                }
                counter.fetch_add(chunk.len(), Ordering::Release);
            }
        });
        PacedFeeder {
            produced,
            total,
            task,
        }
    }

    /// Records delivered to the broker so far.
    pub fn produced(&self) -> usize {
        self.produced.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// True while records remain to be produced.
    pub fn is_flowing(&self) -> bool {
        self.produced() < self.total
    }

    pub async fn finish(self) {
        self.task.await.expect("feeder");
    }
}
