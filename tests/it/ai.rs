//! Assistant replies and live transcripts end to end: broker → hub process →
//! WebSocket (and Postgres for what is stored).

use crate::support::*;
use chrono::Utc;
use lad_hub::demo::Event;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

struct Reply {
    tenant: Uuid,
    user: Uuid,
    conversation: Uuid,
    message: Uuid,
}

impl Reply {
    /// A reply of a new conversation of a new user of a new tenant.
    fn new() -> Reply {
        Reply {
            tenant: Uuid::new_v4(),
            user: Uuid::new_v4(),
            conversation: Uuid::new_v4(),
            message: Uuid::new_v4(),
        }
    }

    fn delta(&self, seq: usize) -> Event {
        Event::new(
            self.conversation,
            "ai.reply.delta",
            self.tenant,
            Utc::now(),
            json!({"conversation_id": self.conversation, "message_id": self.message,
                   "user_id": self.user, "seq": seq, "delta": format!("w{seq} ")}),
        )
    }

    fn completed(&self, content: &str) -> Event {
        Event::new(
            self.conversation,
            "ai.reply.completed",
            self.tenant,
            Utc::now(),
            json!({"conversation_id": self.conversation, "message_id": self.message,
                   "user_id": self.user, "content": content, "tokens_used": 42, "model": "gpt-4o"}),
        )
    }
}

fn text(from: usize, to: usize) -> String {
    (from..to).map(|s| format!("w{s} ")).collect()
}

fn delta_seqs(msgs: &[Value]) -> Vec<u64> {
    msgs.iter()
        .filter(|m| m["type"] == "ai.reply.delta")
        .map(|m| m["data"]["seq"].as_u64().expect("seq"))
        .collect()
}

