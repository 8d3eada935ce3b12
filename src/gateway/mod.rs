//! `GET /v1/ws`: tenant-scoped live channels over WebSocket (contract §7).
//!
//! `lad.live.v1` → [`live_reader`] → [`Gateway::dispatch`] → the
//! [`registry::ChannelRegistry`] → each subscriber's bounded queue → its
//! [`session`] → the socket. Assistant deltas consumed by this same process
//! skip the topic: the pipeline hands them over in-process
//! ([`Gateway::local_handoff`]) and the reader drops them when they come back.
//!
//! - [`protocol`]: client and server frames (pure).
//! - [`authz`]: who may subscribe to what (pure, plus one capability query).
//! - [`registry`]: channels, subscribers, ring buffers for `since`, dedupe.
//! - [`delivery`]: each socket's queue: state conflated, events bounded in
//!   bytes (pure).
//! - [`replay`]: `since` recovered from `lad.live.v1` when the ring no
//!   longer covers it (across restarts and nodes).
//! - [`replies`]: streamed assistant replies put back in `seq` order (pure).
//! - [`dedupe`]: repeated relay records (pure).
//! - [`limits`]: connection caps and the subscribe rate limit.
//! - [`snapshot`]: each channel's current state from Postgres.
//! - [`session`]: one task per socket: writes, heartbeats, closes.
//! - [`live_reader`]: the Kafka side.

pub mod authz;
pub mod dedupe;
pub mod delivery;
pub mod limits;
pub mod live_reader;
pub mod protocol;
pub mod registry;
pub mod replay;
pub mod replies;
pub mod session;
pub mod snapshot;

use crate::auth::{self, AuthError, Verifier};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lad_consumers::kafka::KafkaSettings;
use lad_consumers::live::{Channel, LiveHead, LiveRecord, LocalGateway, LocalHandoff};
use registry::ChannelRegistry;
use replay::{LogReplay, ReplayLimits, TopicPosition};
use serde_json::json;
use sqlx::PgPool;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The socket's read buffer. Client frames are small requests; a bigger
/// frame grows the buffer only while it is being read.
const READ_BUFFER_BYTES: usize = 2 * 1024;
/// Outgoing frames are gathered up to this before a write; it bounds what a
/// socket keeps allocated after a burst.
const WRITE_BUFFER_BYTES: usize = 4 * 1024;
const SWEEP_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct GatewayConfig {
    pub jwt_secret: String,
    /// Bytes of unmergeable frames (events, replies) a socket may have
    /// waiting; one more closes it with 4008. State messages are conflated
    /// instead (one waiting per entity), so they never count.
    pub backlog_bytes: usize,
    /// A socket that accepts no write for this long while frames wait is
    /// closed with 4008: it stopped reading.
    pub stall_timeout: Duration,
    /// How often the hub pings each socket.
    pub ping_interval: Duration,
    /// A socket silent (no pong, no frame) for a ping interval plus this is
    /// closed with 4009: the peer is gone.
    pub pong_timeout: Duration,
    /// Messages kept per channel for `since` recovery from memory.
    pub ring_capacity: usize,
    /// How far back `since` is recovered from `lad.live.v1`.
    pub replay: ReplayLimits,
    /// Largest client frame; bigger closes with 1009.
    pub max_frame_bytes: usize,
    /// Token verification beyond HS256 with `jwt_secret` (a JWKS, `iss`,
    /// `aud`, lifetime); `None`: HS256 with `jwt_secret` only.
    pub verifier: Option<Verifier>,
    pub limits: limits::LimitConfig,
}

impl GatewayConfig {
    pub const DEFAULT_BACKLOG_BYTES: usize = 4 * 1024 * 1024;
    pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
    pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(20);
    pub const DEFAULT_RING_CAPACITY: usize = 256;
    pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;

