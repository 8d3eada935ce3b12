//! The assistant pipeline against a real Postgres: hand-built records through
//! `BatchApplier` (decode → take the deltas → apply in one transaction), then
//! the published deltas, the rows, the outbox and the dead letters.

mod common;

use chrono::{DateTime, Utc};
use common::{at, count, envelope, live_of_type, outbox, Feed, DEAD};
use lad_consumers::ai::AiDomain;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

const TOPIC: &str = "lad.ai.icp-assistant.v1";

fn feed(pool: &PgPool) -> Feed<AiDomain> {
    Feed::new(AiDomain, pool.clone(), TOPIC, Some(b"conversation"))
}

#[derive(Clone, Copy)]
struct Reply {
    tenant: Uuid,
    user: Uuid,
    conversation: Uuid,
    message: Uuid,
}

impl Reply {
    fn new(tenant: Uuid, user: Uuid, conversation: Uuid) -> Reply {
        Reply {
            tenant,
            user,
            conversation,
            message: Uuid::new_v4(),
        }
    }
}

fn reply_envelope(r: Reply, kind: &str, occurred: DateTime<Utc>, data: Value) -> Value {
    let mut data = data;
    data["conversation_id"] = json!(r.conversation);
    data["message_id"] = json!(r.message);
    data["user_id"] = json!(r.user);
    envelope(r.tenant, kind, occurred, data)
}

fn delta(r: Reply, seq: i32, text: &str) -> Value {
    reply_envelope(
        r,
        "ai.reply.delta",
        at(seq.into()),
        json!({"seq": seq, "delta": text}),
    )
}

fn completed(r: Reply, content: &str, occurred: DateTime<Utc>) -> Value {
    reply_envelope(
        r,
        "ai.reply.completed",
        occurred,
        json!({"content": content, "tokens_used": 42, "model": "icp-1"}),
    )
}

