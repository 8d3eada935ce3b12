//! The WebSocket gateway against real Postgres and real sockets, without
//! Kafka: records are injected with `Gateway::dispatch`, exactly as the live
//! reader hands them over.

use futures_util::{SinkExt, StreamExt};
use lad_hub::auth::{mint, unix_now, Claims, Role};
use lad_hub::gateway::{Gateway, GatewayConfig};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SECRET: &str = "gateway-test-secret";
const WAIT: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Hub {
    gw: Gateway,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn hub(pool: PgPool, tune: impl FnOnce(&mut GatewayConfig)) -> Hub {
    let mut cfg = GatewayConfig::new(SECRET);
    tune(&mut cfg);
    let shutdown = CancellationToken::new();
    let gw = Gateway::new(pool, cfg, shutdown.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = gw.router();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .unwrap();
    });
    Hub { gw, addr, shutdown }
}

struct User {
    tenant_id: Uuid,
    user_id: Uuid,
    role: Role,
    caps: Vec<String>,
    exp: i64,
}

impl User {
    fn new(tenant_id: Uuid, role: Role) -> User {
        User {
            tenant_id,
            user_id: Uuid::new_v4(),
            role,
            caps: Vec::new(),
            exp: unix_now() + 600,
        }
    }

    fn token(&self) -> String {
        mint(
            SECRET,
            &Claims {
                sub: self.user_id,
                tenant_id: self.tenant_id,
                role: self.role,
                exp: self.exp,
                caps: self.caps.clone(),
            },
        )
    }
}

impl Hub {
    fn url(&self, token: Option<&str>) -> String {
        match token {
            Some(t) => format!("ws://{}/v1/ws?token={t}", self.addr),
            None => format!("ws://{}/v1/ws", self.addr),
        }
    }

    async fn connect(&self, user: &User) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(self.url(Some(&user.token())))
            .await
            .expect("upgrade");
        ws
    }

    /// The HTTP status and JSON body of a refused upgrade.
    async fn refused(&self, token: Option<&str>) -> (u16, Value) {
        match tokio_tungstenite::connect_async(self.url(token)).await {
            Err(tungstenite::Error::Http(resp)) => {
                let body = resp.body().clone().unwrap_or_default();
                (
                    resp.status().as_u16(),
                    serde_json::from_slice(&body).unwrap_or(Value::Null),
                )
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("upgrade accepted"),
        }
    }

    async fn wait_until(&self, what: &str, cond: impl Fn(&Gateway) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !cond(&self.gw) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

async fn next_message(ws: &mut Ws) -> Message {
    match tokio::time::timeout(WAIT, ws.next()).await {
        Ok(Some(Ok(m))) => m,
        Ok(other) => panic!("socket ended: {other:?}"),
        Err(_) => panic!("no frame within {WAIT:?}"),
    }
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        match next_message(ws).await {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The close code, skipping whatever was queued before the close.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match next_message(ws).await {
            Message::Close(Some(frame)) => return frame.code.into(),
            Message::Close(None) => panic!("closed without a code"),
            _ => continue,
        }
    }
}

/// Proves nothing is queued for this client: the next frame answers a ping.
async fn nothing_pending(ws: &mut Ws) {
    send(ws, json!({"op": "ping", "id": "probe"})).await;
    assert_eq!(recv(ws).await, json!({"op": "pong", "id": "probe"}));
}

async fn subscribe(ws: &mut Ws, id: u64, channel: &str) -> Value {
    send(ws, json!({"op": "subscribe", "id": id, "channel": channel})).await;
    recv(ws).await
}

fn live(id: &str, tenant_id: Uuid, channel: &str, kind: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "tenant_id": tenant_id, "channel": channel, "type": kind, "data": data,
        "committed_at": "2026-11-25T10:00:00Z",
    }))
    .unwrap()
}

