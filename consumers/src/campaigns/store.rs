//! The SQL of a campaign batch: one statement per table, rows passed as
//! `UNNEST` arrays, inside the caller's transaction.

use super::apply::{Enrollment, EnrollmentHead, StepStatKey, StoredActivity, DERIVED_STATUSES};
use super::event::Activity;
use crate::pipeline::Accepted;
use crate::store_util::lock_by_id;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Locks the stored enrollments among `ids` and returns who owns each.
/// Holding the locks until commit keeps the ownership check true while the
/// batch writes.
pub async fn lock_enrollments(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Enrollment>, sqlx::Error> {
    lock_by_id(
        conn,
        "campaign_leads",
        "id, tenant_id, campaign_id, lead_id",
        ids,
    )
    .await
}

/// Stores each activity once (`event_id` is unique) and returns the ones
/// this call inserted, in input order: only those count and are pushed.
pub async fn insert_activities(
    conn: &mut PgConnection,
    kept: &[&Accepted<Activity>],
    now: DateTime<Utc>,
) -> Result<Vec<StoredActivity>, sqlx::Error> {
    if kept.is_empty() {
        return Ok(Vec::new());
    }
    let n = kept.len();
    let mut tenant_ids = Vec::with_capacity(n);
    let mut event_ids = Vec::with_capacity(n);
    let mut campaign_ids = Vec::with_capacity(n);
    let mut enrollment_ids = Vec::with_capacity(n);
    let mut lead_ids = Vec::with_capacity(n);
    let mut step_ids = Vec::with_capacity(n);
    let mut step_types = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut errors = Vec::with_capacity(n);
    let mut occurred = Vec::with_capacity(n);
    for a in kept {
        tenant_ids.push(a.meta.tenant_id);
        event_ids.push(a.meta.event_id);
        campaign_ids.push(a.event.campaign_id);
        enrollment_ids.push(a.event.campaign_lead_id);
        lead_ids.push(a.event.lead_id);
        step_ids.push(a.event.step_id);
        step_types.push(a.event.step_type.as_str());
        statuses.push(a.event.status.as_str());
        errors.push(a.event.error.clone());
        occurred.push(a.meta.occurred_at);
    }
    let inserted: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "INSERT INTO campaign_lead_activities
           (tenant_id, event_id, campaign_id, campaign_lead_id, lead_id, step_id,
            step_type, status, error, occurred_at, created_at, updated_at)
         SELECT u.*, $11, $11
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[],
                     $7::text[], $8::text[], $9::text[], $10::timestamptz[]) AS u
         ON CONFLICT (event_id) DO NOTHING
         RETURNING event_id, id",
    )
    .bind(&tenant_ids)
    .bind(&event_ids)
    .bind(&campaign_ids)
    .bind(&enrollment_ids)
    .bind(&lead_ids)
    .bind(&step_ids)
    .bind(&step_types)
    .bind(&statuses)
    .bind(&errors)
    .bind(&occurred)
    .bind(now)
    .fetch_all(conn)
    .await?;
    let ids: HashMap<Uuid, Uuid> = inserted.into_iter().collect();
    Ok(kept
        .iter()
        .filter_map(|a| {
            ids.get(&a.meta.event_id).map(|id| StoredActivity {
                id: *id,
                event_id: a.meta.event_id,
                tenant_id: a.meta.tenant_id,
                occurred_at: a.meta.occurred_at,
                created_at: now,
                activity: a.event.clone(),
            })
        })
        .collect())
}

