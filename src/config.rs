//! Configuration: flags, each with an environment variable, each with a
//! default that works on a developer machine (local Postgres and broker).

use crate::secrets::{RedactedProps, RedactedUrl};
use clap::{Args, Parser, Subcommand};
use lad_consumers::kafka::{parse_props, KafkaSettings};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "lad-hub",
    version,
    about = "LAD live hub: Kafka -> Postgres -> WebSocket"
)]
pub struct Cli {
    /// Log format on stderr: `text` for people, `json` (one object per line,
    /// the same fields) for log shippers.
    #[arg(long, global = true, env = "LAD_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start and moved into its command: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations, then run the pipelines, the outbox relay and the WebSocket gateway.
    Serve(Box<ServeArgs>),
    /// Create the database if missing and apply every migration.
    Migrate(DbArgs),
    /// Produce demo voice, campaign, billing and assistant traffic to the input topics.
    Demo(DemoArgs),
    /// Print a signed JWT for the WebSocket (for development and tests).
    Token(TokenArgs),
    /// Subscribe to channels and print every frame (a minimal WebSocket client).
    Watch(WatchArgs),
    /// Exit 0 if the hub at LAD_HTTP_ADDR answers `GET /readyz` with 200, else 1
    /// (the container health check; no curl needed).
    Health(HealthArgs),
    /// Inspect rejected records, and send them back to their topic once the
    /// cause is fixed.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Repair the offsets stored in Postgres (after a topic was recreated).
    #[command(subcommand)]
    Offsets(OffsetsCommand),
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// Print dead letters as JSON lines, newest first.
    List(DeadLetterListArgs),
    /// Produce the raw bytes (and key) of the selected dead letters to their
    /// original topic again, and mark them replayed.
    Replay(DeadLetterReplayArgs),
}

/// Which dead letters a command acts on. Filters combine (AND).
#[derive(Debug, Clone, Args)]
pub struct DeadLetterFilter {
    /// Original input topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// Text the reason contains (case-insensitive), or an error kind
    /// (`invalid_json`, `rule_violation`, ...).
    #[arg(long)]
    pub reason: Option<String>,
    /// Rejected at or after this: an RFC 3339 instant, or an age such as
    /// `30m`, `6h`, `2d`.
    #[arg(long, value_parser = crate::dead_letters::parse_since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only these dead letter ids (repeat or comma-separate).
    #[arg(long = "id", value_delimiter = ',')]
    pub ids: Vec<i64>,
    /// At most this many.
    #[arg(long, default_value_t = 1000)]
    pub limit: i64,
}

#[derive(Debug, Clone, Args)]
pub struct DeadLetterListArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub filter: DeadLetterFilter,
}

#[derive(Debug, Clone, Args)]
pub struct DeadLetterReplayArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub filter: DeadLetterFilter,
    /// Also replay dead letters replayed before (by default they are skipped,
    /// so running the same command twice sends nothing twice).
    #[arg(long)]
    pub again: bool,
}

#[derive(Debug, Subcommand)]
pub enum OffsetsCommand {
    /// Set the stored next offset of every partition of a topic to the
    /// partition's first (`earliest`) or next (`latest`) offset on the broker.
    Reset(OffsetsResetArgs),
}

#[derive(Debug, Clone, Args)]
pub struct OffsetsResetArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The input topic whose stored offsets are reset.
    #[arg(long)]
    pub topic: String,
    /// `earliest`: apply everything the topic holds again (repeats are
    /// caught by event_id within the dedupe window); `latest`: skip what it
    /// holds now.
    #[arg(long, value_parser = ["earliest", "latest"])]
    pub to: String,
    /// Only this consumer group's offsets (`<LAD_CONSUMER_GROUP>.<domain>`);
    /// by default every group that stored offsets for the topic.
    #[arg(long)]
    pub group: Option<String>,
}

#[derive(Clone, Args)]
pub struct DbArgs {
    /// TLS: `?sslmode=require`, or `?sslmode=verify-full&sslrootcert=/path/ca.pem`.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/lad_hub"
    )]
    pub database_url: String,
    /// Connections in the pool (pipelines, relay, snapshots share it).
    #[arg(long, env = "LAD_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,
}

#[derive(Clone, Args)]
pub struct KafkaArgs {
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// librdkafka properties for every client, `key=value` (repeat, or comma-separate
    /// in the variable), e.g. `security.protocol=SASL_SSL,sasl.mechanism=PLAIN`.
    #[arg(
        long = "kafka-prop",
        env = "LAD_KAFKA_PROPS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub kafka_props: Vec<String>,
    /// librdkafka properties for consumers only.
    #[arg(
        long = "kafka-consumer-prop",
        env = "LAD_KAFKA_CONSUMER_PROPS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub kafka_consumer_props: Vec<String>,
    /// librdkafka properties for producers only.
    #[arg(
        long = "kafka-producer-prop",
        env = "LAD_KAFKA_PRODUCER_PROPS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub kafka_producer_props: Vec<String>,
}