async fn pushed_completions(pool: &PgPool) -> Vec<Value> {
    live_of_type(pool, "ai.reply.completed").await
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct MessageRow {
    tenant_id: Uuid,
    conversation_id: Uuid,
    user_id: Option<Uuid>,
    role: String,
    content: String,
    tokens_used: i32,
    model: Option<String>,
    created_at: DateTime<Utc>,
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct ConversationRow {
    tenant_id: Uuid,
    user_id: Uuid,
    message_count: i32,
    last_message_at: Option<DateTime<Utc>>,
}

async fn conversation(pool: &PgPool, id: Uuid) -> ConversationRow {
    sqlx::query_as(
        "SELECT tenant_id, user_id, message_count, last_message_at
         FROM ai_conversations WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn deltas_leave_in_seq_order_once_each_and_are_never_stored(pool: PgPool) {
    let mut feed = feed(&pool);
    let (tenant, user, conv) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (a, b) = (
        Reply::new(tenant, user, conv),
        Reply::new(tenant, user, conv),
    );
    let (ephemeral, outcome) = feed
        .send_events(&[
            delta(a, 1, "lo"),
            delta(b, 0, "Hi"),
            delta(a, 0, "Hel"),
            delta(a, 1, "lo"),
            delta(b, 2, "!"),
            delta(b, 1, " there"),
            delta(a, 2, " world"),
        ])
        .await;
    let order: Vec<&str> = ephemeral.iter().map(|e| e.id.as_str()).collect();
    let (ma, mb) = (a.message, b.message);
    assert_eq!(
        order,
        [
            format!("ai:{ma}:0"),
            format!("ai:{ma}:1"),
            format!("ai:{ma}:2"),
            format!("ai:{mb}:0"),
            format!("ai:{mb}:1"),
            format!("ai:{mb}:2"),
        ]
    );
    let first = &ephemeral[0].update;
    assert_eq!(first.channel, format!("tenant:{tenant}:user:{user}:ai"));
    assert_eq!(first.kind, "ai.reply.delta");
    assert_eq!(
        first.data_value(),
        json!({"conversation_id": conv, "message_id": ma, "user_id": user, "seq": 0, "delta": "Hel"})
    );

    // The offsets still move on; nothing is stored, nothing goes through the outbox.
    assert_eq!((outcome.applied, outcome.rejected), (0, 0));
    assert_eq!(outcome.committed, [(0, 7)]);
    assert_eq!(count(&pool, "SELECT count(*) FROM ai_messages").await, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM ai_conversations").await,
        0
    );
    assert!(outbox(&pool).await.is_empty());
}

#[sqlx::test(migrations = "../migrations")]
async fn a_completed_reply_is_stored_once_in_a_new_conversation_and_pushed_as_final(pool: PgPool) {
    let mut feed = feed(&pool);
    let r = Reply::new(Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let done = completed(r, "Your ICP is mid-market SaaS.", at(30));
    let (ephemeral, outcome) = feed
        .send_events(&[delta(r, 0, "Your ICP"), done.clone()])
        .await;
    assert_eq!(ephemeral.len(), 1);
    assert_eq!(outcome.applied, 1);

    let stored: MessageRow = sqlx::query_as(
        "SELECT tenant_id, conversation_id, user_id, role, content, tokens_used, model, created_at
         FROM ai_messages WHERE id = $1",
    )
    .bind(r.message)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        stored,
        MessageRow {
            tenant_id: r.tenant,
            conversation_id: r.conversation,
            user_id: Some(r.user),
            role: "assistant".into(),
            content: "Your ICP is mid-market SaaS.".into(),
            tokens_used: 42,
            model: Some("icp-1".into()),
            created_at: at(30),
        }
    );
    assert_eq!(
        conversation(&pool, r.conversation).await,
        ConversationRow {
            tenant_id: r.tenant,
            user_id: r.user,
            message_count: 1,
            last_message_at: Some(at(30)),
        }
    );

    let pushed = pushed_completions(&pool).await;
    assert_eq!(pushed.len(), 1);
    assert_eq!(
        pushed[0]["channel"],
        format!("tenant:{}:user:{}:ai", r.tenant, r.user)
    );
    assert_eq!(
        pushed[0]["data"],
        json!({
            "id": r.message,
            "conversation_id": r.conversation,
            "message_id": r.message,
            "user_id": r.user,
            "role": "assistant",
            "content": "Your ICP is mid-market SaaS.",
            "tokens_used": 42,
            "model": "icp-1",
            "created_at": "2026-11-25T10:00:30Z",
            "final": true,
        })
    );

    // The same event again is a duplicate; the same message under a new
    // event_id (a producer's retry) is stored already: neither counts or pushes.
    let mut retried = done.clone();
    retried["event_id"] = json!(Uuid::new_v4());
    let (_, outcome) = feed.send_events(&[done, retried]).await;
    assert_eq!(outcome.duplicates, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM ai_messages").await, 1);
    assert_eq!(conversation(&pool, r.conversation).await.message_count, 1);
    assert_eq!(pushed_completions(&pool).await.len(), 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn replies_are_counted_per_conversation_and_last_message_at_only_moves_forward(pool: PgPool) {
    let mut feed = feed(&pool);
    let (tenant, user) = (Uuid::new_v4(), Uuid::new_v4());
    let existing = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO ai_conversations (id, tenant_id, user_id, message_count, last_message_at)
         VALUES ($1, $2, $3, 5, $4)",
    )
    .bind(existing)
    .bind(tenant)
    .bind(user)
    .bind(at(100))
    .execute(&pool)
    .await
    .unwrap();
    let fresh = Uuid::new_v4();
    let (_, outcome) = feed
        .send_events(&[
            completed(Reply::new(tenant, user, existing), "a", at(50)),
            completed(Reply::new(tenant, user, fresh), "b", at(10)),
            completed(Reply::new(tenant, user, existing), "c", at(200)),
            completed(Reply::new(tenant, user, existing), "d", at(150)),
            completed(Reply::new(tenant, user, fresh), "e", at(5)),
        ])
        .await;
    assert_eq!(outcome.applied, 5);
    let old = conversation(&pool, existing).await;
    assert_eq!((old.message_count, old.last_message_at), (8, Some(at(200))));
    let new = conversation(&pool, fresh).await;
    assert_eq!((new.message_count, new.last_message_at), (2, Some(at(10))));

    // A late reply older than the conversation's last message is counted
    // without moving last_message_at back.
    feed.send_events(&[completed(Reply::new(tenant, user, existing), "late", at(1))])
        .await;
    let old = conversation(&pool, existing).await;
    assert_eq!((old.message_count, old.last_message_at), (9, Some(at(200))));
    let contents: Vec<String> = pushed_completions(&pool)
        .await
        .iter()
        .map(|m| m["data"]["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(contents, ["a", "b", "c", "d", "e", "late"]);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_reply_in_another_tenants_or_users_conversation_is_dead_lettered(pool: PgPool) {
    let mut feed = feed(&pool);
    let (tenant, user, conv) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    feed.send_events(&[completed(Reply::new(tenant, user, conv), "mine", at(0))])
        .await;

    let intruder_tenant = Uuid::new_v4();
    let intruder_user = Uuid::new_v4();
    let (_, outcome) = feed
        .send_events(&[
            completed(Reply::new(intruder_tenant, user, conv), "x", at(1)),
            completed(Reply::new(tenant, intruder_user, conv), "y", at(2)),
            completed(Reply::new(tenant, user, conv), "ok", at(3)),
        ])
        .await;
    assert_eq!((outcome.applied, outcome.rejected), (1, 2));

    let letters: Vec<(i64, String, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT kafka_offset, error_kind, reason, tenant_id FROM hub_dead_letters ORDER BY kafka_offset",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(
        (letters[0].0, letters[0].1.as_str(), letters[0].3),
        (1, "rule_violation", Some(intruder_tenant))
    );
    assert!(letters[0].2.contains("another tenant"));
    assert!(!letters[0].2.contains(&user.to_string()));
    assert_eq!((letters[1].0, letters[1].1.as_str()), (2, "rule_violation"));

    let row = conversation(&pool, conv).await;
    assert_eq!(
        (row.tenant_id, row.user_id, row.message_count),
        (tenant, user, 2)
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM ai_messages").await, 2);
    let dead = outbox(&pool)
        .await
        .into_iter()
        .filter(|r| r["topic"] == DEAD)
        .count();
    assert_eq!(dead, 2);
    assert_eq!(pushed_completions(&pool).await.len(), 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn poison_records_are_dead_lettered_and_the_batch_goes_on(pool: PgPool) {
    let mut feed = feed(&pool);
    let r = Reply::new(Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut negative_seq = delta(r, 0, "x");
    negative_seq["data"]["seq"] = json!(-1);
    let mut no_content = completed(r, "x", at(0));
    no_content["data"]
        .as_object_mut()
        .unwrap()
        .remove("content");
    let mut unknown = delta(r, 0, "x");
    unknown["type"] = json!("ai.reply.started");
    let (ephemeral, outcome) = feed
        .send_payloads(vec![
            serde_json::to_vec(&negative_seq).unwrap(),
            b"\xff\xfe".to_vec(),
            serde_json::to_vec(&delta(r, 0, "ok")).unwrap(),
            serde_json::to_vec(&no_content).unwrap(),
            serde_json::to_vec(&unknown).unwrap(),
            serde_json::to_vec(&completed(r, "fine", at(1))).unwrap(),
        ])
        .await;
    assert_eq!(ephemeral.len(), 1);
    assert_eq!((outcome.applied, outcome.rejected), (1, 4));
    let kinds: Vec<(i64, String)> = sqlx::query_as(
        "SELECT kafka_offset, error_kind FROM hub_dead_letters ORDER BY kafka_offset",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        kinds,
        [
            (0, "invalid_data".to_owned()),
            (1, "invalid_json".to_owned()),
            (3, "invalid_data".to_owned()),
            (4, "unknown_type".to_owned()),
        ]
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM ai_messages").await, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn deltas_left_in_a_batch_decoded_again_for_a_retry_are_not_stored(pool: PgPool) {
    let mut feed = feed(&pool);
    let r = Reply::new(Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let records = feed.records(&[
        delta(r, 0, "a"),
        delta(r, 1, "b"),
        completed(r, "ab", at(2)),
    ]);
    // A retried batch is decoded afresh and applied without taking the
    // deltas out again: they must still not become rows.
    let outcome = feed.apply(&records).await;
    assert_eq!(outcome.rejected, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM ai_messages").await, 1);
    assert_eq!(conversation(&pool, r.conversation).await.message_count, 1);
    assert_eq!(pushed_completions(&pool).await.len(), 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_reply_reusing_another_tenants_message_id_is_dead_lettered_and_the_owners_row_stays(
    pool: PgPool,
) {
    let mut feed = feed(&pool);
    let owner = Reply::new(Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    feed.send_events(&[completed(owner, "the owner's text", at(0))])
        .await;

    // Another tenant, its own conversation and user, the owner's message_id.
    let intruder = Reply {
        message: owner.message,
        ..Reply::new(Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4())
    };
    let (_, outcome) = feed
        .send_events(&[
            completed(intruder, "the intruder's text", at(1)),
            // The owner's own retry under a new event id changes nothing either.
            completed(owner, "the owner's text", at(2)),
        ])
        .await;
    assert_eq!(outcome.rejected, 1);

    let letters: Vec<(String, String, Option<Uuid>)> =
        sqlx::query_as("SELECT error_kind, reason, tenant_id FROM hub_dead_letters")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].0.as_str(), letters[0].2),
        ("rule_violation", Some(intruder.tenant))
    );
    assert_eq!(
        letters[0].1,
        format!(
            "rule violation: message_id {} belongs to another tenant",
            owner.message
        )
    );
    let stored: (Uuid, Uuid, String) =
        sqlx::query_as("SELECT tenant_id, conversation_id, content FROM ai_messages")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        stored,
        (owner.tenant, owner.conversation, "the owner's text".into())
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM ai_conversations").await,
        1,
        "the rejected reply created no conversation"
    );
    assert_eq!(
        conversation(&pool, owner.conversation).await.message_count,
        1
    );
    assert_eq!(pushed_completions(&pool).await.len(), 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn two_partitions_storing_one_new_message_id_for_two_tenants_store_one_and_dead_letter_the_other(
    pool: PgPool,
) {
    // Two feeds: two partitions' batches, applied at the same time.
    let mut left = Feed::new(AiDomain, pool.clone(), "ai-left", None);
    let mut right = Feed::new(AiDomain, pool.clone(), "ai-right", None);
    for round in 0..20 {
        let a = Reply::new(Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let b = Reply {
            message: a.message,
            ..Reply::new(Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4())
        };
        let (ra, rb) = (
            left.records(&[completed(a, "a", at(round))]),
            right.records(&[completed(b, "b", at(round))]),
        );
        let (oa, ob) = tokio::join!(left.apply(&ra), right.apply(&rb));
        assert_eq!(oa.applied + ob.applied, 1, "round {round}: one stored");
        assert_eq!(
            oa.rejected + ob.rejected,
            1,
            "round {round}: one dead-lettered"
        );
        let owners: i64 = sqlx::query_scalar("SELECT count(*) FROM ai_messages WHERE id = $1")
            .bind(a.message)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(owners, 1);
    }
}
