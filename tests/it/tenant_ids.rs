//! Ids are tenant-scoped: an assistant `message_id`, a call id or an
//! enrollment id stored by one tenant and reused by another. The other
//! tenant's record is dead-lettered with the reason; the owner's rows and
//! live stream are untouched.

use crate::support::*;
use chrono::Utc;
use lad_hub::demo::Event;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// The dead letter of `event`, once the hub wrote it: (reason, error kind).
async fn dead_letter_of(pool: &PgPool, event: &Event) -> (String, String) {
    let id = event.event_id();
    eventually(30, "the dead letter", || async {
        sqlx::query_as::<_, (String, String)>(
            "SELECT reason, error_kind FROM hub_dead_letters WHERE event_id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await
        .expect("dead letters")
    })
    .await
}

#[sqlx::test(migrations = "./migrations")]
async fn another_tenants_reply_reusing_a_message_id_is_dead_lettered_and_the_owners_reply_and_stream_stay(
    pool: PgPool,
) {
    let topics = Topics::new();
    let hub = Hub::start(&pool, &topics, HubOptions::default()).await;
    let producer = producer(false);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (user_a, user_b) = (Uuid::new_v4(), Uuid::new_v4());
    let (conv_a, conv_b) = (Uuid::new_v4(), Uuid::new_v4());
    let message = Uuid::new_v4();
    let reply = |tenant: Uuid, user: Uuid, conv: Uuid, kind: &str, data: Value| {
        let mut d = json!({"conversation_id": conv, "message_id": message, "user_id": user});
        d.as_object_mut()
            .unwrap()
            .extend(data.as_object().unwrap().clone());
        Event::new(conv, kind, tenant, Utc::now(), d)
    };

    let channel_a = format!("tenant:{a}:user:{user_a}:ai");
    let channel_b = format!("tenant:{b}:user:{user_b}:ai");
    let mut owner = Client::connect(&hub.ws_url(&token(a, user_a, "member", &[]))).await;
    assert_eq!(owner.subscribe(&channel_a).await["op"], "subscribed");
    let mut other = Client::connect(&hub.ws_url(&token(b, user_b, "member", &[]))).await;
    assert_eq!(other.subscribe(&channel_b).await["op"], "subscribed");

    // A streams and completes its reply.
    let mut events: Vec<Event> = (0..3)
        .map(|seq| {
            reply(
                a,
                user_a,
                conv_a,
                "ai.reply.delta",
                json!({"seq": seq, "delta": format!("a{seq} ")}),
            )
        })
        .collect();
    events.push(reply(
        a,
        user_a,
        conv_a,
        "ai.reply.completed",
        json!({"content": "a0 a1 a2 ", "tokens_used": 3}),
    ));
    produce(&producer, &topics.ai(), &events).await;
    let got = owner
        .messages_until(30, |m| m.iter().any(|f| f["type"] == "ai.reply.completed"))
        .await;
    assert_eq!(got.len(), 4, "three deltas and the completion: {got:?}");

    // B completes a reply of its own with A's message_id.
    let intruder = reply(
        b,
        user_b,
        conv_b,
        "ai.reply.completed",
        json!({"content": "B's text", "tokens_used": 9}),
    );
    produce(&producer, &topics.ai(), std::slice::from_ref(&intruder)).await;
    let (reason, kind) = dead_letter_of(&pool, &intruder).await;
    assert_eq!(
        reason,
        format!("rule violation: message_id {message} belongs to another tenant")
    );
    assert_eq!(kind, "rule_violation");
    assert!(
        !reason.contains(&a.to_string()),
        "the reason must not name the owner"
    );

    let stored: (Uuid, String, i32) =
        sqlx::query_as("SELECT tenant_id, content, tokens_used FROM ai_messages WHERE id = $1")
            .bind(message)
            .fetch_one(&pool)
            .await
            .expect("A's reply");
    assert_eq!(stored, (a, "a0 a1 a2 ".to_owned(), 3));
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM ai_conversations WHERE id = '{conv_b}'")
        )
        .await,
        0,
        "a rejected reply leaves no conversation behind"
    );

    // Nothing of B's record reached either socket; A's next reply streams as usual.
    let next = Uuid::new_v4();
    let follow = Event::new(
        conv_a,
        "ai.reply.delta",
        a,
        Utc::now(),
        json!({"conversation_id": conv_a, "message_id": next, "user_id": user_a, "seq": 0, "delta": "next"}),
    );
    produce(&producer, &topics.ai(), &[follow]).await;
    let after = owner
        .messages_until(30, |m| {
            m.iter().any(|f| f["data"]["message_id"] == json!(next))
        })
        .await;
    assert_eq!(after.len(), 1, "only A's next delta: {after:?}");
    assert!(
        other.next_frame(1).await.is_none(),
        "B's socket got nothing"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn another_tenants_event_for_a_stored_call_is_dead_lettered_and_the_call_is_untouched(
    pool: PgPool,
) {
    let topics = Topics::new();
    let _hub = Hub::start(&pool, &topics, HubOptions::default()).await;
    let producer = producer(false);
    let (a, b, call) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let started = Event::new(
        call,
        "call.started",
        a,
        Utc::now(),
        json!({
        "call_id": call, "agent_id": Uuid::new_v4(), "direction": "outbound",
        "from_number": "+15550000001", "to_number": "+15550000002"}),
    );
    produce(&producer, &topics.voice(), &[started]).await;
    eventually(30, "A's call", || async {
        let n = count(
            &pool,
            &format!("SELECT count(*) FROM voice_call_logs WHERE id = '{call}'"),
        )
        .await;
        (n == 1).then_some(())
    })
    .await;

    let intruder = Event::new(
        call,
        "call.ended",
        b,
        Utc::now(),
        json!({
        "call_id": call, "status": "completed", "duration_seconds": 60, "cost": "5.00"}),
    );
    produce(&producer, &topics.voice(), std::slice::from_ref(&intruder)).await;
    let (reason, _) = dead_letter_of(&pool, &intruder).await;
    assert_eq!(
        reason,
        format!("rule violation: call {call} belongs to another tenant")
    );
    let (tenant, ended): (Uuid, bool) =
        sqlx::query_as("SELECT tenant_id, ended_at IS NOT NULL FROM voice_call_logs WHERE id = $1")
            .bind(call)
            .fetch_one(&pool)
            .await
            .expect("A's call");
    assert_eq!((tenant, ended), (a, false));
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM billing_wallets WHERE tenant_id = '{b}'")
        )
        .await,
        0,
        "B was not charged for A's call"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn another_tenants_activity_for_a_stored_enrollment_is_dead_lettered_and_the_enrollment_is_untouched(
    pool: PgPool,
) {
    let topics = Topics::new();
    let _hub = Hub::start(&pool, &topics, HubOptions::default()).await;
    let producer = producer(false);
    let (a, b, enrollment) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let activity = |tenant: Uuid, status: &str| {
        Event::new(
            enrollment,
            "campaign.activity",
            tenant,
            Utc::now(),
            json!({
            "campaign_id": Uuid::new_v4(), "campaign_lead_id": enrollment,
            "lead_id": Uuid::new_v4(), "step_id": Uuid::new_v4(),
            "step_type": "email", "status": status}),
        )
    };
    produce(&producer, &topics.campaigns(), &[activity(a, "sent")]).await;
    eventually(30, "A's enrollment", || async {
        let n = count(
            &pool,
            &format!("SELECT count(*) FROM campaign_leads WHERE id = '{enrollment}'"),
        )
        .await;
        (n == 1).then_some(())
    })
    .await;

    let intruder = activity(b, "replied");
    produce(
        &producer,
        &topics.campaigns(),
        std::slice::from_ref(&intruder),
    )
    .await;
    let (reason, _) = dead_letter_of(&pool, &intruder).await;
    assert_eq!(
        reason,
        format!("rule violation: campaign_lead_id {enrollment} belongs to another tenant")
    );
    let tenant: Uuid = sqlx::query_scalar("SELECT tenant_id FROM campaign_leads WHERE id = $1")
        .bind(enrollment)
        .fetch_one(&pool)
        .await
        .expect("A's enrollment");
    assert_eq!(tenant, a);
    assert_eq!(
        count(
            &pool,
            &format!(
            "SELECT count(*) FROM campaign_lead_activities WHERE campaign_lead_id = '{enrollment}'"
        )
        )
        .await,
        1,
        "only A's activity is stored"
    );
}