    pub fn new(jwt_secret: impl Into<String>) -> GatewayConfig {
        GatewayConfig {
            jwt_secret: jwt_secret.into(),
            backlog_bytes: Self::DEFAULT_BACKLOG_BYTES,
            stall_timeout: Self::DEFAULT_STALL_TIMEOUT,
            ping_interval: Self::DEFAULT_PING_INTERVAL,
            pong_timeout: Self::DEFAULT_PONG_TIMEOUT,
            ring_capacity: Self::DEFAULT_RING_CAPACITY,
            replay: ReplayLimits::default(),
            max_frame_bytes: Self::DEFAULT_MAX_FRAME_BYTES,
            verifier: None,
            limits: limits::LimitConfig::default(),
        }
    }
}

/// The defaults with an empty secret: the caller must set `jwt_secret`.
impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig::new(String::new())
    }
}

impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("jwt_secret", &"[redacted]")
            .field("backlog_bytes", &self.backlog_bytes)
            .field("stall_timeout", &self.stall_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("pong_timeout", &self.pong_timeout)
            .field("ring_capacity", &self.ring_capacity)
            .field("replay", &self.replay)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    snapshots: snapshot::SnapshotReads,
    cfg: GatewayConfig,
    verifier: Verifier,
    limiter: limits::ConnectionLimiter,
    registry: ChannelRegistry,
    /// Set once the live reader runs (a gateway fed by hand, in tests, has
    /// no log to read back).
    replay: OnceLock<LogReplay>,
    shutdown: CancellationToken,
    ready: AtomicBool,
    connections: AtomicUsize,
    next_conn_id: AtomicU64,
    /// Stamped on the records this process's pipelines hand over in-process.
    origin: String,
}

/// Where a live record reached this gateway from.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    /// Read from `lad.live.v1` at `"{partition}:{offset}"`.
    Topic(&'a str, TopicPosition),
    /// Handed over by a pipeline of this process.
    Local,
}

impl<'a> Source<'a> {
    /// Where in `lad.live.v1` the record was read; none for one handed over.
    fn read_at(self) -> Option<&'a str> {
        match self {
            Source::Topic(position, _) => Some(position),
            Source::Local => None,
        }
    }

    fn topic_position(self) -> Option<TopicPosition> {
        match self {
            Source::Topic(_, at) => Some(at),
            Source::Local => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Source::Topic(..) => "topic",
            Source::Local => "local",
        }
    }
}

impl Gateway {
    /// Also starts the sweeper of idle channels when called inside a Tokio
    /// runtime; it stops with `shutdown` or when the gateway is dropped.
    pub fn new(pool: PgPool, cfg: GatewayConfig, shutdown: CancellationToken) -> Gateway {
        let inner = Arc::new(Inner {
            snapshots: snapshot::SnapshotReads::new(pool.clone()),
            pool,
            verifier: cfg
                .verifier
                .clone()
                .unwrap_or_else(|| Verifier::new(&cfg.jwt_secret)),
            limiter: limits::ConnectionLimiter::new(cfg.limits),
            registry: ChannelRegistry::new(cfg.ring_capacity),
            replay: OnceLock::new(),
            cfg,
            shutdown: shutdown.clone(),
            ready: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            next_conn_id: AtomicU64::new(1),
            origin: Uuid::new_v4().simple().to_string(),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweep_idle_channels(Arc::downgrade(&inner), shutdown));
        }
        Gateway { inner }
    }

