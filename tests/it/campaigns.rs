//! Campaign activity end to end: broker → hub → Postgres → campaign channel.

use crate::support::*;
use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use lad_hub::demo::Event;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

#[sqlx::test(migrations = "./migrations")]
async fn campaign_activity_is_stored_once_aggregated_and_pushed_to_its_campaign(pool: PgPool) {
    let topics = Topics::new();
    let hub = Hub::start(&pool, &topics, HubOptions::default()).await;
    let (tenant, campaign, step_email, step_call) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let mut client =
        Client::connect(&hub.ws_url(&token(tenant, Uuid::new_v4(), "viewer", &[]))).await;
    let channel = format!("tenant:{tenant}:campaign:{campaign}");
    assert_eq!(client.subscribe(&channel).await["op"], "subscribed");
    let mut other =
        Client::connect(&hub.ws_url(&token(Uuid::new_v4(), Uuid::new_v4(), "owner", &[]))).await;
    assert_eq!(other.subscribe(&channel).await["code"], "forbidden");

    let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
    let activity =
        |lead: Uuid, enrollment: Uuid, step: Uuid, step_type: &str, status: &str, minutes: i64| {
            Event::new(
                enrollment,
                "campaign.activity",
                tenant,
                t0 + ChronoDuration::minutes(minutes),
                json!({"campaign_id": campaign, "campaign_lead_id": enrollment, "lead_id": lead,
                   "step_id": step, "step_type": step_type, "status": status}),
            )
        };
    let mut events = Vec::new();
    let mut enrollments = Vec::new();
    for _ in 0..10 {
        let (lead, enrollment) = (Uuid::new_v4(), Uuid::new_v4());
        enrollments.push(enrollment);
        // Newest first: the enrollment must still end on the latest step.
        events.push(activity(
            lead,
            enrollment,
            step_call,
            "voice_call",
            "replied",
            30,
        ));
        events.push(activity(
            lead, enrollment, step_email, "email", "opened", 10,
        ));
        events.push(activity(lead, enrollment, step_email, "email", "sent", 0));
    }
    events.push(events[0].clone());
    produce(&producer(false), &topics.campaigns(), &events).await;

    eventually(60, "activities stored", || async {
        (count(&pool, "SELECT count(*) FROM campaign_lead_activities").await == 30).then_some(())
    })
    .await;
    let latest: Vec<(Uuid, Option<Uuid>, Option<String>, String)> = sqlx::query_as(
        "SELECT id, current_step_id, last_activity_status, status FROM campaign_leads ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(latest.len(), 10);
    for row in &latest {
        assert_eq!(
            (row.1, row.2.as_deref(), row.3.as_str()),
            (Some(step_call), Some("replied"), "replied")
        );
    }
    let stats: Vec<(Uuid, String, i64)> = sqlx::query_as(
        "SELECT step_id, status, count FROM campaign_step_stats ORDER BY step_id, status",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stats.len(), 3);
    assert!(stats.iter().all(|(_, _, n)| *n == 10), "{stats:?}");

    let msgs = client
        .messages_until(30, |m| {
            m.iter()
                .filter(|x| x["type"] == "campaign.activity")
                .count()
                == 30
                && m.iter()
                    .any(|x| x["type"] == "campaign.stats" && x["data"]["count"] == 10)
        })
        .await;
    assert!(msgs.iter().all(|m| m["channel"] == channel));
    assert!(other.next_frame(1).await.is_none());
}