impl KafkaArgs {
    pub fn settings(&self) -> Result<KafkaSettings, String> {
        Ok(KafkaSettings {
            brokers: self.kafka_brokers.clone(),
            common: parse_props(&self.kafka_props)?,
            consumer: parse_props(&self.kafka_consumer_props)?,
            producer: parse_props(&self.kafka_producer_props)?,
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct Topics {
    #[arg(
        long,
        env = "LAD_TOPIC_VOICE",
        default_value = "lad.voice.call-events.v1"
    )]
    pub topic_voice: String,
    #[arg(
        long,
        env = "LAD_TOPIC_CAMPAIGNS",
        default_value = "lad.campaign.activities.v1"
    )]
    pub topic_campaigns: String,
    #[arg(
        long,
        env = "LAD_TOPIC_BILLING",
        default_value = "lad.billing.usage.v1"
    )]
    pub topic_billing: String,
    #[arg(long, env = "LAD_TOPIC_AI", default_value = "lad.ai.icp-assistant.v1")]
    pub topic_ai: String,
    #[arg(long, env = "LAD_TOPIC_LIVE", default_value = "lad.live.v1")]
    pub topic_live: String,
    #[arg(
        long,
        env = "LAD_TOPIC_DEAD_LETTERS",
        default_value = "lad.dead-letters.v1"
    )]
    pub topic_dead_letters: String,
}

impl Topics {
    pub fn all(&self) -> [&str; 6] {
        [
            &self.topic_voice,
            &self.topic_campaigns,
            &self.topic_billing,
            &self.topic_ai,
            &self.topic_live,
            &self.topic_dead_letters,
        ]
    }
}

/// `LAD_BATCH_MAX`. Every batch writes the rows all batches share (about
/// 1,000 agent-days and every tenant's wallet under a steady load) in a
/// section the lanes cannot overlap, whatever its size, so larger batches
/// pay it less often: 10,000 against 5,000 gave +18 % events/s in four
/// interleaved pairs out of four (BENCHMARKS.md, issue #14).
pub const DEFAULT_BATCH_MAX: usize = 10_000;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: Topics,
    /// Listen address of the WebSocket gateway, health and metrics.
    #[arg(long, env = "LAD_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Consumer group of the pipelines (one per deployment, shared by its nodes).
    #[arg(long, env = "LAD_CONSUMER_GROUP", default_value = "lad-hub")]
    pub consumer_group: String,
    /// Largest batch, in records, applied in one transaction.
    #[arg(long, env = "LAD_BATCH_MAX", default_value_t = DEFAULT_BATCH_MAX)]
    pub batch_max: usize,
    /// Transactions each pipeline runs at once, over disjoint partitions
    /// (a batch of several partitions is split between them). 1 applies one
    /// batch at a time. Each takes a database connection while it runs.
    #[arg(long, env = "LAD_PIPELINE_CONCURRENCY", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub pipeline_concurrency: u16,
    /// Longest wait, in milliseconds, to fill a batch once its first record
    /// came. 0 (the default) takes what has already been received and no
    /// more: batches still grow with load, because records keep arriving
    /// while the previous batch's transaction runs, but a quiet topic's
    /// record does not wait for company.
    #[arg(long, env = "LAD_BATCH_WAIT_MS", default_value_t = 0)]
    pub batch_wait_ms: u64,
    /// The same for topics whose events are pushed the moment they are
    /// received (the assistant's deltas): their batch only stores offsets
    /// and completed replies, so waiting costs no delta latency and saves
    /// transactions (measured: 0 ms here costs the deltas' p99).
    #[arg(long, env = "LAD_STREAM_BATCH_WAIT_MS", default_value_t = 10)]
    pub stream_batch_wait_ms: u64,
    /// Partitions of the topics the hub creates when they are missing.
    #[arg(long, env = "LAD_TOPIC_PARTITIONS", default_value_t = 6)]
    pub topic_partitions: i32,
    /// Replication factor of the topics the hub creates.
    #[arg(long, env = "LAD_TOPIC_REPLICATION", default_value_t = 1)]
    pub topic_replication: i32,
    #[command(flatten)]
    pub ws: WsArgs,
    #[command(flatten)]
    pub ops: OpsArgs,
    /// Which parts run on this node: `all`, `consumers` (pipelines and relay) or `gateway`.
    #[arg(long, env = "LAD_ROLE", default_value = "all", value_parser = ["all", "consumers", "gateway"])]
    pub role: String,
    /// Also run the demo traffic generator (for the quick start).
    #[arg(long, env = "LAD_DEMO")]
    pub demo: bool,
}