    /// `GET /v1/ws` only.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/ws", get(upgrade))
            .with_state(self.clone())
    }

    /// Reads `lad.live.v1` into the sockets until `shutdown`, and serves
    /// `since` recovery from it meanwhile.
    pub async fn run_live_reader(
        &self,
        kafka: &KafkaSettings,
        live_topic: &str,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let replay = LogReplay::start(kafka, live_topic, self.inner.cfg.replay, shutdown.clone())?;
        let _ = self.inner.replay.set(replay);
        live_reader::run(self, kafka, live_topic, shutdown).await
    }

    /// True once the live reader has its partitions: from then on every
    /// record produced to the live topic reaches the sockets.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Routes one record read from `lad.live.v1` at `position`
    /// (`"{partition}:{offset}"`). Records of one partition must come in
    /// offset order, as the live reader reads them.
    pub fn dispatch(&self, position: &str, record_value: &[u8]) {
        let Some(at) = TopicPosition::parse(position) else {
            tracing::warn!(%position, "live record at a position that is not partition:offset dropped");
            registry::dropped("malformed");
            return;
        };
        // Before routing: see `ChannelRegistry::note_read`.
        self.inner.registry.note_read(at);
        self.route(Source::Topic(position, at), record_value);
    }

    /// What a pipeline of this process needs to hand its ephemeral records
    /// straight to this gateway.
    pub fn local_handoff(&self) -> LocalHandoff {
        LocalHandoff {
            origin: self.inner.origin.clone(),
            gateway: Arc::new(self.clone()),
        }
    }

    fn route(&self, source: Source<'_>, record_value: &[u8]) {
        metrics::counter!("lad_live_records_total", "source" => source.label()).increment(1);
        if let Source::Topic(_, at) = source {
            if self.passes_over(at, record_value) {
                return;
            }
        }
        let shown = source.read_at().unwrap_or("in-process");
        let rec = match LiveRecord::parse(record_value) {
            Ok(rec) => rec,
            Err(e) => {
                tracing::warn!(error = %e, position = %shown, "unreadable live record dropped");
                registry::dropped("malformed");
                return;
            }
        };
        if source.read_at().is_some() && rec.origin.as_deref() == Some(self.inner.origin.as_str()) {
            // Delivered in-process already, when it was consumed.
            return;
        }
        let Some(position) = rec.position(source.read_at()) else {
            tracing::warn!(position = %shown, "in-process live record without an id dropped");
            registry::dropped("malformed");
            return;
        };
        let Ok(channel) = rec.channel.parse::<Channel>() else {
            tracing::warn!(channel = %rec.channel, %position, "live record for an unknown channel dropped");
            registry::dropped("unknown_channel");
            return;
        };
        // The channel name and the record's tenant must agree, or a bug
        // upstream could route one tenant's data to another's sockets.
        if channel.tenant_id() != rec.tenant_id {
            tracing::error!(channel = %rec.channel, tenant_id = %rec.tenant_id, %position,
                "live record whose tenant does not own its channel dropped");
            registry::dropped("tenant_mismatch");
            return;
        }
        let delivered =
            self.inner
                .registry
                .dispatch(position, source.topic_position(), &rec, channel);
        if delivered > 0 {
            metrics::counter!("lad_ws_deliveries_total").increment(delivered as u64);
            if let Some(committed_at) = rec.committed_at {
                // The hub's SLO.
                let secs = (chrono::Utc::now() - committed_at)
                    .num_microseconds()
                    .unwrap_or(0);
                // One sample per message, not per socket: a sample per
                // delivery costs the fan-out path (10,000 sockets) a store
                // each, for the same latency.
                metrics::histogram!(lad_consumers::metrics::COMMIT_TO_SOCKET_SECONDS)
                    .record(secs.max(0) as f64 / 1e6);
            }
        }
    }

    /// True for a record read from the topic that needs no more than its
    /// head: one this process delivered in-process already, or one for a
    /// channel nobody here listens to. Anything the head cannot settle (a
    /// record in another layout, a channel or tenant that does not check
    /// out) is left to the full parse, which reports it.
    fn passes_over(&self, at: TopicPosition, record_value: &[u8]) -> bool {
        let Some(head) = LiveHead::peek(record_value) else {
            return false;
        };
        if head.origin == Some(self.inner.origin.as_str()) {
            return true;
        }
        let (Some(Ok(channel)), Some(Ok(tenant))) = (
            head.channel.map(str::parse::<Channel>),
            head.tenant_id.map(str::parse::<Uuid>),
        ) else {
            return false;
        };
        channel.tenant_id() == tenant && self.registry().pass_unwatched(at, head.id, &channel)
    }

    /// Open WebSocket sessions.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Acquire)
    }

    /// Subscriptions held by open sockets (for leak checks).
    pub fn subscriptions(&self) -> usize {
        self.inner.registry.subscription_count()
    }

    /// Channels with state in memory: subscribed, recently subscribed
    /// (kept for `since`), or with an assistant reply in progress.
    pub fn channels(&self) -> usize {
        self.inner.registry.channel_count()
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.inner.cfg
    }

    fn registry(&self) -> &ChannelRegistry {
        &self.inner.registry
    }

    fn log_replay(&self) -> Option<&LogReplay> {
        self.inner.replay.get()
    }

    fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    fn snapshots(&self) -> &snapshot::SnapshotReads {
        &self.inner.snapshots
    }

    fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Release);
    }

    /// Returns the new connection's id.
    fn connection_opened(&self) -> u64 {
        let open = self.inner.connections.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::gauge!("lad_ws_connections").set(open as f64);
        self.inner.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    fn connection_closed(&self) {
        let open = self.inner.connections.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!("lad_ws_connections").set(open as f64);
    }
}