/// Creates or moves each enrollment to its latest activity. A head older
/// than what the row already shows (a late arrival) leaves the step and
/// status alone, so every arrival order converges; the comparison is the
/// same (occurred_at, event_id) order as [`super::apply::is_later`].
///
/// The closing `WHERE` re-checks ownership against a row that another
/// transaction inserted after [`lock_enrollments`] looked: such a row is
/// left as its owner wrote it.
pub async fn upsert_enrollments(
    conn: &mut PgConnection,
    heads: &[EnrollmentHead],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if heads.is_empty() {
        return Ok(());
    }
    let n = heads.len();
    let mut ids = Vec::with_capacity(n);
    let mut tenant_ids = Vec::with_capacity(n);
    let mut campaign_ids = Vec::with_capacity(n);
    let mut lead_ids = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut step_ids = Vec::with_capacity(n);
    let mut step_types = Vec::with_capacity(n);
    let mut activity_statuses = Vec::with_capacity(n);
    let mut last_at = Vec::with_capacity(n);
    let mut last_event = Vec::with_capacity(n);
    let mut enrolled_at = Vec::with_capacity(n);
    for h in heads {
        ids.push(h.id);
        tenant_ids.push(h.tenant_id);
        campaign_ids.push(h.campaign_id);
        lead_ids.push(h.lead_id);
        statuses.push(h.status);
        step_ids.push(h.step_id);
        step_types.push(h.step_type.as_str());
        activity_statuses.push(h.activity_status.as_str());
        last_at.push(h.last_activity_at);
        last_event.push(h.last_activity_event_id);
        enrolled_at.push(h.first_activity_at);
    }
    sqlx::query(
        "INSERT INTO campaign_leads AS cl
           (id, tenant_id, campaign_id, lead_id, status, current_step_id, current_step_type,
            last_activity_status, last_activity_at, last_activity_event_id, enrolled_at,
            created_at, updated_at)
         SELECT u.*, $12, $12
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::uuid[],
                     $7::text[], $8::text[], $9::timestamptz[], $10::uuid[], $11::timestamptz[])
              AS u(id, tenant_id, campaign_id, lead_id, status, current_step_id,
                   current_step_type, last_activity_status, last_activity_at,
                   last_activity_event_id, enrolled_at)
         ORDER BY u.id
         ON CONFLICT (id) DO UPDATE SET
           (status, current_step_id, current_step_type, last_activity_status,
            last_activity_at, last_activity_event_id) = (
             SELECT
               CASE WHEN later AND cl.status = ANY($13::text[])
                    THEN EXCLUDED.status ELSE cl.status END,
               CASE WHEN later THEN EXCLUDED.current_step_id ELSE cl.current_step_id END,
               CASE WHEN later THEN EXCLUDED.current_step_type ELSE cl.current_step_type END,
               CASE WHEN later THEN EXCLUDED.last_activity_status
                    ELSE cl.last_activity_status END,
               CASE WHEN later THEN EXCLUDED.last_activity_at ELSE cl.last_activity_at END,
               CASE WHEN later THEN EXCLUDED.last_activity_event_id
                    ELSE cl.last_activity_event_id END
             FROM (SELECT cl.last_activity_at IS NULL
                          OR (EXCLUDED.last_activity_at, EXCLUDED.last_activity_event_id)
                             > (cl.last_activity_at,
                                COALESCE(cl.last_activity_event_id, '00000000-0000-0000-0000-000000000000'))
                   AS later) AS l),
           enrolled_at = LEAST(cl.enrolled_at, EXCLUDED.enrolled_at),
           updated_at = EXCLUDED.updated_at
         WHERE cl.tenant_id = EXCLUDED.tenant_id
           AND cl.campaign_id = EXCLUDED.campaign_id
           AND cl.lead_id = EXCLUDED.lead_id",
    )
    .bind(&ids)
    .bind(&tenant_ids)
    .bind(&campaign_ids)
    .bind(&lead_ids)
    .bind(&statuses)
    .bind(&step_ids)
    .bind(&step_types)
    .bind(&activity_statuses)
    .bind(&last_at)
    .bind(&last_event)
    .bind(&enrolled_at)
    .bind(now)
    .bind(DERIVED_STATUSES.as_slice())
    .execute(conn)
    .await?;
    Ok(())
}

/// The columns of a [`StepStatRow`], in its field order.
pub const STEP_STAT_COLUMNS: &str = "tenant_id, campaign_id, step_id, status, count, updated_at";

/// A `campaign_step_stats` row after this batch's upsert.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct StepStatRow {
    pub tenant_id: Uuid,
    pub campaign_id: Uuid,
    pub step_id: Uuid,
    pub status: String,
    pub count: i64,
    #[serde(with = "crate::instant::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// A campaign's step counts, for its channel's snapshot.
pub async fn step_stats(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    campaign_id: Uuid,
) -> Result<Vec<StepStatRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {STEP_STAT_COLUMNS}
         FROM campaign_step_stats
         WHERE tenant_id = $1 AND campaign_id = $2
         ORDER BY step_id, status"
    ))
    .bind(tenant_id)
    .bind(campaign_id)
    .fetch_all(conn)
    .await
}

/// Adds the batch's counts, one row per key, inserted in key order so that
/// concurrent batches take the row locks in the same order.
pub async fn add_step_stats(
    conn: &mut PgConnection,
    deltas: &BTreeMap<StepStatKey, i64>,
    now: DateTime<Utc>,
) -> Result<Vec<StepStatRow>, sqlx::Error> {
    if deltas.is_empty() {
        return Ok(Vec::new());
    }
    let n = deltas.len();
    let mut tenant_ids = Vec::with_capacity(n);
    let mut campaign_ids = Vec::with_capacity(n);
    let mut step_ids = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut counts = Vec::with_capacity(n);
    for (k, count) in deltas {
        tenant_ids.push(k.tenant_id);
        campaign_ids.push(k.campaign_id);
        step_ids.push(k.step_id);
        statuses.push(k.status);
        counts.push(*count);
    }
    let sql = format!(
        "INSERT INTO campaign_step_stats AS s ({STEP_STAT_COLUMNS})
         SELECT u.*, $6
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[])
              AS u(tenant_id, campaign_id, step_id, status, count)
         ORDER BY 1, 2, 3, 4
         ON CONFLICT (tenant_id, campaign_id, step_id, status) DO UPDATE
           SET count = s.count + EXCLUDED.count, updated_at = EXCLUDED.updated_at
         RETURNING {STEP_STAT_COLUMNS}"
    );
    let mut rows: Vec<StepStatRow> = sqlx::query_as(&sql)
        .bind(&tenant_ids)
        .bind(&campaign_ids)
        .bind(&step_ids)
        .bind(&statuses)
        .bind(&counts)
        .bind(now)
        .fetch_all(conn)
        .await?;
    // RETURNING promises no order; the live stream should be deterministic.
    rows.sort_by(|a, b| {
        (a.tenant_id, a.campaign_id, a.step_id, &a.status).cmp(&(
            b.tenant_id,
            b.campaign_id,
            b.step_id,
            &b.status,
        ))
    });
    Ok(rows)
}
