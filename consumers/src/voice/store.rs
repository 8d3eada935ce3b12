//! The voice pipeline's SQL. Every statement covers the whole batch
//! (`UNNEST` arrays, or `COPY` for rows known to be new); the caller owns
//! the transaction.

use super::apply::{AnalysisRow, CallRow, Merged, StatsDelta, StatsKey};
use super::event::TranscriptLine;
use crate::store_util::{as_index_probes, lock_by_id_in, partitions_with_rows, CopyBinary};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// The columns of a [`CallRow`], in its field order.
pub const CALL_COLUMNS: &str = "id, tenant_id, agent_id, lead_id, batch_id, initiated_by_user_id, \
    direction, from_number, to_number, status, started_at, answered_at, ended_at, \
    duration_seconds, cost, currency, recording_url, created_at";

/// Locks and returns the stored rows of these calls, with the events
/// merged into each. Row locks make two hub processes that briefly own the
/// same partition (a rebalance) take turns. Only the monthly partitions
/// that hold rows are probed (see [`partitions_with_rows`]).
pub async fn lock_calls(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Merged<CallRow>>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let partitions = partitions_with_rows(conn, "voice_call_logs").await?;
    let columns = format!("{CALL_COLUMNS}, applied_event_ids");
    lock_by_id_in(conn, &partitions, &columns, ids).await
}

/// Column arrays of a set of call rows, bound in the order of [`CALL_COLUMNS`].
#[derive(Default)]
struct CallColumns {
    id: Vec<Uuid>,
    tenant_id: Vec<Uuid>,
    agent_id: Vec<Option<Uuid>>,
    lead_id: Vec<Option<Uuid>>,
    batch_id: Vec<Option<Uuid>>,
    initiated_by_user_id: Vec<Option<Uuid>>,
    direction: Vec<Option<String>>,
    from_number: Vec<Option<String>>,
    to_number: Vec<Option<String>>,
    status: Vec<String>,
    started_at: Vec<Option<DateTime<Utc>>>,
    answered_at: Vec<Option<DateTime<Utc>>>,
    ended_at: Vec<Option<DateTime<Utc>>>,
    duration_seconds: Vec<Option<i32>>,
    cost: Vec<Option<Decimal>>,
    currency: Vec<String>,
    recording_url: Vec<Option<String>>,
    created_at: Vec<DateTime<Utc>>,
    /// Postgres array literals (`{id,id}`): a column of arrays of differing
    /// lengths cannot be bound as a two-dimensional array.
    applied_event_ids: Vec<String>,
}

impl CallColumns {
    fn of<'a>(calls: impl Iterator<Item = &'a Merged<CallRow>>) -> CallColumns {
        let mut c = CallColumns::default();
        for call in calls {
            let r = &call.row;
            c.applied_event_ids
                .push(array_literal(&call.applied_event_ids));
            c.id.push(r.id);
            c.tenant_id.push(r.tenant_id);
            c.agent_id.push(r.agent_id);
            c.lead_id.push(r.lead_id);
            c.batch_id.push(r.batch_id);
            c.initiated_by_user_id.push(r.initiated_by_user_id);
            c.direction.push(r.direction.clone());
            c.from_number.push(r.from_number.clone());
            c.to_number.push(r.to_number.clone());
            c.status.push(r.status.clone());
            c.started_at.push(r.started_at);
            c.answered_at.push(r.answered_at);
            c.ended_at.push(r.ended_at);
            c.duration_seconds.push(r.duration_seconds);
            c.cost.push(r.cost);
            c.currency.push(r.currency.clone());
            c.recording_url.push(r.recording_url.clone());
            c.created_at.push(r.created_at);
        }
        c
    }

    fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(self.id)
            .bind(self.tenant_id)
            .bind(self.agent_id)
            .bind(self.lead_id)
            .bind(self.batch_id)
            .bind(self.initiated_by_user_id)
            .bind(self.direction)
            .bind(self.from_number)
            .bind(self.to_number)
            .bind(self.status)
            .bind(self.started_at)
            .bind(self.answered_at)
            .bind(self.ended_at)
            .bind(self.duration_seconds)
            .bind(self.cost)
            .bind(self.currency)
            .bind(self.recording_url)
            .bind(self.created_at)
            .bind(self.applied_event_ids)
    }
}