impl LocalGateway for Gateway {
    fn deliver(&self, record: &[u8]) {
        self.route(Source::Local, record);
    }
}

async fn upgrade(
    State(gw): State<Gateway>,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let claims = match auth::token_from_request(&uri, &headers).ok_or(AuthError::Missing) {
        Ok(token) => gw.inner.verifier.verify(&token).await,
        Err(e) => Err(e),
    };
    let claims = match claims {
        Ok(claims) => claims,
        Err(e) => {
            metrics::counter!("lad_ws_refused_total", "reason" => "unauthorized").increment(1);
            metrics::counter!(lad_consumers::metrics::AUTH_FAILURES, "reason" => auth_failure_reason(&e))
                .increment(1);
            let body = Json(json!({ "error": "unauthorized", "message": e.to_string() }));
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                body,
            )
                .into_response();
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    if gw.inner.shutdown.is_cancelled() {
        let body = Json(json!({ "error": "unavailable", "message": "hub shutting down" }));
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    let permit = match gw.inner.limiter.admit(claims.tenant_id, claims.sub) {
        Ok(permit) => permit,
        Err(exceeded) => return exceeded.into_response(),
    };
    let max = gw.inner.cfg.max_frame_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            // Held for the session's life; an upgrade that never completes
            // drops it with this closure.
            let _permit = permit;
            session::serve(gw, claims, socket).await
        })
}

/// The `reason` label of an authentication failure.
fn auth_failure_reason(e: &AuthError) -> &'static str {
    match e {
        AuthError::Missing => "missing",
        AuthError::Malformed => "malformed",
        AuthError::Forged => "forged",
        AuthError::WrongAlgorithm => "wrong_algorithm",
        AuthError::UnknownKey => "unknown_key",
        AuthError::Expired => "expired",
        AuthError::WrongIssuer => "wrong_issuer",
        AuthError::WrongAudience => "wrong_audience",
        AuthError::LifetimeTooLong => "lifetime_too_long",
    }
}

/// Per `lad.live.v1` partition, the offset of the last record this node
/// started dispatching (for the live reader's lag).
impl Gateway {
    pub fn live_read_positions(&self) -> Vec<(i32, i64)> {
        self.inner.registry.read_positions()
    }
}