impl ServeArgs {
    /// How long a batch of a topic waits to fill (see the two settings).
    pub fn batch_wait(&self, streams_ephemeral: bool) -> Duration {
        Duration::from_millis(if streams_ephemeral {
            self.stream_batch_wait_ms
        } else {
            self.batch_wait_ms
        })
    }

    pub fn runs_consumers(&self) -> bool {
        self.role != "gateway"
    }

    pub fn runs_gateway(&self) -> bool {
        self.role != "consumers"
    }
}

/// How each WebSocket is served: its backlog, heartbeats, and how far back
/// `since` is recovered.
#[derive(Debug, Clone, Args)]
pub struct WsArgs {
    /// Bytes of events (frames that are never merged) a socket may have
    /// waiting before it is closed with 4008. State messages are conflated
    /// per entity instead and do not count.
    #[arg(long, env = "LAD_WS_BACKLOG_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub ws_backlog_bytes: usize,
    /// Seconds a socket with frames waiting may accept no write before it
    /// is closed with 4008 (the client stopped reading).
    #[arg(long, env = "LAD_WS_STALL_SECS", default_value_t = 10.0)]
    pub ws_stall_secs: f64,
    /// Seconds between the hub's pings to each socket.
    #[arg(long, env = "LAD_WS_PING_SECS", default_value_t = 20.0)]
    pub ws_ping_secs: f64,
    /// Seconds past a ping interval a silent socket (no pong, no frame) is
    /// kept before it is closed with 4009.
    #[arg(long, env = "LAD_WS_PONG_TIMEOUT_SECS", default_value_t = 20.0)]
    pub ws_pong_timeout_secs: f64,
    /// Most records of `lad.live.v1` a `since` recovery reads back.
    #[arg(long, env = "LAD_WS_REPLAY_MAX_RECORDS", default_value_t = 100_000)]
    pub ws_replay_max_records: i64,
    /// Oldest missed message, in seconds, a `since` recovery reads back.
    #[arg(long, env = "LAD_WS_REPLAY_MAX_AGE_SECS", default_value_t = 900.0)]
    pub ws_replay_max_age_secs: f64,
}

impl WsArgs {
    /// The gateway settings these flags describe.
    pub fn apply(&self, cfg: &mut crate::gateway::GatewayConfig) -> Result<(), String> {
        let secs = |name: &str, v: f64| {
            Duration::try_from_secs_f64(v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("{name} must be a positive number of seconds, not {v}"))
        };
        cfg.backlog_bytes = self.ws_backlog_bytes;
        cfg.stall_timeout = secs("LAD_WS_STALL_SECS", self.ws_stall_secs)?;
        cfg.ping_interval = secs("LAD_WS_PING_SECS", self.ws_ping_secs)?;
        cfg.pong_timeout = secs("LAD_WS_PONG_TIMEOUT_SECS", self.ws_pong_timeout_secs)?;
        cfg.replay.max_records = self.ws_replay_max_records;
        cfg.replay.max_age = secs("LAD_WS_REPLAY_MAX_AGE_SECS", self.ws_replay_max_age_secs)?;
        Ok(())
    }
}