fn array_literal(ids: &[Uuid]) -> String {
    let mut out = String::with_capacity(2 + ids.len() * 37);
    out.push('{');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
    }
    out.push('}');
    out
}

const CALL_ARRAYS: &str =
    "$1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], \
    $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[], \
    $13::timestamptz[], $14::int4[], $15::numeric[], $16::text[], $17::text[], $18::timestamptz[], \
    $19::text[]";

pub async fn insert_calls(
    conn: &mut PgConnection,
    rows: &[&Merged<CallRow>],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut copy = CopyBinary::with_capacity(rows.len() * 400);
    for call in rows {
        let r = &call.row;
        copy.field(&r.id)?
            .field(&r.tenant_id)?
            .field(&r.agent_id)?
            .field(&r.lead_id)?
            .field(&r.batch_id)?
            .field(&r.initiated_by_user_id)?
            .field(&r.direction)?
            .field(&r.from_number)?
            .field(&r.to_number)?
            .field(&r.status)?
            .field(&r.started_at)?
            .field(&r.answered_at)?
            .field(&r.ended_at)?
            .field(&r.duration_seconds)?
            .field(&r.cost)?
            .field(&r.currency)?
            .field(&r.recording_url)?
            .field(&r.created_at)?
            .field(&call.applied_event_ids)?
            .end_row();
    }
    copy.send(
        conn,
        &format!("voice_call_logs ({CALL_COLUMNS}, applied_event_ids)"),
    )
    .await?;
    Ok(())
}

/// Rewrites existing rows. `previous_created_at` finds each row's partition;
/// a call whose earliest event moved to another month moves with it. Joined
/// to the table as index probes: where calls span batches (every call of
/// live traffic does), a batch's thousands of keys would otherwise have
/// the planner scan every partition whole.
pub async fn update_calls(
    conn: &mut PgConnection,
    rows: &[(&Merged<CallRow>, DateTime<Utc>)],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let previous: Vec<DateTime<Utc>> = rows.iter().map(|(_, p)| *p).collect();
    let sql = format!(
        "UPDATE voice_call_logs AS c SET
            agent_id = n.agent_id, lead_id = n.lead_id, batch_id = n.batch_id,
            initiated_by_user_id = n.initiated_by_user_id, direction = n.direction,
            from_number = n.from_number, to_number = n.to_number, status = n.status,
            started_at = n.started_at, answered_at = n.answered_at, ended_at = n.ended_at,
            duration_seconds = n.duration_seconds, cost = n.cost, currency = n.currency,
            recording_url = n.recording_url, created_at = n.created_at,
            applied_event_ids = n.ids::uuid[]
         FROM UNNEST({CALL_ARRAYS}, $20::timestamptz[])
              AS n({CALL_COLUMNS}, ids, previous_created_at)
         WHERE c.id = n.id AND c.created_at = n.previous_created_at"
    );
    let query = CallColumns::of(rows.iter().map(|(r, _)| *r))
        .bind(sqlx::query(&sql))
        .bind(previous);
    as_index_probes(conn, rows.len(), async |conn| query.execute(conn).await).await?;
    Ok(())
}

/// The columns of a [`StatsRow`], in its field order.
pub const STATS_COLUMNS: &str = "tenant_id, day, agent_id, calls_started, calls_answered, \
    calls_completed, calls_failed, total_duration_seconds, total_cost";

/// A `voice_call_stats_daily` row, as stored and as pushed in `call.stats`.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct StatsRow {
    pub tenant_id: Uuid,
    pub day: NaiveDate,
    pub agent_id: Uuid,
    pub calls_started: i64,
    pub calls_answered: i64,
    pub calls_completed: i64,
    pub calls_failed: i64,
    pub total_duration_seconds: i64,
    pub total_cost: Decimal,
}