async fn sweep_idle_channels(inner: Weak<Inner>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        inner.registry.sweep(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry::{Conn, Subscription};
    use sqlx::postgres::PgPoolOptions;

    fn gateway() -> Gateway {
        // Never connected: assistant channels are answered from memory.
        let pool = PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("lazy pool");
        Gateway::new(pool, GatewayConfig::new("secret"), CancellationToken::new())
    }

    fn delta(channel: &Channel, user: Uuid, message: Uuid, seq: u64, origin: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": format!("ai:{message}:{seq}"), "origin": origin,
            "tenant_id": channel.tenant_id(), "channel": channel.to_string(),
            "type": "ai.reply.delta",
            "data": {"conversation_id": message, "message_id": message, "user_id": user,
                     "seq": seq, "delta": format!("w{seq} ")},
        }))
        .unwrap()
    }

    /// A subscriber of a user's assistant channel, its `subscribed` frame
    /// taken; also the user and a reply's message id.
    fn subscribed_to_a_reply(gw: &Gateway) -> (Channel, Uuid, Uuid, Arc<Conn>) {
        let (tenant_id, user_id, message) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let channel = Channel::UserAi { tenant_id, user_id };
        let conn = Conn::new(1, 1 << 16);
        let name = channel.to_string();
        let sub = gw
            .registry()
            .subscribe(&conn, channel, &name, &json!(1), None);
        assert_eq!(sub, Subscription::Live);
        let head = &frames(&conn)[0];
        assert_eq!(head["op"], "subscribed");
        (channel, user_id, message, conn)
    }

    fn frames(conn: &Conn) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        conn.take(usize::MAX, &mut out);
        out.iter()
            .map(|f| serde_json::from_str(f.as_str()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn deltas_handed_over_in_process_are_not_delivered_again_from_the_topic() {
        let gw = gateway();
        let (channel, user_id, message, conn) = subscribed_to_a_reply(&gw);

        let local = gw.local_handoff();
        local
            .gateway
            .deliver(&delta(&channel, user_id, message, 0, &local.origin));
        // The same record read back from lad.live.v1, then one that another
        // node consumed (its origin is not ours).
        gw.dispatch("0:7", &delta(&channel, user_id, message, 0, &local.origin));
        gw.dispatch("0:8", &delta(&channel, user_id, message, 1, "another-node"));

        let frames = frames(&conn);
        let got: Vec<(u64, &str)> = frames
            .iter()
            .map(|f| {
                (
                    f["data"]["seq"].as_u64().unwrap(),
                    f["position"].as_str().unwrap(),
                )
            })
            .collect();
        let at = |seq: u64| format!("ai:{message}:{seq}");
        assert_eq!(got, vec![(0, at(0).as_str()), (1, at(1).as_str())]);
    }

    #[tokio::test]
    async fn a_record_nobody_listens_to_is_passed_over_and_its_republish_still_known() {
        let gw = gateway();
        let channel = Channel::Calls {
            tenant_id: Uuid::new_v4(),
        };
        let record = |id: &str, n: u32| {
            let u = lad_consumers::live::LiveUpdate::new(
                channel,
                "call.updated",
                json!({"id": format!("c{n}"), "n": n}),
            );
            lad_consumers::outbox::with_id(&LiveRecord::committed(&u, chrono::Utc::now()), id)
        };
        gw.dispatch("0:1", &record("7.0", 1));
        assert_eq!(gw.channels(), 0, "no state for a channel nobody listens to");

        let conn = Conn::new(1, 1 << 16);
        let name = channel.to_string();
        let registry::Subscription::NeedsSnapshot(resume) =
            gw.registry()
                .subscribe(&conn, channel, &name, &json!(1), None)
        else {
            panic!("a calls channel needs its snapshot");
        };
        gw.registry()
            .complete(&conn, &channel, &json!({}), &resume, None);
        // The relay publishes row 7 again (a crash before it deleted it),
        // then the next row.
        gw.dispatch("0:2", &record("7.0", 1));
        gw.dispatch("0:3", &record("8.0", 2));
        let frames = frames(&conn);
        assert_eq!(frames[0]["op"], "subscribed");
        let got: Vec<_> = frames[1..]
            .iter()
            .map(|f| {
                (
                    f["position"].as_str().unwrap(),
                    f["data"]["n"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, vec![("0:3", 2)], "only the new row is delivered");
    }

    #[tokio::test]
    async fn in_process_records_must_carry_their_tenant_and_an_id() {
        let gw = gateway();
        let (channel, user_id, message, conn) = subscribed_to_a_reply(&gw);

        let mut foreign: serde_json::Value =
            serde_json::from_slice(&delta(&channel, user_id, message, 0, "n")).unwrap();
        foreign["tenant_id"] = json!(Uuid::new_v4());
        gw.deliver(&serde_json::to_vec(&foreign).unwrap());
        let mut anonymous: serde_json::Value =
            serde_json::from_slice(&delta(&channel, user_id, message, 0, "n")).unwrap();
        anonymous.as_object_mut().unwrap().remove("id");
        gw.deliver(&serde_json::to_vec(&anonymous).unwrap());
        gw.deliver(b"not json");
        assert!(frames(&conn).is_empty(), "nothing delivered");
    }
}
