//! The voice pipeline against a real Postgres: hand-built records through
//! `BatchApplier` (decode → apply in one transaction), then the rows,
//! aggregates, billing chain, outbox and dead letters it left.

mod common;

use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use common::{envelope, live_of_type, Feed, ROW_RECORDS};
use lad_consumers::voice::{store, VoiceDomain};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

fn feed(pool: &PgPool) -> Feed<VoiceDomain> {
    Feed::new(VoiceDomain, pool.clone(), "lad.voice.call-events.v1", None)
}

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 23, 58, 0).unwrap() + Span::minutes(minutes)
}

/// A `call.started` of `call` (a new agent), which gives the call its row.
fn started(tenant: Uuid, call: Uuid) -> Value {
    lifecycle(tenant, call, Uuid::new_v4(), "0")[0].clone()
}

fn lifecycle(tenant: Uuid, call: Uuid, agent: Uuid, cost: &str) -> Vec<Value> {
    vec![
        envelope(
            tenant,
            "call.started",
            at(0),
            json!({"call_id": call, "agent_id": agent,
            "direction": "outbound", "from_number": "+1", "to_number": "+2"}),
        ),
        envelope(tenant, "call.answered", at(1), json!({"call_id": call})),
        envelope(
            tenant,
            "call.transcript",
            at(2),
            json!({"call_id": call, "seq": 0, "speaker": "agent", "text": "hi"}),
        ),
        envelope(
            tenant,
            "call.ended",
            at(3),
            json!({"call_id": call, "status": "completed",
            "duration_seconds": 120, "cost": cost}),
        ),
        envelope(
            tenant,
            "call.analyzed",
            at(4),
            json!({"call_id": call, "sentiment": "positive",
            "lead_category": "hot"}),
        ),
    ]
}

type Stats = Vec<(chrono::NaiveDate, i64, i64, i64, i64, i64, Decimal)>;