/// Adds the batch's pre-summed deltas, one row per key, in key order (so
/// concurrent batches lock the same rows in the same order).
pub async fn add_stats(
    conn: &mut PgConnection,
    deltas: &BTreeMap<StatsKey, StatsDelta>,
) -> Result<Vec<StatsRow>, sqlx::Error> {
    let changed: Vec<(&StatsKey, &StatsDelta)> =
        deltas.iter().filter(|(_, d)| !d.is_zero()).collect();
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let col = |f: fn(&StatsDelta) -> i64| changed.iter().map(|(_, d)| f(d)).collect::<Vec<i64>>();
    let sql = format!(
        "INSERT INTO voice_call_stats_daily AS s ({STATS_COLUMNS})
         SELECT * FROM UNNEST($1::uuid[], $2::date[], $3::uuid[], $4::int8[], $5::int8[],
            $6::int8[], $7::int8[], $8::int8[], $9::numeric[])
         ON CONFLICT (tenant_id, day, agent_id) DO UPDATE SET
            calls_started = s.calls_started + EXCLUDED.calls_started,
            calls_answered = s.calls_answered + EXCLUDED.calls_answered,
            calls_completed = s.calls_completed + EXCLUDED.calls_completed,
            calls_failed = s.calls_failed + EXCLUDED.calls_failed,
            total_duration_seconds = s.total_duration_seconds + EXCLUDED.total_duration_seconds,
            total_cost = s.total_cost + EXCLUDED.total_cost,
            updated_at = now()
         RETURNING {STATS_COLUMNS}"
    );
    sqlx::query_as(&sql)
        .bind(changed.iter().map(|(k, _)| k.tenant_id).collect::<Vec<_>>())
        .bind(changed.iter().map(|(k, _)| k.day).collect::<Vec<_>>())
        .bind(changed.iter().map(|(k, _)| k.agent_id).collect::<Vec<_>>())
        .bind(col(|d| d.calls_started))
        .bind(col(|d| d.calls_answered))
        .bind(col(|d| d.calls_completed))
        .bind(col(|d| d.calls_failed))
        .bind(col(|d| d.total_duration_seconds))
        .bind(
            changed
                .iter()
                .map(|(_, d)| d.total_cost)
                .collect::<Vec<_>>(),
        )
        .fetch_all(conn)
        .await
}

/// A stored transcript line.
#[derive(Debug, Clone)]
pub struct NewLine<'a> {
    pub tenant_id: Uuid,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub line: &'a TranscriptLine,
}

/// Stores the lines whose `(call_id, seq)` is new, the first of the batch
/// for a key it holds twice, and returns them in key order. The repeats
/// are dropped here: `stored` holds the lines already known to be stored
/// (those of calls without a row, read by [`side_rows`]), and the stored
/// lines of the calls in `probe` are read first. The rest go in by `COPY`:
/// `INSERT … ON CONFLICT DO NOTHING` checks and inserts each row
/// speculatively, which cost the backend about 60 % more CPU for the same
/// lines (issue #14, BENCHMARKS.md). A line of the same key stored
/// meanwhile by another transaction can only come from a producer that
/// broke the topic's key (a call's lines are one partition's, applied by
/// one lane at a time); its unique violation refuses the batch, whose
/// split then finds that line stored and drops it as a repeat.
pub async fn insert_transcripts<'l, 'a>(
    conn: &mut PgConnection,
    lines: &'l [NewLine<'a>],
    mut stored: HashSet<(Uuid, i32)>,
    probe: &[Uuid],
) -> Result<Vec<&'l NewLine<'a>>, sqlx::Error> {
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    if !probe.is_empty() {
        let read: Vec<(Uuid, i32)> = as_index_probes(conn, probe.len(), async |conn| {
            sqlx::query_as(
                "SELECT call_id, seq FROM voice_call_transcripts WHERE call_id = ANY($1)",
            )
            .bind(probe)
            .fetch_all(conn)
            .await
        })
        .await?;
        stored.extend(read);
    }
    let mut fresh: Vec<&NewLine<'a>> = lines
        .iter()
        .filter(|l| stored.insert((l.line.call_id, l.line.seq)))
        .collect();
    if fresh.is_empty() {
        return Ok(fresh);
    }
    fresh.sort_by_key(|l| (l.line.call_id, l.line.seq));
    let mut copy = CopyBinary::with_capacity(fresh.len() * 160);
    for l in &fresh {
        copy.field(&l.line.call_id)?
            .field(&l.line.seq)?
            .field(&l.tenant_id)?
            .field(&l.line.speaker)?
            .field(&l.line.text)?
            .field(&l.occurred_at)?
            .field(&l.event_id)?
            .end_row();
    }
    copy.send(
        conn,
        "voice_call_transcripts (call_id, seq, tenant_id, speaker, text, occurred_at, event_id)",
    )
    .await?;
    Ok(fresh)
}