async fn insert_tenant_and_user(pool: &PgPool, user: &User) {
    sqlx::query(
        "INSERT INTO tenants (id, name, slug) VALUES ($1, 'Tenant', $2) ON CONFLICT DO NOTHING",
    )
    .bind(user.tenant_id)
    .bind(format!("t-{}", user.tenant_id.simple()))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO users (id, email) VALUES ($1, $2)")
        .bind(user.user_id)
        .bind(format!("{}@example.com", user.user_id.simple()))
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrations = "./migrations")]
async fn a_missing_malformed_forged_or_expired_token_is_refused_with_401(pool: PgPool) {
    let hub = hub(pool, |_| {}).await;
    let mut user = User::new(Uuid::new_v4(), Role::Owner);

    let (status, body) = hub.refused(None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(hub.refused(Some("not-a-jwt")).await.0, 401);

    let forged = mint(
        "another-secret",
        &Claims {
            sub: user.user_id,
            tenant_id: user.tenant_id,
            role: Role::Owner,
            exp: unix_now() + 60,
            caps: Vec::new(),
        },
    );
    let (status, body) = hub.refused(Some(&forged)).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "invalid token signature");

    user.exp = unix_now() - 5;
    let (status, body) = hub.refused(Some(&user.token())).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("token expired"))
    );

    // The bearer header works as well as the query.
    user.exp = unix_now() + 60;
    let mut req = hub.url(None).into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", user.token()).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("bearer accepted");
    nothing_pending(&mut ws).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn the_calls_snapshot_shows_todays_stats_and_calls_in_progress_and_other_tenants_are_forbidden(
    pool: PgPool,
) {
    let hub = hub(pool.clone(), |_| {}).await;
    let user = User::new(Uuid::new_v4(), Role::Viewer);
    let (agent, call, ended) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    sqlx::query(
        "INSERT INTO voice_call_stats_daily (tenant_id, day, agent_id, calls_started, total_cost)
         VALUES ($1, (now() AT TIME ZONE 'utc')::date, $2, 3, 1.25),
                ($1, (now() AT TIME ZONE 'utc')::date - 1, $2, 9, 0)",
    )
    .bind(user.tenant_id)
    .bind(agent)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO voice_call_logs (id, tenant_id, agent_id, status, started_at, ended_at)
         VALUES ($1, $3, $4, 'in_progress', now(), NULL), ($2, $3, $4, 'completed', now(), now())",
    )
    .bind(call)
    .bind(ended)
    .bind(user.tenant_id)
    .bind(agent)
    .execute(&pool)
    .await
    .unwrap();

    let mut ws = hub.connect(&user).await;
    let channel = format!("tenant:{}:calls", user.tenant_id);
    let sub = subscribe(&mut ws, 1, &channel).await;
    assert_eq!(
        (sub["op"].as_str(), sub["id"].as_u64()),
        (Some("subscribed"), Some(1))
    );
    assert_eq!(sub["channel"], json!(channel));
    assert_eq!(sub["recovered"], json!(false));
    assert!(sub["position"].is_string());
    let stats = sub["snapshot"]["stats"].as_array().unwrap();
    assert_eq!(stats.len(), 1, "today only: {stats:?}");
    assert_eq!(
        (
            stats[0]["calls_started"].as_i64(),
            stats[0]["total_cost"].as_str()
        ),
        (Some(3), Some("1.250000"))
    );
    let in_progress = sub["snapshot"]["calls_in_progress"].as_array().unwrap();
    assert_eq!(in_progress.len(), 1);
    assert_eq!(in_progress[0]["id"], json!(call));

    let other = format!("tenant:{}:calls", Uuid::new_v4());
    let err = subscribe(&mut ws, 2, &other).await;
    assert_eq!(
        (err["op"].as_str(), err["id"].as_u64(), err["code"].as_str()),
        (Some("error"), Some(2), Some("forbidden"))
    );
    let err = subscribe(&mut ws, 3, "tenant:nope:calls").await;
    assert_eq!(err["code"], "unknown_channel");

    let transcript_call = format!("tenant:{}:call:{call}", user.tenant_id);
    sqlx::query(
        "INSERT INTO voice_call_transcripts (call_id, seq, tenant_id, speaker, text, occurred_at, event_id)
         VALUES ($1, 1, $2, 'lead', 'second', now(), gen_random_uuid()),
                ($1, 0, $2, 'agent', 'first', now(), gen_random_uuid())",
    )
    .bind(call)
    .bind(user.tenant_id)
    .execute(&pool)
    .await
    .unwrap();
    let sub = subscribe(&mut ws, 4, &transcript_call).await;
    assert_eq!(sub["snapshot"]["call"]["id"], json!(call));
    let lines: Vec<&str> = sub["snapshot"]["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert_eq!(lines, ["first", "second"]);

    let campaign = format!("tenant:{}:campaign:{}", user.tenant_id, Uuid::new_v4());
    let sub = subscribe(&mut ws, 5, &campaign).await;
    assert_eq!(sub["snapshot"], json!({"stats": []}));
}