/// Readiness thresholds, background checks, and how long the hub keeps
/// what it only needs for a while.
#[derive(Debug, Clone, Args)]
pub struct OpsArgs {
    /// `/readyz` fails when Postgres does not answer `SELECT 1` within this.
    #[arg(long, env = "LAD_READY_DB_TIMEOUT_MS", default_value_t = 1000)]
    pub ready_db_timeout_ms: u64,
    /// `/readyz` fails when the brokers have not answered a metadata
    /// request for this long.
    #[arg(long, env = "LAD_READY_KAFKA_SECS", default_value_t = 30.0)]
    pub ready_kafka_secs: f64,
    /// `/readyz` fails when a pipeline has been on the same batch
    /// (retrying it, or blocked) for this long, or the relay has been
    /// failing for this long.
    #[arg(long, env = "LAD_READY_STALL_SECS", default_value_t = 60.0)]
    pub ready_stall_secs: f64,
    /// `/readyz` fails when the oldest unpublished outbox row is this old.
    #[arg(long, env = "LAD_READY_OUTBOX_AGE_SECS", default_value_t = 60.0)]
    pub ready_outbox_age_secs: f64,
    /// `/readyz` fails when the live reader is this many records of
    /// `lad.live.v1` behind.
    #[arg(long, env = "LAD_READY_LIVE_LAG", default_value_t = 50_000)]
    pub ready_live_lag: i64,
    /// Seconds between the background checks (broker reachability, lag,
    /// offsets past the end, outbox and pool gauges).
    #[arg(long, env = "LAD_MONITOR_INTERVAL_SECS", default_value_t = 5.0)]
    pub monitor_interval_secs: f64,
    /// Days an `event_id` is remembered for dedupe. Older daily partitions
    /// of `hub_processed_events` are dropped (see README: what is still
    /// caught after the window).
    #[arg(long, env = "LAD_DEDUPE_WINDOW_DAYS", default_value_t = 7)]
    pub dedupe_window_days: i32,
    /// Days a row of `hub_dead_letters` is kept.
    #[arg(long, env = "LAD_DEAD_LETTER_RETENTION_DAYS", default_value_t = 30)]
    pub dead_letter_retention_days: i32,
    /// Seconds between maintenance runs (dedupe partitions, dead letter
    /// retention, `voice_call_logs` partitions).
    #[arg(long, env = "LAD_MAINTENANCE_INTERVAL_SECS", default_value_t = 3600.0)]
    pub maintenance_interval_secs: f64,
}

impl OpsArgs {
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| {
            Duration::try_from_secs_f64(v)
                .ok()
                .filter(|d| !d.is_zero())
                .map(|_| ())
                .ok_or_else(|| format!("{name} must be a positive number of seconds, not {v}"))
        };
        positive("LAD_READY_KAFKA_SECS", self.ready_kafka_secs)?;
        positive("LAD_READY_STALL_SECS", self.ready_stall_secs)?;
        positive("LAD_READY_OUTBOX_AGE_SECS", self.ready_outbox_age_secs)?;
        positive("LAD_MONITOR_INTERVAL_SECS", self.monitor_interval_secs)?;
        positive(
            "LAD_MAINTENANCE_INTERVAL_SECS",
            self.maintenance_interval_secs,
        )?;
        if self.dedupe_window_days < 1 {
            return Err("LAD_DEDUPE_WINDOW_DAYS must be at least 1".into());
        }
        if self.dead_letter_retention_days < 1 {
            return Err("LAD_DEAD_LETTER_RETENTION_DAYS must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: Topics,
    /// The demo tenant (the one `lad-hub token` defaults to).
    #[arg(long, env = "LAD_DEMO_TENANT", default_value = crate::demo::DEMO_TENANT)]
    pub tenant: uuid::Uuid,
    /// Calls started per second.
    #[arg(long, default_value_t = 5.0)]
    pub calls_per_second: f64,
    /// Stop after this many calls (default: run until interrupted).
    #[arg(long)]
    pub calls: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[arg(
        long,
        env = "LAD_JWT_SECRET",
        hide_env_values = true,
        default_value = ""
    )]
    pub jwt_secret: String,
    #[arg(long, default_value = crate::demo::DEMO_TENANT)]
    pub tenant: uuid::Uuid,
    #[arg(long, default_value = crate::demo::DEMO_USER)]
    pub user: uuid::Uuid,
    #[arg(long, default_value = "admin", value_parser = ["owner", "admin", "member", "viewer"])]
    pub role: String,
    /// Capability keys (repeat or comma-separate).
    #[arg(long = "cap", value_delimiter = ',')]
    pub caps: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub ttl: i64,
    /// Print the tenant id instead of a token (for scripts).
    #[arg(long)]
    pub print_tenant: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// WebSocket URL of the hub.
    #[arg(long, env = "LAD_WS_URL", default_value = "ws://127.0.0.1:8080/v1/ws")]
    pub url: String,
    #[arg(long, env = "LAD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Channels to subscribe to.
    #[arg(required = true)]
    pub channels: Vec<String>,
    /// Exit when the socket closes instead of reconnecting and resuming
    /// each channel from its last position.
    #[arg(long)]
    pub no_reconnect: bool,
}

/// The credentials in these are never shown: `DATABASE_URL` loses its password.
impl fmt::Debug for DbArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbArgs")
            .field("database_url", &RedactedUrl(&self.database_url))
            .field("db_pool_size", &self.db_pool_size)
            .finish()
    }
}

/// SASL and TLS properties (`sasl.password`, ...) are shown as `***`.
impl fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaArgs")
            .field("kafka_brokers", &self.kafka_brokers)
            .field("kafka_props", &RedactedProps(&self.kafka_props))
            .field(
                "kafka_consumer_props",
                &RedactedProps(&self.kafka_consumer_props),
            )
            .field(
                "kafka_producer_props",
                &RedactedProps(&self.kafka_producer_props),
            )
            .finish()
    }
}