/// What is stored of calls that have no row in `voice_call_logs`: a call's
/// events come in any order, and its transcript lines and analysis are
/// stored without one.
#[derive(Debug, Default)]
pub struct SideRows {
    /// Each such call's tenant, by its rows, for the tenant check of its
    /// events.
    pub tenants: HashMap<Uuid, Uuid>,
    /// Their stored transcript lines.
    pub lines: HashSet<(Uuid, i32)>,
    /// Those with a stored analysis.
    pub analyzed: HashSet<Uuid>,
}

/// Reads the [`SideRows`] of these calls, which have no row. In the one
/// lookup that the tenant check needs, all that the batch's later lookups
/// of transcripts and analyses would read of them: those then probe only
/// the calls that have a row, or an analysis (which they lock). Nobody
/// else writes these calls' rows meanwhile: a call's events are one
/// partition's, applied by one lane at a time (see [`insert_transcripts`]
/// for a producer that breaks the key).
pub async fn side_rows(conn: &mut PgConnection, ids: &[Uuid]) -> Result<SideRows, sqlx::Error> {
    let mut side = SideRows::default();
    if ids.is_empty() {
        return Ok(side);
    }
    let rows: Vec<(Uuid, Uuid, Option<i32>)> = as_index_probes(conn, ids.len(), async |conn| {
        sqlx::query_as(
            "SELECT call_log_id, tenant_id, NULL::integer FROM voice_call_analysis
             WHERE call_log_id = ANY($1)
             UNION ALL
             SELECT call_id, tenant_id, seq FROM voice_call_transcripts WHERE call_id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(conn)
        .await
    })
    .await?;
    for (call, tenant, seq) in rows {
        side.tenants.insert(call, tenant);
        match seq {
            Some(seq) => side.lines.insert((call, seq)),
            None => side.analyzed.insert(call),
        };
    }
    Ok(side)
}

/// Locks and returns the stored analyses of these calls, with the events
/// merged into each, by call.
pub async fn lock_analyses(
    conn: &mut PgConnection,
    call_ids: &[Uuid],
) -> Result<HashMap<Uuid, Merged<AnalysisRow>>, sqlx::Error> {
    if call_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<Merged<AnalysisRow>> = as_index_probes(conn, call_ids.len(), async |conn| {
        sqlx::query_as(
            "SELECT call_log_id, tenant_id, sentiment, lead_category, summary, analyzed_at, applied_event_ids
             FROM voice_call_analysis WHERE call_log_id = ANY($1)
             ORDER BY call_log_id FOR UPDATE",
        )
        .bind(call_ids)
        .fetch_all(conn)
        .await
    })
    .await?;
    Ok(rows.into_iter().map(|m| (m.row.call_log_id, m)).collect())
}

/// Stores analyses of calls that have none, by `COPY` (see
/// [`insert_transcripts`] for why not `ON CONFLICT`, and for what a
/// concurrent insert of the same call's analysis does). The row's `id` is
/// drawn here, random as the column's default would draw it: a volatile
/// default left to `COPY` makes it insert row by row instead of a page
/// at a time.
pub async fn insert_analyses(
    conn: &mut PgConnection,
    rows: &[&Merged<AnalysisRow>],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut copy = CopyBinary::with_capacity(rows.len() * 200);
    for m in rows {
        let r = &m.row;
        copy.field(&Uuid::new_v4())?
            .field(&r.call_log_id)?
            .field(&r.tenant_id)?
            .field(&r.sentiment)?
            .field(&r.lead_category)?
            .field(&r.summary)?
            .field(&r.analyzed_at)?
            .field(&m.applied_event_ids)?
            .end_row();
    }
    copy.send(
        conn,
        "voice_call_analysis (id, call_log_id, tenant_id, sentiment, lead_category, summary, \
         analyzed_at, applied_event_ids)",
    )
    .await?;
    Ok(())
}

/// Rewrites analyses that [`lock_analyses`] returned, as merged. Joined
/// to the table as index probes: a stream of re-analyses would otherwise
/// have the planner, seeing thousands of keys, scan the table whole.
pub async fn update_analyses(
    conn: &mut PgConnection,
    rows: &[&Merged<AnalysisRow>],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let query = sqlx::query(
        "UPDATE voice_call_analysis AS a SET
            sentiment = n.s, lead_category = n.l, summary = n.m, analyzed_at = n.at,
            applied_event_ids = n.ids::uuid[]
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                     $6::timestamptz[], $7::text[]) AS n(c, t, s, l, m, at, ids)
         WHERE a.call_log_id = n.c AND a.tenant_id = n.t",
    )
    .bind(rows.iter().map(|m| m.row.call_log_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|m| m.row.tenant_id).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|m| m.row.sentiment.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|m| m.row.lead_category.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|m| m.row.summary.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|m| m.row.analyzed_at).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|m| array_literal(&m.applied_event_ids))
            .collect::<Vec<_>>(),
    );
    as_index_probes(conn, rows.len(), async |conn| query.execute(conn).await).await?;
    Ok(())
}

