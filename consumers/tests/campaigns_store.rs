//! The campaign pipeline against a real Postgres: hand-built records through
//! `BatchApplier` (decode → apply in one transaction), then the rows, the
//! outbox and the dead letters it left.

mod common;

use chrono::{DateTime, Utc};
use common::{at, count, envelope, live_of_type, outbox, Feed, DEAD};
use lad_consumers::campaigns::CampaignsDomain;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

const TOPIC: &str = "lad.campaign.activities.v1";

fn feed(pool: &PgPool) -> Feed<CampaignsDomain> {
    Feed::new(CampaignsDomain, pool.clone(), TOPIC, Some(b"campaign-lead"))
}

#[derive(Clone, Copy)]
struct Enrollment {
    tenant: Uuid,
    campaign: Uuid,
    id: Uuid,
    lead: Uuid,
}

impl Enrollment {
    fn new(tenant: Uuid) -> Enrollment {
        Enrollment {
            tenant,
            campaign: Uuid::new_v4(),
            id: Uuid::new_v4(),
            lead: Uuid::new_v4(),
        }
    }
}

fn activity(
    e: Enrollment,
    event_id: Uuid,
    step: Uuid,
    status: &str,
    occurred: DateTime<Utc>,
) -> Value {
    let mut v = envelope(
        e.tenant,
        "campaign.activity",
        occurred,
        json!({
            "campaign_id": e.campaign,
            "campaign_lead_id": e.id,
            "lead_id": e.lead,
            "step_id": step,
            "step_type": "email",
            "status": status,
        }),
    );
    v["event_id"] = json!(event_id);
    v
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct ActivityRow {
    event_id: Uuid,
    tenant_id: Uuid,
    status: String,
    error: Option<String>,
    occurred_at: DateTime<Utc>,
}

impl ActivityRow {
    fn new(event_id: Uuid, tenant_id: Uuid, status: &str, occurred_at: DateTime<Utc>) -> Self {
        ActivityRow {
            event_id,
            tenant_id,
            status: status.into(),
            error: None,
            occurred_at,
        }
    }
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct EnrollmentRow {
    tenant_id: Uuid,
    campaign_id: Uuid,
    lead_id: Uuid,
    status: String,
    current_step_id: Option<Uuid>,
    current_step_type: Option<String>,
    last_activity_status: Option<String>,
    last_activity_at: Option<DateTime<Utc>>,
    last_activity_event_id: Option<Uuid>,
    enrolled_at: DateTime<Utc>,
}

async fn enrollment(pool: &PgPool, id: Uuid) -> EnrollmentRow {
    sqlx::query_as(
        "SELECT tenant_id, campaign_id, lead_id, status, current_step_id, current_step_type,
                last_activity_status, last_activity_at, last_activity_event_id, enrolled_at
         FROM campaign_leads WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn step_count(pool: &PgPool, e: Enrollment, step: Uuid, status: &str) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT count FROM campaign_step_stats
         WHERE tenant_id = $1 AND campaign_id = $2 AND step_id = $3 AND status = $4",
    )
    .bind(e.tenant)
    .bind(e.campaign)
    .bind(step)
    .bind(status)
    .fetch_optional(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn an_activity_is_stored_once_moves_its_enrollment_and_is_pushed(pool: PgPool) {
    let mut feed = feed(&pool);
    let e = Enrollment::new(Uuid::new_v4());
    let (step1, step2) = (Uuid::new_v4(), Uuid::new_v4());
    let (sent, opened) = (Uuid::new_v4(), Uuid::new_v4());
    let batch = [
        activity(e, sent, step1, "sent", at(0)),
        activity(e, opened, step2, "opened", at(60)),
    ];

    let outcome = feed.send(&batch).await;
    assert_eq!(
        (outcome.applied, outcome.duplicates, outcome.rejected),
        (2, 0, 0)
    );

    let stored: Vec<ActivityRow> = sqlx::query_as(
        "SELECT event_id, tenant_id, status, error, occurred_at
         FROM campaign_lead_activities WHERE step_type = 'email' ORDER BY occurred_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        stored,
        [
            ActivityRow::new(sent, e.tenant, "sent", at(0)),
            ActivityRow::new(opened, e.tenant, "opened", at(60)),
        ]
    );
    let row = enrollment(&pool, e.id).await;
    assert_eq!(
        (row.tenant_id, row.campaign_id, row.lead_id),
        (e.tenant, e.campaign, e.lead)
    );
    assert_eq!(row.status, "active");
    assert_eq!(row.current_step_id, Some(step2));
    assert_eq!(row.current_step_type.as_deref(), Some("email"));
    assert_eq!(row.last_activity_status.as_deref(), Some("opened"));
    assert_eq!(row.last_activity_at, Some(at(60)));
    assert_eq!(row.last_activity_event_id, Some(opened));
    assert_eq!(row.enrolled_at, at(0));

    let pushed = live_of_type(&pool, "campaign.activity").await;
    assert_eq!(pushed.len(), 2);
    let channel = format!("tenant:{}:campaign:{}", e.tenant, e.campaign);
    for (msg, id) in pushed.iter().zip([sent, opened]) {
        assert_eq!(msg["channel"], channel);
        assert_eq!(msg["tenant_id"], e.tenant.to_string());
        assert_eq!(msg["data"]["event_id"], id.to_string());
        assert_eq!(msg["data"]["campaign_lead_id"], e.id.to_string());
        assert!(msg["data"]["id"].is_string());
    }
    assert_eq!(pushed[1]["data"]["status"], "opened");
    assert_eq!(pushed[1]["data"]["step_id"], step2.to_string());

    // The same events again (a producer retry) change nothing and push nothing.
    let again = feed.send(&batch).await;
    assert_eq!((again.applied, again.duplicates), (0, 2));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM campaign_lead_activities").await,
        2
    );
    assert_eq!(step_count(&pool, e, step1, "sent").await, Some(1));
    assert_eq!(live_of_type(&pool, "campaign.activity").await.len(), 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_enrollment_converges_whatever_the_arrival_order(pool: PgPool) {
    let mut feed = feed(&pool);
    let tenant = Uuid::new_v4();
    let steps = [
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    ];
    // Two activities share the latest occurred_at: the higher event_id wins.
    let history = |e: Enrollment| {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (low, high) = (a.min(b), a.max(b));
        let events = vec![
            activity(e, Uuid::new_v4(), steps[0], "sent", at(0)),
            activity(e, Uuid::new_v4(), steps[1], "delivered", at(10)),
            activity(e, high, steps[2], "replied", at(20)),
            activity(e, low, steps[3], "clicked", at(20)),
        ];
        (events, high)
    };

    // Three enrollments live the same history: one batch per activity in
    // order, one per activity newest first (every later batch is older),
    // and all in a single batch.
    let forward = Enrollment::new(tenant);
    let (events, forward_winner) = history(forward);
    for ev in events {
        feed.send(&[ev]).await;
    }
    let backward = Enrollment::new(tenant);
    let (mut events, backward_winner) = history(backward);
    events.reverse();
    for ev in events {
        feed.send(&[ev]).await;
    }
    let together = Enrollment::new(tenant);
    let (events, together_winner) = history(together);
    feed.send(&events).await;

    for (e, winner) in [
        (forward, forward_winner),
        (backward, backward_winner),
        (together, together_winner),
    ] {
        let row = enrollment(&pool, e.id).await;
        assert_eq!(row.current_step_id, Some(steps[2]), "the tie's winner");
        assert_eq!(row.last_activity_status.as_deref(), Some("replied"));
        assert_eq!(row.status, "replied");
        assert_eq!(row.last_activity_at, Some(at(20)));
        assert_eq!(row.last_activity_event_id, Some(winner));
        assert_eq!(
            row.enrolled_at,
            at(0),
            "an enrollment began by its first activity"
        );
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM campaign_lead_activities").await,
        12
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn step_stats_count_every_activity_once_and_push_the_running_total(pool: PgPool) {
    let mut feed = feed(&pool);
    let tenant = Uuid::new_v4();
    let first = Enrollment::new(tenant);
    let second = Enrollment {
        id: Uuid::new_v4(),
        lead: Uuid::new_v4(),
        ..first
    };
    let step = Uuid::new_v4();
    let one = [
        activity(first, Uuid::new_v4(), step, "sent", at(0)),
        activity(second, Uuid::new_v4(), step, "sent", at(1)),
        activity(first, Uuid::new_v4(), step, "opened", at(2)),
    ];
    let repeated = one[1].clone();
    feed.send(&one).await;
    let two = [
        activity(second, Uuid::new_v4(), step, "opened", at(3)),
        repeated,
        activity(second, Uuid::new_v4(), step, "sent", at(4)),
    ];
    let outcome = feed.send(&two).await;
    assert_eq!((outcome.applied, outcome.duplicates), (2, 1));

    assert_eq!(step_count(&pool, first, step, "sent").await, Some(3));
    assert_eq!(step_count(&pool, first, step, "opened").await, Some(2));
    assert_eq!(step_count(&pool, first, step, "replied").await, None);

    let stats = live_of_type(&pool, "campaign.stats").await;
    let seen: Vec<(String, i64)> = stats
        .iter()
        .map(|m| {
            (
                m["data"]["status"].as_str().unwrap().to_owned(),
                m["data"]["count"].as_i64().unwrap(),
            )
        })
        .collect();
    // One message per changed row per batch, carrying the row after the batch.
    assert_eq!(
        seen,
        [
            ("opened".to_owned(), 1),
            ("sent".to_owned(), 2),
            ("opened".to_owned(), 2),
            ("sent".to_owned(), 3),
        ]
    );
    let m = &stats[0];
    assert_eq!(
        m["channel"],
        format!("tenant:{tenant}:campaign:{}", first.campaign)
    );
    assert_eq!(m["data"]["step_id"], step.to_string());
    assert_eq!(m["data"]["campaign_id"], first.campaign.to_string());
    assert!(m["data"]["updated_at"].is_string());
}

#[sqlx::test(migrations = "../migrations")]
async fn an_activity_contradicting_its_stored_enrollment_is_dead_lettered(pool: PgPool) {
    let mut feed = feed(&pool);
    let owner = Enrollment::new(Uuid::new_v4());
    sqlx::query(
        "INSERT INTO campaign_leads (id, tenant_id, campaign_id, lead_id) VALUES ($1, $2, $3, $4)",
    )
    .bind(owner.id)
    .bind(owner.tenant)
    .bind(owner.campaign)
    .bind(owner.lead)
    .execute(&pool)
    .await
    .unwrap();
    let other_tenant = Enrollment {
        tenant: Uuid::new_v4(),
        ..owner
    };
    let other_campaign = Enrollment {
        campaign: Uuid::new_v4(),
        ..owner
    };
    let other_lead = Enrollment {
        lead: Uuid::new_v4(),
        ..owner
    };
    let step = Uuid::new_v4();
    let outcome = feed
        .send(&[
            activity(other_tenant, Uuid::new_v4(), step, "sent", at(0)),
            activity(other_campaign, Uuid::new_v4(), step, "sent", at(0)),
            activity(other_lead, Uuid::new_v4(), step, "sent", at(0)),
            activity(owner, Uuid::new_v4(), step, "bounced", at(5)),
        ])
        .await;
    assert_eq!((outcome.applied, outcome.rejected), (1, 3));

    let letters: Vec<(i64, String, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT kafka_offset, error_kind, reason, tenant_id FROM hub_dead_letters ORDER BY kafka_offset",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(letters.len(), 3);
    assert!(letters.iter().all(|l| l.1 == "rule_violation"));
    assert_eq!(letters[0].0, 0);
    assert_eq!(letters[0].3, Some(other_tenant.tenant));
    assert!(letters[0].2.contains("another tenant"));
    assert!(!letters[0].2.contains(&owner.campaign.to_string()));
    assert!(letters[1].2.contains(&owner.campaign.to_string()));

    // Nothing of the rejected ones was written; the owner's activity was.
    assert_eq!(
        count(&pool, "SELECT count(*) FROM campaign_lead_activities").await,
        1
    );
    assert_eq!(step_count(&pool, owner, step, "sent").await, None);
    assert_eq!(step_count(&pool, owner, step, "bounced").await, Some(1));
    let row = enrollment(&pool, owner.id).await;
    assert_eq!(
        (row.tenant_id, row.status.as_str()),
        (owner.tenant, "bounced")
    );

    let dead: Vec<Value> = outbox(&pool)
        .await
        .into_iter()
        .filter(|r| r["topic"] == DEAD)
        .collect();
    assert_eq!(dead.len(), 3);
    assert_eq!(dead[0]["value"]["error_kind"], "rule_violation");
    assert_eq!(dead[0]["value"]["topic"], TOPIC);
    assert_eq!(live_of_type(&pool, "campaign.activity").await.len(), 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_paused_enrollment_shows_its_latest_step_but_keeps_its_status(pool: PgPool) {
    let mut feed = feed(&pool);
    let e = Enrollment::new(Uuid::new_v4());
    sqlx::query(
        "INSERT INTO campaign_leads (id, tenant_id, campaign_id, lead_id, status, enrolled_at)
         VALUES ($1, $2, $3, $4, 'paused', $5)",
    )
    .bind(e.id)
    .bind(e.tenant)
    .bind(e.campaign)
    .bind(e.lead)
    .bind(at(-3600))
    .execute(&pool)
    .await
    .unwrap();
    let step = Uuid::new_v4();
    feed.send(&[activity(e, Uuid::new_v4(), step, "replied", at(0))])
        .await;
    let row = enrollment(&pool, e.id).await;
    assert_eq!(row.status, "paused");
    assert_eq!(row.current_step_id, Some(step));
    assert_eq!(row.last_activity_status.as_deref(), Some("replied"));
    assert_eq!(
        row.enrolled_at,
        at(-3600),
        "the stored enrollment date is earlier"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn poison_records_are_dead_lettered_and_the_batch_goes_on(pool: PgPool) {
    let mut feed = feed(&pool);
    let e = Enrollment::new(Uuid::new_v4());
    let step = Uuid::new_v4();
    let mut bad_status = activity(e, Uuid::new_v4(), step, "sent", at(0));
    bad_status["data"]["status"] = json!("exploded");
    let mut wrong_type = activity(e, Uuid::new_v4(), step, "sent", at(0));
    wrong_type["type"] = json!("call.ended");
    let good = activity(e, Uuid::new_v4(), step, "delivered", at(1));
    let (ephemeral, outcome) = feed
        .send_payloads(vec![
            b"{not json".to_vec(),
            serde_json::to_vec(&bad_status).unwrap(),
            serde_json::to_vec(&good).unwrap(),
            serde_json::to_vec(&wrong_type).unwrap(),
        ])
        .await;
    assert!(ephemeral.is_empty(), "campaign activity is always stored");
    assert_eq!((outcome.applied, outcome.rejected), (1, 3));

    let letters: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
        "SELECT kafka_offset, error_kind, payload FROM hub_dead_letters ORDER BY kafka_offset",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let kinds: Vec<(i64, &str)> = letters.iter().map(|l| (l.0, l.1.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (0, "invalid_json"),
            (1, "invalid_data"),
            (3, "unknown_type")
        ]
    );
    assert_eq!(letters[0].2, b"{not json");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM campaign_lead_activities").await,
        1
    );
    assert_eq!(step_count(&pool, e, step, "delivered").await, Some(1));
    let next: i64 = sqlx::query_scalar(
        "SELECT next_offset FROM hub_consumer_offsets WHERE topic = $1 AND kafka_partition = 0",
    )
    .bind(TOPIC)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(next, 4, "the partition moves past the poison");
}