/// How WebSocket tokens are verified. At least one of the HS256 secret and
/// a JWKS must be configured; both may be (development tokens next to the
/// identity provider's).
#[derive(Clone, Args)]
pub struct AuthArgs {
    /// HS256 secret of development and service tokens: at least 32 bytes, not a
    /// published default (`openssl rand -hex 32`).
    #[arg(long, env = "LAD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// URL of the identity provider's JWKS (RS256 and ES256 keys).
    #[arg(long, env = "LAD_JWKS_URL", conflicts_with = "jwks_file")]
    pub jwks_url: Option<String>,
    /// A JWKS file instead of a URL (re-read on refresh, so it can be rotated in place).
    #[arg(long, env = "LAD_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Age in seconds after which the JWKS is refreshed, in the background at
    /// the next token (a rotated-out key stops working about this long after).
    #[arg(long, env = "LAD_JWKS_REFRESH_SECS", default_value_t = 300)]
    pub jwks_refresh_secs: u64,
    /// Least seconds between two JWKS fetches, so tokens with forged `kid`s
    /// cannot hammer the identity provider.
    #[arg(long, env = "LAD_JWKS_MIN_REFRESH_SECS", default_value_t = 10)]
    pub jwks_min_refresh_secs: u64,
    /// Required `iss` claim of identity-provider tokens (unset: not checked).
    #[arg(long, env = "LAD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim of identity-provider tokens, one of these (unset: not checked).
    #[arg(long, env = "LAD_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,
    /// Longest accepted token lifetime in seconds (`exp - iat`, and `exp - now`).
    #[arg(long, env = "LAD_JWT_MAX_LIFETIME_SECS")]
    pub jwt_max_lifetime_secs: Option<u64>,
}

impl fmt::Debug for AuthArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthArgs")
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("jwks_url", &self.jwks_url.as_deref().map(RedactedUrl))
            .field("jwks_file", &self.jwks_file)
            .field("jwks_refresh_secs", &self.jwks_refresh_secs)
            .field("jwks_min_refresh_secs", &self.jwks_min_refresh_secs)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_max_lifetime_secs", &self.jwt_max_lifetime_secs)
            .finish()
    }
}

/// Caps that keep one client, user or tenant from exhausting a node. The
/// defaults are far above what a large tenant's dashboards use.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Open WebSockets per node; beyond it upgrades get 503.
    #[arg(long, env = "LAD_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,
    /// Open WebSockets per tenant on a node; beyond it upgrades get 429.
    #[arg(long, env = "LAD_MAX_CONNECTIONS_PER_TENANT", default_value_t = 20_000)]
    pub max_connections_per_tenant: usize,
    /// Open WebSockets per user (`sub`) on a node; beyond it upgrades get 429.
    #[arg(long, env = "LAD_MAX_CONNECTIONS_PER_USER", default_value_t = 64)]
    pub max_connections_per_user: usize,
    /// Subscribes per second a user's sockets on a node may sustain together
    /// (a token bucket); beyond it the subscribe gets an error frame with
    /// code `rate_limited`.
    #[arg(long, env = "LAD_SUBSCRIBE_RATE", default_value_t = 5.0)]
    pub subscribe_rate: f64,
    /// Subscribes a user's sockets may send at once (the bucket's size).
    #[arg(long, env = "LAD_SUBSCRIBE_BURST", default_value_t = 100)]
    pub subscribe_burst: u32,
    /// Client frames per second a socket may sustain; past its burst it is
    /// closed with 1008 (a client that ignores `rate_limited`).
    #[arg(long, env = "LAD_WS_FRAME_RATE", default_value_t = 20.0)]
    pub ws_frame_rate: f64,
    /// Client frames a socket may send at once.
    #[arg(long, env = "LAD_WS_FRAME_BURST", default_value_t = 200)]
    pub ws_frame_burst: u32,
    /// Connections of the snapshot pool: snapshot reads never use the
    /// pipelines' connections, and at most this many run at once.
    #[arg(long, env = "LAD_SNAPSHOT_POOL_SIZE", default_value_t = 2)]
    pub snapshot_pool_size: u32,
    /// `statement_timeout` of snapshot reads, in milliseconds.
    #[arg(long, env = "LAD_SNAPSHOT_TIMEOUT_MS", default_value_t = 2_000)]
    pub snapshot_timeout_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// The hub's listen address (`0.0.0.0`/`[::]` are probed on loopback).
    #[arg(long, env = "LAD_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}