/// A `voice_call_stats_daily` row as a channel snapshot shows it: the row
/// `call.stats` pushes, and when it last changed.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct StatsRowAt {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub stats: StatsRow,
    #[serde(with = "crate::instant::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// A `voice_call_logs` row as a channel snapshot shows it: the row
/// `call.updated` pushes, and when it last changed.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct CallRowAt {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub call: CallRow,
    #[serde(with = "crate::instant::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// A stored transcript line, as the call channel's snapshot lists it.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct StoredLine {
    pub call_id: Uuid,
    pub seq: i32,
    pub speaker: String,
    pub text: String,
    #[serde(with = "crate::instant::rfc3339")]
    pub occurred_at: DateTime<Utc>,
}

/// A tenant's aggregate rows of one UTC day, by agent.
pub async fn day_stats(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    day: NaiveDate,
) -> Result<Vec<StatsRowAt>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {STATS_COLUMNS}, updated_at
         FROM voice_call_stats_daily
         WHERE tenant_id = $1 AND day = $2
         ORDER BY agent_id"
    ))
    .bind(tenant_id)
    .bind(day)
    .fetch_all(conn)
    .await
}

/// A tenant's calls not ended yet, newest first, at most `limit`.
pub async fn calls_in_progress(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    limit: i64,
) -> Result<Vec<CallRowAt>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {CALL_COLUMNS}, updated_at FROM voice_call_logs
         WHERE tenant_id = $1 AND ended_at IS NULL AND deleted_at IS NULL
         ORDER BY created_at DESC
         LIMIT $2"
    ))
    .bind(tenant_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// One call of the tenant, if stored.
pub async fn load_call(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    call_id: Uuid,
) -> Result<Option<CallRowAt>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {CALL_COLUMNS}, updated_at FROM voice_call_logs
         WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL
         ORDER BY created_at DESC
         LIMIT 1"
    ))
    .bind(call_id)
    .bind(tenant_id)
    .fetch_optional(conn)
    .await
}

/// A call's transcript in `seq` order, at most `limit` lines.
pub async fn transcript(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    call_id: Uuid,
    limit: i64,
) -> Result<Vec<StoredLine>, sqlx::Error> {
    sqlx::query_as(
        "SELECT call_id, seq, speaker, text, occurred_at
         FROM voice_call_transcripts
         WHERE call_id = $1 AND tenant_id = $2
         ORDER BY seq
         LIMIT $3",
    )
    .bind(call_id)
    .bind(tenant_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}