#[sqlx::test(migrations = "./migrations")]
async fn a_streamed_reply_arrives_in_order_and_a_late_subscriber_misses_nothing(pool: PgPool) {
    let topics = Topics::new();
    let hub = Hub::start(&pool, &topics, HubOptions::default()).await;
    let reply = Reply::new();
    let channel = format!("tenant:{}:user:{}:ai", reply.tenant, reply.user);
    let url = hub.ws_url(&token(reply.tenant, reply.user, "member", &[]));
    let mut early = Client::connect(&url).await;
    assert_eq!(early.subscribe(&channel).await["op"], "subscribed");
    let mut colleague =
        Client::connect(&hub.ws_url(&token(reply.tenant, Uuid::new_v4(), "admin", &[]))).await;
    assert_eq!(colleague.subscribe(&channel).await["code"], "forbidden");

    // The first half, shuffled within one produce (one partition, one batch).
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut first: Vec<Event> = (0..10).map(|s| reply.delta(s)).collect();
    first.shuffle(&mut rng);
    first.push(reply.delta(3)); // a redelivered delta
    let producer = producer(false);
    produce(&producer, &topics.ai(), &first).await;
    let got = early
        .messages_until(30, |m| delta_seqs(m).len() >= 10)
        .await;
    assert_eq!(delta_seqs(&got), (0..10).collect::<Vec<_>>());

    // A second tab opens mid-reply: the snapshot holds the text so far.
    let mut late = Client::connect(&url).await;
    let sub = late.subscribe(&channel).await;
    assert_eq!(sub["op"], "subscribed", "{sub}");
    let replies = sub["snapshot"]["replies"]
        .as_array()
        .expect("replies in snapshot");
    assert_eq!(replies.len(), 1, "{sub}");
    assert_eq!(replies[0]["content"], text(0, 10));
    assert_eq!(replies[0]["message_id"], json!(reply.message));

    let mut second: Vec<Event> = (10..20).map(|s| reply.delta(s)).collect();
    second.shuffle(&mut rng);
    second.push(reply.completed(&text(0, 20)));
    produce(&producer, &topics.ai(), &second).await;

    let done = |m: &[Value]| m.iter().any(|x| x["type"] == "ai.reply.completed");
    let rest = late.messages_until(30, done).await;
    assert_eq!(
        delta_seqs(&rest),
        (10..20).collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    let all = early.messages_until(30, done).await;
    assert_eq!(delta_seqs(&all), (10..20).collect::<Vec<_>>());
    let completed = all
        .iter()
        .find(|m| m["type"] == "ai.reply.completed")
        .unwrap();
    assert_eq!(completed["data"]["content"], text(0, 20));
    assert!(colleague.next_frame(1).await.is_none());

    let stored: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT role, content, tokens_used FROM ai_messages WHERE id = $1")
            .bind(reply.message)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(stored, vec![("assistant".to_owned(), text(0, 20), 42)]);
    let (messages, moved): (i32, bool) = sqlx::query_as(
        "SELECT message_count, updated_at >= created_at FROM ai_conversations WHERE id = $1",
    )
    .bind(reply.conversation)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((messages, moved), (1, true));
    let rows = count(&pool, "SELECT count(*) FROM ai_messages").await;
    assert_eq!(rows, 1, "deltas are pushed, never stored");
}

/// The node that consumes a reply hands its deltas to its own sockets
/// in-process; a gateway-only node gets them from `lad.live.v1`. Both must
/// see every delta once, in order, at the same positions.
#[sqlx::test(migrations = "./migrations")]
async fn a_reply_streams_to_the_consuming_node_and_to_a_gateway_only_node_alike(pool: PgPool) {
    let topics = Topics::new();
    let consuming = Hub::start(&pool, &topics, HubOptions::default()).await;
    let gateway_only = HubOptions {
        extra_env: vec![("LAD_ROLE".into(), "gateway".into())],
        ..HubOptions::default()
    };
    let serving = Hub::start(&pool, &topics, gateway_only).await;
    let reply = Reply::new();
    let channel = format!("tenant:{}:user:{}:ai", reply.tenant, reply.user);
    let tok = token(reply.tenant, reply.user, "member", &[]);
    let mut here = Client::connect(&consuming.ws_url(&tok)).await;
    let mut there = Client::connect(&serving.ws_url(&tok)).await;
    assert_eq!(here.subscribe(&channel).await["op"], "subscribed");
    assert_eq!(there.subscribe(&channel).await["op"], "subscribed");

    let mut events: Vec<Event> = (0..15).map(|s| reply.delta(s)).collect();
    events.shuffle(&mut rand::rngs::StdRng::seed_from_u64(11));
    events.push(reply.delta(4)); // redelivered
    events.push(reply.completed(&text(0, 15)));
    produce(&producer(false), &topics.ai(), &events).await;

    let done = |m: &[Value]| m.iter().any(|x| x["type"] == "ai.reply.completed");
    let at_positions = |msgs: &[Value]| -> Vec<(u64, String)> {
        msgs.iter()
            .filter(|m| m["type"] == "ai.reply.delta")
            .map(|m| {
                let seq = m["data"]["seq"].as_u64().expect("seq");
                (seq, m["position"].as_str().expect("position").to_owned())
            })
            .collect()
    };
    let local = at_positions(&here.messages_until(30, done).await);
    let remote = at_positions(&there.messages_until(30, done).await);
    let expected: Vec<(u64, String)> = (0..15)
        .map(|s| (s, format!("ai:{}:{s}", reply.message)))
        .collect();
    assert_eq!(local, expected, "consuming node: each delta once, in order");
    assert_eq!(remote, expected, "gateway-only node: the same stream");
    assert!(here.next_frame(1).await.is_none(), "nothing doubled later");

    // The consuming node really took the short way for its own sockets.
    let (status, metrics) = lad_hub::http::fetch(consuming.addr, "/metrics")
        .await
        .expect("metrics");
    assert_eq!(status, 200);
    let handed_over: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"lad_live_records_total{source="local"} "#))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        handed_over >= 15.0,
        "deltas handed over in-process: {handed_over}"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn transcript_lines_are_pushed_on_the_call_channel_in_seq_order(pool: PgPool) {
    let topics = Topics::new();
    let hub = Hub::start(&pool, &topics, HubOptions::default()).await;
    let (tenant, call) = (Uuid::new_v4(), Uuid::new_v4());
    let channel = format!("tenant:{tenant}:call:{call}");
    let mut client =
        Client::connect(&hub.ws_url(&token(tenant, Uuid::new_v4(), "viewer", &[]))).await;
    assert_eq!(client.subscribe(&channel).await["op"], "subscribed");
    let mut other =
        Client::connect(&hub.ws_url(&token(Uuid::new_v4(), Uuid::new_v4(), "owner", &[]))).await;
    assert_eq!(other.subscribe(&channel).await["code"], "forbidden");

    let line = |seq: usize| {
        Event::new(
            call,
            "call.transcript",
            tenant,
            Utc::now(),
            json!({"call_id": call, "seq": seq, "speaker": if seq.is_multiple_of(2) { "agent" } else { "lead" },
                   "text": format!("line {seq}")}),
        )
    };
    let mut lines: Vec<Event> = (0..8).map(line).collect();
    lines.shuffle(&mut rand::rngs::StdRng::seed_from_u64(9));
    produce(&producer(false), &topics.voice(), &lines).await;

    let msgs = client
        .messages_until(30, |m| {
            m.iter().filter(|x| x["type"] == "call.transcript").count() == 8
        })
        .await;
    let seqs: Vec<u64> = msgs
        .iter()
        .filter(|m| m["type"] == "call.transcript")
        .map(|m| m["data"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..8).collect::<Vec<_>>());

    // A late subscriber reads the transcript so far from the snapshot.
    let mut late =
        Client::connect(&hub.ws_url(&token(tenant, Uuid::new_v4(), "member", &[]))).await;
    let sub = late.subscribe(&channel).await;
    let transcript = sub["snapshot"]["transcript"]
        .as_array()
        .expect("transcript");
    assert_eq!(transcript.len(), 8);
    assert_eq!(transcript[7]["text"], "line 7");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM voice_call_transcripts").await,
        8
    );
}