#[sqlx::test(migrations = "./migrations")]
async fn billing_is_for_owners_admins_and_holders_of_billing_view(pool: PgPool) {
    let hub = hub(pool.clone(), |_| {}).await;
    let tenant = Uuid::new_v4();
    let channel = format!("tenant:{tenant}:billing");

    let viewer = User::new(tenant, Role::Viewer);
    insert_tenant_and_user(&pool, &viewer).await;
    let mut ws = hub.connect(&viewer).await;
    let err = subscribe(&mut ws, 1, &channel).await;
    assert_eq!(err["code"], "forbidden");

    sqlx::query("INSERT INTO user_capabilities (tenant_id, user_id, capability_key) VALUES ($1, $2, 'billing.view')")
        .bind(tenant)
        .bind(viewer.user_id)
        .execute(&pool)
        .await
        .unwrap();
    let sub = subscribe(&mut ws, 2, &channel).await;
    assert_eq!(sub["op"], "subscribed");
    assert_eq!(
        sub["snapshot"]["wallet"]["current_balance"], "0.000000",
        "no wallet yet: zero"
    );

    // A revoked grant no longer counts.
    sqlx::query("UPDATE user_capabilities SET deleted_at = now() WHERE user_id = $1")
        .bind(viewer.user_id)
        .execute(&pool)
        .await
        .unwrap();
    let mut again = hub.connect(&viewer).await;
    assert_eq!(
        subscribe(&mut again, 1, &channel).await["code"],
        "forbidden"
    );

    let mut with_cap = User::new(tenant, Role::Member);
    with_cap.caps = vec!["billing.view".into()];
    let mut ws = hub.connect(&with_cap).await;
    assert_eq!(subscribe(&mut ws, 1, &channel).await["op"], "subscribed");

    sqlx::query("INSERT INTO billing_wallets (tenant_id, current_balance) VALUES ($1, 12.5)")
        .bind(tenant)
        .execute(&pool)
        .await
        .unwrap();
    let admin = User::new(tenant, Role::Admin);
    let mut ws = hub.connect(&admin).await;
    let sub = subscribe(&mut ws, 1, &channel).await;
    assert_eq!(sub["snapshot"]["wallet"]["current_balance"], "12.500000");
    assert_eq!(sub["snapshot"]["wallet"]["currency"], "USD");

    let other_tenant = format!("tenant:{}:billing", Uuid::new_v4());
    assert_eq!(
        subscribe(&mut ws, 2, &other_tenant).await["code"],
        "forbidden"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn an_assistant_channel_is_open_to_its_user_only(pool: PgPool) {
    let hub = hub(pool, |_| {}).await;
    let owner = User::new(Uuid::new_v4(), Role::Owner);
    let mut ws = hub.connect(&owner).await;
    let someone_else = format!("tenant:{}:user:{}:ai", owner.tenant_id, Uuid::new_v4());
    assert_eq!(
        subscribe(&mut ws, 1, &someone_else).await["code"],
        "forbidden"
    );
    let own = format!("tenant:{}:user:{}:ai", owner.tenant_id, owner.user_id);
    let sub = subscribe(&mut ws, 2, &own).await;
    assert_eq!(sub["snapshot"], json!({"replies": []}));
}

#[sqlx::test(migrations = "./migrations")]
async fn malformed_frames_get_bad_request_and_the_socket_stays_open(pool: PgPool) {
    let hub = hub(pool, |_| {}).await;
    let user = User::new(Uuid::new_v4(), Role::Member);
    let mut ws = hub.connect(&user).await;
    for (frame, id) in [
        ("{not json", Value::Null),
        (r#"{"op":"subscribe","channel":"x"}"#, Value::Null),
        (r#"{"op":"dance","id":5}"#, json!(5)),
        (r#"{"op":"subscribe","id":6}"#, json!(6)),
    ] {
        ws.send(Message::text(frame)).await.unwrap();
        let err = recv(&mut ws).await;
        assert_eq!(
            (err["op"].as_str(), err["code"].as_str()),
            (Some("error"), Some("bad_request")),
            "{frame}"
        );
        assert_eq!(err["id"], id, "{frame}");
        assert!(err["message"].is_string());
    }
    ws.send(Message::binary(b"{}".to_vec())).await.unwrap();
    assert_eq!(recv(&mut ws).await["code"], "bad_request");
    send(&mut ws, json!({"op": "ping", "id": 3})).await;
    assert_eq!(recv(&mut ws).await, json!({"op": "pong", "id": 3}));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_record_reaches_its_channels_subscribers_and_no_other_tenant(pool: PgPool) {
    let hub = hub(pool, |_| {}).await;
    let (alice, bob) = (
        User::new(Uuid::new_v4(), Role::Member),
        User::new(Uuid::new_v4(), Role::Owner),
    );
    let a_calls = format!("tenant:{}:calls", alice.tenant_id);
    let b_calls = format!("tenant:{}:calls", bob.tenant_id);
    let mut a = hub.connect(&alice).await;
    let mut b = hub.connect(&bob).await;
    let position = subscribe(&mut a, 1, &a_calls).await["position"].clone();
    assert!(position.is_string());
    subscribe(&mut b, 1, &b_calls).await;

    let data = json!({"id": Uuid::new_v4(), "status": "in_progress"});
    hub.gw.dispatch(
        "0:10",
        &live(
            "1.0",
            alice.tenant_id,
            &a_calls,
            "call.updated",
            data.clone(),
        ),
    );
    let msg = recv(&mut a).await;
    assert_eq!(
        msg,
        json!({
            "op": "message", "id": "1.0", "tenant_id": alice.tenant_id, "channel": a_calls,
            "type": "call.updated", "position": "0:10", "data": data,
        })
    );
    nothing_pending(&mut b).await;

    // A record whose tenant does not own its channel goes nowhere.
    hub.gw.dispatch(
        "0:11",
        &live(
            "2.0",
            bob.tenant_id,
            &a_calls,
            "call.updated",
            json!({"leak": true}),
        ),
    );
    // A republished record (same relay id) is not delivered twice.
    hub.gw.dispatch(
        "0:12",
        &live(
            "1.0",
            alice.tenant_id,
            &a_calls,
            "call.updated",
            data.clone(),
        ),
    );
    nothing_pending(&mut a).await;
    nothing_pending(&mut b).await;

    // After unsubscribe nothing more comes.
    send(
        &mut a,
        json!({"op": "unsubscribe", "id": 2, "channel": a_calls}),
    )
    .await;
    assert_eq!(recv(&mut a).await["op"], "unsubscribed");
    hub.gw.dispatch(
        "0:13",
        &live("3.0", alice.tenant_id, &a_calls, "call.updated", json!({})),
    );
    nothing_pending(&mut a).await;
    send(
        &mut a,
        json!({"op": "unsubscribe", "id": 3, "channel": a_calls}),
    )
    .await;
    let err = recv(&mut a).await;
    assert_eq!(
        (err["id"].as_u64(), err["code"].as_str()),
        (Some(3), Some("not_subscribed"))
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_late_assistant_subscriber_gets_the_reply_so_far_then_the_rest_without_gaps_or_doubles(
    pool: PgPool,
) {
    let hub = hub(pool, |_| {}).await;
    let user = User::new(Uuid::new_v4(), Role::Member);
    let channel = format!("tenant:{}:user:{}:ai", user.tenant_id, user.user_id);
    let (conversation, message) = (Uuid::new_v4(), Uuid::new_v4());
    let mut offset = 100;
    let mut delta = |seq: u64| {
        offset += 1;
        let data = json!({
            "conversation_id": conversation, "message_id": message, "user_id": user.user_id,
            "seq": seq, "delta": format!("<{seq}>"),
        });
        let record = live(
            &format!("ai:{message}:{seq}"),
            user.tenant_id,
            &channel,
            "ai.reply.delta",
            data,
        );
        hub.gw.dispatch(&format!("0:{offset}"), &record);
    };
    // Out of order before anyone listens.
    delta(0);
    delta(2);
    delta(1);

    let mut ws = hub.connect(&user).await;
    let sub = subscribe(&mut ws, 1, &channel).await;
    let reply = &sub["snapshot"]["replies"][0];
    assert_eq!(reply["message_id"], json!(message));
    assert_eq!(
        (reply["next_seq"].as_u64(), reply["content"].as_str()),
        (Some(3), Some("<0><1><2>"))
    );

    // Out of order, with repeats, after subscribing.
    delta(4);
    delta(3);
    delta(3);
    delta(1);
    delta(5);
    let done = json!({
        "conversation_id": conversation, "message_id": message, "user_id": user.user_id,
        "content": "<0><1><2><3><4><5>", "tokens_used": 6,
    });
    hub.gw.dispatch(
        "0:200",
        &live("77.0", user.tenant_id, &channel, "ai.reply.completed", done),
    );
    delta(5);

    let mut seqs = Vec::new();
    loop {
        let m = recv(&mut ws).await;
        match m["type"].as_str() {
            Some("ai.reply.delta") => seqs.push(m["data"]["seq"].as_u64().unwrap()),
            Some("ai.reply.completed") => break,
            other => panic!("unexpected {other:?}: {m}"),
        }
    }
    assert_eq!(seqs, [3, 4, 5]);
    nothing_pending(&mut ws).await;

    // The reply ended: a new subscriber sees none in progress.
    let mut late = hub.connect(&user).await;
    assert_eq!(
        subscribe(&mut late, 1, &channel).await["snapshot"],
        json!({"replies": []})
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_reconnecting_client_recovers_what_it_missed_with_since(pool: PgPool) {
    let hub = hub(pool, |_| {}).await;
    let user = User::new(Uuid::new_v4(), Role::Member);
    let channel = format!("tenant:{}:campaign:{}", user.tenant_id, Uuid::new_v4());
    let record = |i: u32| {
        live(
            &format!("{i}.0"),
            user.tenant_id,
            &channel,
            "campaign.activity",
            json!({ "n": i }),
        )
    };

    let mut ws = hub.connect(&user).await;
    let first_position = subscribe(&mut ws, 1, &channel).await["position"]
        .as_str()
        .unwrap()
        .to_owned();
    hub.gw.dispatch("2:1", &record(1));
    let last_seen = recv(&mut ws).await["position"].as_str().unwrap().to_owned();
    assert_eq!(last_seen, "2:1");
    ws.close(None).await.unwrap();
    hub.wait_until("the socket to go", |g| g.connections() == 0)
        .await;

    hub.gw.dispatch("2:2", &record(2));
    hub.gw.dispatch("2:3", &record(3));

    let mut ws = hub.connect(&user).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "id": 2, "channel": channel, "since": last_seen}),
    )
    .await;
    let sub = recv(&mut ws).await;
    assert_eq!(
        (sub["op"].as_str(), sub["recovered"].as_bool()),
        (Some("subscribed"), Some(true))
    );
    assert_eq!(
        sub["position"],
        json!(last_seen),
        "the missed messages follow it"
    );
    assert_eq!(
        sub["snapshot"],
        json!({"stats": []}),
        "every subscribed has a snapshot"
    );
    let got: Vec<Value> = vec![recv(&mut ws).await, recv(&mut ws).await];
    let positions: Vec<&str> = got
        .iter()
        .map(|m| m["position"].as_str().unwrap())
        .collect();
    assert_eq!(positions, ["2:2", "2:3"]);
    assert_eq!(got[1]["data"], json!({"n": 3}));
    nothing_pending(&mut ws).await;

    // The position of the first `subscribed` (no message yet) recovers everything.
    let mut from_start = hub.connect(&user).await;
    send(
        &mut from_start,
        json!({"op": "subscribe", "id": 3, "channel": channel, "since": first_position}),
    )
    .await;
    assert_eq!(recv(&mut from_start).await["recovered"], json!(true));
    for want in ["2:1", "2:2", "2:3"] {
        assert_eq!(recv(&mut from_start).await["position"], want);
    }

    // A position the hub does not know: a fresh snapshot instead.
    let mut lost = hub.connect(&user).await;
    send(
        &mut lost,
        json!({"op": "subscribe", "id": 4, "channel": channel, "since": "9:999"}),
    )
    .await;
    let sub = recv(&mut lost).await;
    assert_eq!(
        (sub["recovered"].as_bool(), sub["position"].as_str()),
        (Some(false), Some("2:3"))
    );
    assert_eq!(sub["snapshot"], json!({"stats": []}));
    nothing_pending(&mut lost).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_client_that_cannot_keep_up_is_closed_with_4008_and_the_others_are_not(pool: PgPool) {
    let hub = hub(pool, |cfg| cfg.backlog_bytes = 4096).await;
    let user = User::new(Uuid::new_v4(), Role::Member);
    let busy = format!("tenant:{}:calls", user.tenant_id);
    let quiet = format!("tenant:{}:billing", user.tenant_id);
    let mut slow = hub.connect(&user).await;
    subscribe(&mut slow, 1, &busy).await;
    let mut bystander = hub.connect(&User::new(user.tenant_id, Role::Owner)).await;
    subscribe(&mut bystander, 1, &quiet).await;

    // The test's runtime has one thread: the sessions cannot drain while
    // this loop runs, so the slow client's backlog of events (records with
    // no entity key are never merged) passes its budget.
    for i in 0..100 {
        hub.gw.dispatch(
            &format!("0:{i}"),
            &live(
                &format!("{i}.0"),
                user.tenant_id,
                &busy,
                "call.updated",
                json!({}),
            ),
        );
    }
    assert_eq!(close_code(&mut slow).await, 4008);
    nothing_pending(&mut bystander).await;
    hub.wait_until("the slow socket to go", |g| g.connections() == 1)
        .await;
    assert_eq!(hub.gw.subscriptions(), 1);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_token_that_expires_closes_the_socket_with_4001(pool: PgPool) {
    let hub = hub(pool, |_| {}).await;
    let mut user = User::new(Uuid::new_v4(), Role::Member);
    user.exp = unix_now() + 2;
    let mut ws = hub.connect(&user).await;
    nothing_pending(&mut ws).await;
    assert_eq!(close_code(&mut ws).await, 4001);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_frame_over_64_kib_closes_with_1009(pool: PgPool) {
    let hub = hub(pool, |_| {}).await;
    let user = User::new(Uuid::new_v4(), Role::Member);
    let mut ws = hub.connect(&user).await;
    let big = format!(
        r#"{{"op":"ping","id":1,"pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    // The hub may close before the whole frame is written.
    let _ = ws.send(Message::text(big)).await;
    assert_eq!(close_code(&mut ws).await, 1009);
}

/// Fragments each under the frame limit whose message passes 64 KiB:
/// tungstenite reports them as it reports one big frame
/// (`CapacityError::MessageTooLong`, from joining the fragments), so they
/// close with 1009 too. Two ways a client sends them: 16 KiB fragments
/// written one by one, and 1 KiB fragments written at once (the hub
/// closes while most of them are still in flight).
#[sqlx::test(migrations = "./migrations")]
async fn a_text_message_over_64_kib_in_fragments_closes_with_1009(pool: PgPool) {
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::Frame;

    let hub = hub(pool, |_| {}).await;
    let user = User::new(Uuid::new_v4(), Role::Member);
    for (fragment, count, flush_each) in [(16 * 1024, 6, true), (1024, 256, false)] {
        let mut ws = hub.connect(&user).await;
        let piece = "x".repeat(fragment);
        for i in 0..count {
            let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
            let frame = Frame::message(piece.clone().into_bytes(), opcode, i == count - 1);
            // The hub may close before the last fragment is written.
            let written = if flush_each {
                ws.send(Message::Frame(frame)).await
            } else {
                ws.feed(Message::Frame(frame)).await
            };
            if written.is_err() {
                break;
            }
        }
        let _ = ws.flush().await;
        assert_eq!(
            close_code(&mut ws).await,
            1009,
            "{count} fragments of {fragment} bytes"
        );
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn closed_sockets_leave_no_subscriptions_and_shutdown_closes_with_1001(pool: PgPool) {
    let hub = hub(pool, |_| {}).await;
    let user = User::new(Uuid::new_v4(), Role::Member);
    let mut sockets = Vec::new();
    for _ in 0..5 {
        let mut ws = hub.connect(&user).await;
        subscribe(&mut ws, 1, &format!("tenant:{}:calls", user.tenant_id)).await;
        subscribe(
            &mut ws,
            2,
            &format!("tenant:{}:call:{}", user.tenant_id, Uuid::new_v4()),
        )
        .await;
        sockets.push(ws);
    }
    assert_eq!((hub.gw.connections(), hub.gw.subscriptions()), (5, 10));
    for mut ws in sockets.drain(..3) {
        ws.close(None).await.unwrap();
    }
    // One simply vanishes without a close frame.
    drop(sockets.pop());
    hub.wait_until("closed sockets to be forgotten", |g| {
        g.connections() == 1 && g.subscriptions() == 2
    })
    .await;

    let mut last = sockets.pop().unwrap();
    hub.shutdown.cancel();
    assert_eq!(close_code(&mut last).await, 1001);
    hub.wait_until("the last socket to go", |g| {
        g.connections() == 0 && g.subscriptions() == 0
    })
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn the_live_reader_feeds_the_sockets_from_the_high_watermark_on(pool: PgPool) {
    use lad_consumers::kafka::{ensure_topics, KafkaSettings};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let hub = hub(pool, |_| {}).await;
    let kafka = KafkaSettings {
        brokers: std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        ..KafkaSettings::default()
    };
    let topic = format!("t{}.live", Uuid::new_v4().simple());
    ensure_topics(&kafka, &[&topic], 2, 1).await.unwrap();
    let producer: FutureProducer = kafka.producer_config().create().unwrap();
    let user = User::new(Uuid::new_v4(), Role::Member);
    let channel = format!("tenant:{}:calls", user.tenant_id);
    let key = user.tenant_id.to_string();
    let produce = |i: u32| {
        let value = live(
            &format!("{i}.0"),
            user.tenant_id,
            &channel,
            "call.updated",
            json!({ "n": i }),
        );
        let producer = producer.clone();
        let (topic, key) = (topic.clone(), key.clone());
        async move {
            let record = FutureRecord::to(&topic).key(&key).payload(&value);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .expect("produced");
        }
    };

    let mut ws = hub.connect(&user).await;
    subscribe(&mut ws, 1, &channel).await;
    // Produced before the reader starts: history, which the snapshot covers.
    produce(0).await;

    let stop = CancellationToken::new();
    let reader = {
        let (gw, kafka, topic, stop) = (hub.gw.clone(), kafka.clone(), topic.clone(), stop.clone());
        tokio::spawn(async move { gw.run_live_reader(&kafka, &topic, stop).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !hub.gw.is_ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "live reader never ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for i in 1..=3 {
        produce(i).await;
    }
    let mut offsets = Vec::new();
    let mut partitions = Vec::new();
    for want in 1..=3 {
        let m = recv(&mut ws).await;
        assert_eq!(m["data"]["n"], want, "{m}");
        let (p, o) = m["position"].as_str().unwrap().split_once(':').unwrap();
        partitions.push(p.parse::<i32>().unwrap());
        offsets.push(o.parse::<i64>().unwrap());
    }
    assert!(
        partitions.iter().all(|p| *p == partitions[0]),
        "one tenant, one partition"
    );
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    nothing_pending(&mut ws).await;

    stop.cancel();
    reader.await.unwrap().unwrap();
    assert!(!hub.gw.is_ready());
}