async fn stats(pool: &PgPool) -> Stats {
    sqlx::query_as(
        "SELECT day, calls_started, calls_answered, calls_completed, calls_failed,
                total_duration_seconds, total_cost FROM voice_call_stats_daily ORDER BY day",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn call_row(pool: &PgPool, call: Uuid) -> (String, DateTime<Utc>, Option<Decimal>) {
    sqlx::query_as("SELECT status, created_at, cost FROM voice_call_logs WHERE id = $1")
        .bind(call)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn reversed_arrival_across_batches_converges_to_the_in_order_result(pool: PgPool) {
    let (tenant, agent) = (Uuid::new_v4(), Uuid::new_v4());
    let (in_order, reversed) = (Uuid::new_v4(), Uuid::new_v4());
    let mut feed = feed(&pool);
    feed.send(&lifecycle(tenant, in_order, agent, "1.25")).await;
    let mut back = lifecycle(tenant, reversed, agent, "1.25");
    back.reverse();
    for e in back {
        feed.send(&[e]).await;
    }
    let a = call_row(&pool, in_order).await;
    let b = call_row(&pool, reversed).await;
    assert_eq!(
        (a.0.as_str(), a.1, a.2),
        ("completed", at(0), Some("1.25".parse().unwrap()))
    );
    assert_eq!((&a.0, a.1, a.2), (&b.0, b.1, b.2));
    // Started and answered on the 20th, ended on the 21st (UTC).
    let s = stats(&pool).await;
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].1, s[0].2, s[0].3), (2, 2, 0));
    assert_eq!(
        (s[1].1, s[1].3, s[1].5, s[1].6),
        (0, 2, 240, "2.50".parse().unwrap())
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn duplicates_change_nothing_and_the_call_is_charged_once(pool: PgPool) {
    let (tenant, agent, call) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    sqlx::query("INSERT INTO billing_wallets (tenant_id, current_balance) VALUES ($1, 10)")
        .bind(tenant)
        .execute(&pool)
        .await
        .unwrap();
    let mut feed = feed(&pool);
    let events = lifecycle(tenant, call, agent, "0.75");
    let first = feed.send(&events).await;
    assert_eq!(first.applied, 5);
    // Same event ids again, and a second call.ended under a new event id.
    let again = feed.send(&events).await;
    assert_eq!((again.applied, again.duplicates), (0, 5));
    let mut second_end = events[3].clone();
    second_end["event_id"] = json!(Uuid::new_v4());
    second_end["occurred_at"] = json!(at(9).to_rfc3339());
    feed.send(&[second_end]).await;

    let s = stats(&pool).await;
    assert_eq!(s.iter().map(|r| r.3).sum::<i64>(), 1, "completed once");
    let balance: Decimal =
        sqlx::query_scalar("SELECT current_balance FROM billing_wallets WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(balance, "9.25".parse().unwrap());
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM billing_usage_events WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(keys, vec![format!("voice-call:{call}")]);
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM voice_call_transcripts")
            .fetch_one(&pool)
            .await
            .unwrap(),
        1
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn another_tenants_event_for_a_call_is_dead_lettered_and_the_batch_goes_on(pool: PgPool) {
    let (tenant, intruder, agent, call) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let mut feed = feed(&pool);
    let mut events = lifecycle(tenant, call, agent, "0");
    events.insert(
        2,
        envelope(
            intruder,
            "call.ended",
            at(2),
            json!({"call_id": call, "status": "failed",
        "duration_seconds": 1, "cost": "5"}),
        ),
    );
    events.push(json!({"not": "an envelope"}));
    let outcome = feed.send(&events).await;
    assert_eq!((outcome.applied, outcome.rejected), (5, 2));
    assert_eq!(call_row(&pool, call).await.0, "completed");
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT error_kind FROM hub_dead_letters ORDER BY kafka_offset")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(kinds, vec!["rule_violation", "invalid_envelope"]);

    // The outbox holds the batch's pushes and both dead letters, in one row.
    let records: Vec<Value> = sqlx::query_scalar(&format!("SELECT {ROW_RECORDS} FROM hub_outbox"))
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    let records = records[0].as_array().unwrap();
    let types: Vec<&str> = records
        .iter()
        .filter_map(|r| r["value"]["type"].as_str())
        .collect();
    assert!(types.contains(&"call.updated") && types.contains(&"call.stats"));
    assert!(types.contains(&"call.transcript") && types.contains(&"call.analyzed"));
    assert_eq!(
        records
            .iter()
            .filter(|r| r["topic"] == "lad.dead-letters.v1")
            .count(),
        2
    );
    assert!(records
        .iter()
        .filter(|r| r["topic"] == "lad.live.v1")
        .all(|r| r["key"] == json!(tenant.to_string())));
}

/// A batch's lookups by call id, and its rewrites of calls and analyses,
/// probe the indexes even when its keys are many beside the table (there
/// the planner, given the keys, scans every table whole, and each batch
/// costs more as the tables grow), and they leave the transaction's
/// planner settings as they found them.
#[sqlx::test(migrations = "../migrations")]
async fn a_batchs_call_lookups_probe_the_indexes_and_leave_the_settings_alone(pool: PgPool) {
    let tenant = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO voice_call_logs (id, tenant_id, status, created_at)
         SELECT gen_random_uuid(), $1, 'completed', $2 FROM generate_series(1, 4000)",
    )
    .bind(tenant)
    .bind(at(0))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(
        "INSERT INTO voice_call_analysis (call_log_id, tenant_id, analyzed_at)
         SELECT id, tenant_id, created_at FROM voice_call_logs;
         INSERT INTO voice_call_transcripts (call_id, seq, tenant_id, speaker, text, occurred_at, event_id)
         SELECT id, 0, tenant_id, 'agent', 'hi', created_at, gen_random_uuid() FROM voice_call_logs;
         ANALYZE",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM voice_call_logs LIMIT 500")
        .fetch_all(&pool)
        .await
        .unwrap();
    ids.extend((0..1500).map(|_| Uuid::new_v4()));
    ids.sort_unstable();

    // This backend's scan counts, which include its earlier transactions'
    // not yet flushed: only their change across the lookups tells. A bitmap
    // heap scan counts as a `seq_scan` too, but its rows do not count as
    // read sequentially.
    async fn scans(conn: &mut sqlx::PgConnection) -> (i64, i64) {
        sqlx::query_as(
            "SELECT coalesce(sum(seq_tup_read), 0)::int8, coalesce(sum(idx_scan), 0)::int8
             FROM pg_stat_xact_user_tables
             WHERE relname LIKE 'voice_call_logs%'
                OR relname IN ('voice_call_analysis', 'voice_call_transcripts')",
        )
        .fetch_one(conn)
        .await
        .unwrap()
    }
    let mut tx = pool.begin().await.unwrap();
    let before = scans(&mut tx).await;
    let locked = store::lock_calls(&mut tx, &ids).await.unwrap();
    let side = store::side_rows(&mut tx, &ids).await.unwrap();
    let analyses = store::lock_analyses(&mut tx, &ids).await.unwrap();
    assert_eq!(
        (locked.len(), side.tenants.len(), analyses.len()),
        (500, 500, 500)
    );
    assert_eq!((side.lines.len(), side.analyzed.len()), (500, 500));
    assert!(side.tenants.values().all(|t| *t == tenant));
    // Rewriting those calls and analyses joins them to the tables the same way.
    let calls: Vec<_> = locked.values().map(|c| (c, c.row.created_at)).collect();
    store::update_calls(&mut tx, &calls).await.unwrap();
    let rewritten: Vec<_> = analyses.values().collect();
    store::update_analyses(&mut tx, &rewritten).await.unwrap();
    let after = scans(&mut tx).await;
    assert_eq!(after.0 - before.0, 0, "no row read by a sequential scan");
    assert!(after.1 > before.1);
    let settings: (String, String) = sqlx::query_as(
        "SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan')",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(settings, ("auto".to_owned(), "on".to_owned()));
    tx.rollback().await.unwrap();
}

/// The call lock finds a call in whichever partition its row is (a past
/// month's, this month's, the default one for a month without its own),
/// locks it, and probes no partition that holds no row.
#[sqlx::test(migrations = "../migrations")]
async fn the_call_lock_finds_calls_in_every_partition_and_probes_no_empty_one(pool: PgPool) {
    let tenant = Uuid::new_v4();
    let created = [
        Utc::now(),
        Utc::now() - Span::days(62),
        Utc.with_ymd_and_hms(2001, 1, 1, 0, 0, 0).unwrap(),
    ];
    let mut ids = Vec::new();
    for at in created {
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO voice_call_logs (id, tenant_id, created_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(tenant)
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
        ids.push(id);
    }
    // Enough new ids for the lookup to run as index probes too.
    ids.extend((0..100).map(|_| Uuid::new_v4()));
    ids.sort_unstable();
    let holding: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT tableoid::regclass::text FROM voice_call_logs ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        holding.len(),
        3,
        "three partitions hold the calls: {holding:?}"
    );
    assert!(holding.contains(&"voice_call_logs_default".to_owned()));

    async fn index_scans(conn: &mut sqlx::PgConnection, holding: bool, names: &[String]) -> i64 {
        sqlx::query_scalar(
            "SELECT coalesce(sum(idx_scan), 0)::int8 FROM pg_stat_xact_user_tables
             WHERE relname LIKE 'voice_call_logs_%' AND (relname = ANY($1)) = $2",
        )
        .bind(names)
        .bind(holding)
        .fetch_one(conn)
        .await
        .unwrap()
    }
    let mut tx = pool.begin().await.unwrap();
    let (empty_before, full_before) = (
        index_scans(&mut tx, false, &holding).await,
        index_scans(&mut tx, true, &holding).await,
    );
    let locked = store::lock_calls(&mut tx, &ids).await.unwrap();
    let mut found: Vec<DateTime<Utc>> = locked.values().map(|c| c.row.created_at).collect();
    found.sort();
    let mut expected: Vec<DateTime<Utc>> = created
        .iter()
        .map(|t| DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap())
        .collect();
    expected.sort();
    assert_eq!(found, expected);
    assert_eq!(index_scans(&mut tx, false, &holding).await, empty_before);
    assert!(index_scans(&mut tx, true, &holding).await >= full_before + 3);

    // Locked: another transaction cannot take any of the three rows.
    let mut other = pool.begin().await.unwrap();
    for id in locked.keys() {
        let taken = sqlx::query("SELECT 1 FROM voice_call_logs WHERE id = $1 FOR UPDATE NOWAIT")
            .bind(id)
            .execute(&mut *other)
            .await;
        let err = taken.unwrap_err();
        let code = err.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("55P03"), "call {id} is locked");
        other.rollback().await.unwrap();
        other = pool.begin().await.unwrap();
    }
    tx.rollback().await.unwrap();

    // With no row anywhere, nothing is found.
    sqlx::query("DELETE FROM voice_call_logs")
        .execute(&pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    assert!(store::lock_calls(&mut tx, &ids).await.unwrap().is_empty());
}

/// A line is stored and pushed once per `(call_id, seq)`: the first of a
/// batch that holds a key twice, and never again once stored, whatever
/// event id or text it comes back with.
#[sqlx::test(migrations = "../migrations")]
async fn a_line_is_stored_and_pushed_once_per_call_and_seq(pool: PgPool) {
    let (tenant, call) = (Uuid::new_v4(), Uuid::new_v4());
    let line = |seq: i32, text: &str| {
        envelope(
            tenant,
            "call.transcript",
            at(seq.into()),
            json!({"call_id": call, "seq": seq, "speaker": "agent", "text": text}),
        )
    };
    let mut feed = feed(&pool);
    let first = feed.send(&[line(1, "one"), line(0, "zero")]).await;
    assert_eq!((first.applied, first.duplicates), (2, 0));
    let second = feed
        .send(&[
            line(0, "zero again"),
            line(3, "three"),
            line(2, "two"),
            line(2, "two again"),
        ])
        .await;
    assert_eq!((second.applied, second.duplicates), (2, 2));
    // Up to here the call had no row, and its stored lines came with the
    // tenant check's lookup; once it has one, they are probed by call.
    assert_eq!(feed.send(&[started(tenant, call)]).await.applied, 1);
    let third = feed.send(&[line(1, "one again"), line(4, "four")]).await;
    assert_eq!((third.applied, third.duplicates), (1, 1));

    let expected: Vec<(i32, String)> = ["zero", "one", "two", "three", "four"]
        .iter()
        .enumerate()
        .map(|(seq, text)| (seq as i32, (*text).to_owned()))
        .collect();
    let stored: Vec<(i32, String)> = sqlx::query_as(
        "SELECT seq, text FROM voice_call_transcripts WHERE call_id = $1 ORDER BY seq",
    )
    .bind(call)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stored, expected);
    // Pushed in key order within each batch: zero and one, then two and
    // three, then four.
    let pushed: Vec<(i32, String)> = live_of_type(&pool, "call.transcript")
        .await
        .iter()
        .map(|m| {
            let seq = m["data"]["seq"].as_i64().unwrap() as i32;
            (seq, m["data"]["text"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(pushed, expected);
}

/// A call's first analysis is inserted with an id of its own; a later one
/// rewrites that row, an earlier one arriving after it changes nothing.
#[sqlx::test(migrations = "../migrations")]
async fn a_calls_analysis_is_one_row_that_later_analyses_rewrite(pool: PgPool) {
    let (tenant, call) = (Uuid::new_v4(), Uuid::new_v4());
    let analysis = |minutes: i64, category: &str| {
        envelope(
            tenant,
            "call.analyzed",
            at(minutes),
            json!({"call_id": call, "sentiment": "neutral", "lead_category": category}),
        )
    };
    let mut feed = feed(&pool);
    assert_eq!(feed.send(&[analysis(5, "warm")]).await.applied, 1);
    let row = || async {
        sqlx::query_as::<_, (Uuid, String, DateTime<Utc>, i64)>(
            "SELECT id, lead_category, analyzed_at, cardinality(applied_event_ids)::int8
             FROM voice_call_analysis WHERE call_log_id = $1",
        )
        .bind(call)
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let inserted = row().await;
    assert_eq!(inserted.len(), 1);
    assert!(!inserted[0].0.is_nil());
    assert_eq!(
        (inserted[0].1.as_str(), inserted[0].2, inserted[0].3),
        ("warm", at(5), 1)
    );

    // A later analysis rewrites the row, an earlier one only adds its id:
    // first while the call has no row (its analysis found with the tenant
    // check's lookup), then once it has one (looked up by call).
    for (later, earlier, with_a_call_row) in [
        ((9, "hot"), (7, "cold"), false),
        ((11, "won"), (10, "lost"), true),
    ] {
        if with_a_call_row {
            assert_eq!(feed.send(&[started(tenant, call)]).await.applied, 1);
        }
        feed.send(&[analysis(later.0, later.1)]).await;
        feed.send(&[analysis(earlier.0, earlier.1)]).await;
        let rewritten = row().await;
        assert_eq!(rewritten.len(), 1);
        assert_eq!(rewritten[0].0, inserted[0].0, "the same row");
        let ids = if with_a_call_row { 5 } else { 3 };
        assert_eq!(
            (rewritten[0].1.as_str(), rewritten[0].2, rewritten[0].3),
            (later.1, at(later.0), ids)
        );
    }
    let pushed: Vec<String> = live_of_type(&pool, "call.analyzed")
        .await
        .iter()
        .map(|m| m["data"]["lead_category"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pushed, ["warm", "hot", "won"]);
}

/// An outbox row's id, `records`, `ahead` and `tail`.
type OutboxRow = (i64, Option<Value>, Option<Value>, Option<Value>);

/// A batch large enough writes its outbox row's bulk before it locks the
/// rows every batch shares (issue #14): the row's `ahead` holds the
/// updates made before (calls, lines, analyses) and its `tail` the rest
/// (stats, charges, wallets), with its final, positive id. A small batch
/// writes its row whole at the commit, in `records`.
#[sqlx::test(migrations = "../migrations")]
async fn a_large_batch_writes_its_rows_bulk_ahead_of_the_shared_rows(pool: PgPool) {
    let (tenant, agents) = (Uuid::new_v4(), [Uuid::new_v4(), Uuid::new_v4()]);
    sqlx::query("INSERT INTO billing_wallets (tenant_id, current_balance) VALUES ($1, 1000)")
        .bind(tenant)
        .execute(&pool)
        .await
        .unwrap();
    let calls = lad_consumers::pipeline::AHEAD_MIN_UPDATES / 3 + 1;
    let events: Vec<Value> = (0..calls)
        .flat_map(|i| lifecycle(tenant, Uuid::new_v4(), agents[i % 2], "0.50"))
        .collect();
    let mut feed = feed(&pool);
    assert_eq!(feed.send(&events).await.applied, events.len());
    let small = lifecycle(tenant, Uuid::new_v4(), agents[0], "0.50");
    assert_eq!(feed.send(&small).await.applied, small.len());

    let rows: Vec<OutboxRow> = sqlx::query_as(
        "SELECT id, records::jsonb, ahead::jsonb, tail::jsonb FROM hub_outbox ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let types = |records: &Value| -> Vec<String> {
        records
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["value"]["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(rows.len(), 2);
    let (large, records, ahead, tail) = &rows[0];
    assert!(*large > 0, "final id {large}");
    // Not in `records`, which a relay of an older hub would read alone.
    assert!(records.is_none());
    let ahead = types(ahead.as_ref().expect("the large batch wrote ahead"));
    let tail = types(tail.as_ref().expect("the large batch has a tail"));
    let count = |types: &[String], kind: &str| types.iter().filter(|t| *t == kind).count();
    assert_eq!(ahead.len(), 3 * calls);
    for kind in ["call.updated", "call.transcript", "call.analyzed"] {
        assert_eq!(count(&ahead, kind), calls, "{kind} ahead");
    }
    // Each agent-day (two agents, and the calls cross midnight), every
    // charge, and the wallet once, in that order.
    let mut want = vec!["call.stats".to_owned(); 4];
    want.extend(vec!["billing.charged".to_owned(); calls]);
    want.push("billing.wallet".to_owned());
    assert_eq!(tail, want);

    let (small_row, records, ahead, tail) = &rows[1];
    assert!(small_row > large);
    assert!(
        ahead.is_none() && tail.is_none(),
        "a small batch's row is written whole"
    );
    // Its call's three updates, its agent's two days, the charge, the wallet.
    assert_eq!(types(records.as_ref().unwrap()).len(), 3 + 2 + 2);
}
