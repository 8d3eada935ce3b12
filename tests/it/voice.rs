//! The voice path end to end: rdkafka producer → broker → hub process →
//! Postgres rows and aggregates → WebSocket pushes.

use crate::support::*;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, TimeZone, Utc};
use lad_hub::demo::{CallScript, Event};
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

pub(crate) type StatsKey = (Uuid, NaiveDate, Uuid);

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Stats {
    started: i64,
    answered: i64,
    completed: i64,
    failed: i64,
    duration: i64,
    cost: Decimal,
}

/// What one clean run gives, computed from the scripts alone.
pub(crate) fn reference(
    calls: &[(CallScript, DateTime<Utc>)],
    step: ChronoDuration,
) -> BTreeMap<StatsKey, Stats> {
    let mut out: BTreeMap<StatsKey, Stats> = BTreeMap::new();
    for (c, start) in calls {
        let key = |at: DateTime<Utc>| (c.tenant, at.date_naive(), c.agent_id);
        out.entry(key(*start)).or_default().started += 1;
        let mut i = 1;
        if c.answered {
            out.entry(key(*start + step)).or_default().answered += 1;
            i += 1;
        }
        let ended = *start + step * (i + c.transcript_lines);
        let s = out.entry(key(ended)).or_default();
        if c.status == "completed" {
            s.completed += 1;
        } else {
            s.failed += 1;
        }
        s.duration += i64::from(c.duration_seconds);
        s.cost += c.cost.parse::<Decimal>().expect("decimal");
    }
    out
}

pub(crate) async fn stored_stats(pool: &PgPool) -> BTreeMap<StatsKey, Stats> {
    type Row = (Uuid, NaiveDate, Uuid, i64, i64, i64, i64, i64, Decimal);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT tenant_id, day, agent_id, calls_started, calls_answered, calls_completed,
                calls_failed, total_duration_seconds, total_cost
         FROM voice_call_stats_daily",
    )
    .fetch_all(pool)
    .await
    .expect("stats");
    rows.into_iter()
        .map(
            |(t, d, a, started, answered, completed, failed, duration, cost)| {
                (
                    (t, d, a),
                    Stats {
                        started,
                        answered,
                        completed,
                        failed,
                        duration,
                        cost,
                    },
                )
            },
        )
        .collect()
}

/// Waits (at most `secs`) until the stored aggregates equal one clean run of `calls`.
pub(crate) async fn await_reference_stats(
    pool: &PgPool,
    calls: &[(CallScript, DateTime<Utc>)],
    step: ChronoDuration,
    secs: u64,
    what: &str,
) {
    let expected = reference(calls, step);
    eventually(secs, what, || async {
        (stored_stats(pool).await == expected).then_some(())
    })
    .await;
}

/// Every scripted transcript line is stored, once.
pub(crate) async fn assert_transcripts_stored(
    pool: &PgPool,
    calls: &[(CallScript, DateTime<Utc>)],
) {
    let lines: i64 = calls
        .iter()
        .map(|(c, _)| i64::from(c.transcript_lines))
        .sum();
    assert_eq!(
        count(pool, "SELECT count(*) FROM voice_call_transcripts").await,
        lines
    );
}

/// Calls starting around UTC midnight (so steps fall on two days), some
/// with their events in reverse order (a late `call.started`).
pub(crate) fn scripted_calls(
    rng: &mut impl Rng,
    tenant: Uuid,
    agents: &[Uuid],
    n: usize,
    step: ChronoDuration,
) -> (Vec<(CallScript, DateTime<Utc>)>, Vec<Event>) {
    let midnight = Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap();
    let mut calls = Vec::new();
    let mut events = Vec::new();
    for i in 0..n {
        let script = CallScript::random(rng, tenant, agents);
        let start = midnight - ChronoDuration::minutes(5) + ChronoDuration::seconds(7 * i as i64);
        let mut evs = script.events(start, step);
        if i % 3 == 0 {
            evs.reverse();
        }
        events.extend(evs);
        calls.push((script, start));
    }
    (calls, events)
}

#[sqlx::test(migrations = "./migrations")]
async fn voice_events_become_rows_aggregates_and_pushes_for_their_tenant_only(pool: PgPool) {
    let topics = Topics::new();
    let hub = Hub::start(&pool, &topics, HubOptions::default()).await;
    let (tenant_a, tenant_b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut client_a =
        Client::connect(&hub.ws_url(&token(tenant_a, Uuid::new_v4(), "member", &[]))).await;
    let mut client_b =
        Client::connect(&hub.ws_url(&token(tenant_b, Uuid::new_v4(), "viewer", &[]))).await;
    let sub = client_a
        .subscribe(&format!("tenant:{tenant_a}:calls"))
        .await;
    assert_eq!(sub["op"], "subscribed", "{sub}");
    let sub = client_b
        .subscribe(&format!("tenant:{tenant_b}:calls"))
        .await;
    assert_eq!(sub["op"], "subscribed", "{sub}");
    let denied = client_b
        .subscribe(&format!("tenant:{tenant_a}:calls"))
        .await;
    assert_eq!(
        (denied["op"].as_str(), denied["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let agents: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let step = ChronoDuration::minutes(2);
    let (calls, mut events) = scripted_calls(&mut rng, tenant_a, &agents, 30, step);
    // A duplicate under the same event_id, far from the original.
    events.push(events[0].clone());
    // And one with other content: an earlier start by another agent would
    // win the merge, but its event_id was applied, so it changes nothing.
    let mut altered = events
        .iter()
        .find(|e| e.value["type"] == "call.started")
        .expect("a start")
        .clone();
    altered.value["occurred_at"] = json!("2026-11-01T00:00:00.000Z");
    altered.value["data"]["agent_id"] = json!(Uuid::new_v4());
    events.push(altered);
    // Likewise an analysis: a later one would replace it, a repeat must not.
    let analysis = events
        .iter()
        .find(|e| e.value["type"] == "call.analyzed")
        .expect("an analysis")
        .clone();
    let mut reanalysis = analysis.clone();
    reanalysis.value["occurred_at"] = json!("2026-12-01T00:00:00.000Z");
    reanalysis.value["data"]["lead_category"] = json!("rewritten by a repeat");
    events.push(reanalysis);
    let producer = producer(false);
    produce(&producer, &topics.voice(), &events).await;

    await_reference_stats(&pool, &calls, step, 60, "aggregates equal the reference").await;
    let rows: Vec<(Uuid, String, Option<Uuid>, Option<Decimal>)> =
        sqlx::query_as("SELECT id, status, agent_id, cost FROM voice_call_logs")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), calls.len());
    for (script, _) in &calls {
        let row = rows
            .iter()
            .find(|r| r.0 == script.call_id)
            .expect("call stored");
        assert_eq!(row.1, script.status);
        assert_eq!(row.2, Some(script.agent_id));
        assert_eq!(row.3, Some(script.cost.parse().unwrap()));
    }
    let analyzed = calls.iter().filter(|(c, _)| c.answered).count() as i64;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM voice_call_analysis").await,
        analyzed
    );
    // The three repeats above were each taken for one.
    await_duplicates(hub.addr, &topics.voice(), 3.0).await;
    let category: String = sqlx::query_scalar(
        "SELECT lead_category FROM voice_call_analysis WHERE call_log_id = $1::text::uuid",
    )
    .bind(analysis.value["data"]["call_id"].as_str())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(json!(category), analysis.value["data"]["lead_category"]);
    assert_transcripts_stored(&pool, &calls).await;

    // The pushes: tenant A sees every call's final row; tenant B sees nothing.
    let finals = |msgs: &[serde_json::Value]| {
        calls.iter().all(|(c, _)| {
            msgs.iter().any(|m| {
                m["type"] == "call.updated"
                    && m["data"]["id"] == json!(c.call_id)
                    && m["data"]["status"] == c.status
            })
        })
    };
    let msgs = client_a
        .messages_until(60, |m| {
            finals(m) && m.iter().any(|x| x["type"] == "call.stats")
        })
        .await;
    assert!(msgs
        .iter()
        .all(|m| m["channel"] == format!("tenant:{tenant_a}:calls")));
    assert!(
        client_b.next_frame(2).await.is_none(),
        "tenant B received tenant A's data"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn poison_records_are_dead_lettered_and_everything_valid_is_applied(pool: PgPool) {
    let topics = Topics::new();
    let _hub = Hub::start(&pool, &topics, HubOptions::default()).await;
    let tenant = Uuid::new_v4();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let agents = [Uuid::new_v4()];
    let step = ChronoDuration::seconds(30);
    let (calls, events) = scripted_calls(&mut rng, tenant, &agents, 10, step);

    let call = Uuid::new_v4();
    let bad_ended = |cost: &str| {
        Event::new(
            call,
            "call.ended",
            tenant,
            Utc::now(),
            json!({
            "call_id": call, "status": "completed", "duration_seconds": 5, "cost": cost}),
        )
    };
    let mut wrong_tenant = Event::new(
        call,
        "call.answered",
        tenant,
        Utc::now(),
        json!({"call_id": call}),
    );
    wrong_tenant.value["tenant_id"] = json!("not-a-uuid");
    let mut missing = Event::new(
        call,
        "call.started",
        tenant,
        Utc::now(),
        json!({"call_id": call}),
    );
    missing.value["data"] = json!({"call_id": call, "direction": "outbound"});
    let poison: Vec<(String, Vec<u8>, &str)> = vec![
        ("k".into(), b"{not json".to_vec(), "invalid_json"),
        (
            call.to_string(),
            Event::new(
                call,
                "call.teleported",
                tenant,
                Utc::now(),
                json!({"call_id": call}),
            )
            .payload(),
            "unknown_type",
        ),
        (call.to_string(), missing.payload(), "invalid_data"),
        (
            call.to_string(),
            bad_ended("-0.01").payload(),
            "invalid_data",
        ),
        (call.to_string(), wrong_tenant.payload(), "invalid_envelope"),
    ];
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    let mut poison_iter = poison.iter();
    for (i, e) in events.iter().enumerate() {
        records.push((e.key.clone(), e.payload()));
        if i % 7 == 3 {
            if let Some((k, p, _)) = poison_iter.next() {
                records.push((k.clone(), p.clone()));
            }
        }
    }
    records.extend(poison_iter.map(|(k, p, _)| (k.clone(), p.clone())));
    produce_raw(&producer(false), &topics.voice(), &records).await;

    await_reference_stats(&pool, &calls, step, 60, "valid events applied").await;
    let letters: Vec<(String, String, Option<Vec<u8>>)> =
        eventually(30, "dead letters", || async {
            let rows: Vec<(String, String, Option<Vec<u8>>)> = sqlx::query_as(
                "SELECT error_kind, reason, payload FROM hub_dead_letters ORDER BY kafka_offset",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            (rows.len() == poison.len()).then_some(rows)
        })
        .await;
    for (_, payload, kind) in &poison {
        let letter = letters
            .iter()
            .find(|l| l.2.as_deref() == Some(payload.as_slice()))
            .expect("raw bytes kept");
        assert_eq!(letter.0, *kind, "reason: {}", letter.1);
        assert!(!letter.1.is_empty());
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM voice_call_logs").await,
        calls.len() as i64
    );
}

/// Guarantee 1: SIGKILL while a stream is consumed, restart, and the result
/// equals one clean run. The stream flows at a steady pace for longer than
/// the three kills take, and each kill checks that the hub still had work
/// in hand, so none of them hits an idle hub. Kills are 12 s apart, longer
/// than the 6 s session timeout: tansu keeps a killed member's partitions
/// while an earlier dead member of the group is still in its session (see
/// ARCHITECTURE.md).
#[sqlx::test(migrations = "./migrations")]
async fn killing_the_hub_mid_stream_changes_nothing_in_the_result(pool: PgPool) {
    let topics = Topics::new();
    let opts = HubOptions {
        restartable: true,
        batch_max: 40,
        ..HubOptions::default()
    };
    let mut hub = Hub::start(&pool, &topics, opts).await;
    let tenant = Uuid::new_v4();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let agents: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let step = ChronoDuration::minutes(1);
    let (calls, mut events) = scripted_calls(&mut rng, tenant, &agents, 300, step);
    // Producer retries and replays: the same events again, later.
    let replay: Vec<Event> = events.iter().step_by(9).cloned().collect();
    events.extend(replay);
    let total_events = events
        .iter()
        .map(Event::event_id)
        .collect::<std::collections::HashSet<_>>()
        .len() as i64;

    // Three kills 12 s apart plus three restarts take about 45 s: the
    // stream lasts 55 s.
    let timeline = Timeline::start();
    let records = events.into_iter().map(|e| (topics.voice(), e)).collect();
    let feeder = PacedFeeder::start(producer(true), records, Duration::from_secs(55));
    timeline.note(format_args!(
        "stream of {} records ({total_events} distinct events) starts, over 55 s",
        feeder.total()
    ));
    for kill in 1..=3 {
        tokio::time::sleep(Duration::from_secs(12)).await;
        let applied = applied_events(&pool).await;
        timeline.note(format_args!(
            "kill #{kill}: SIGKILL with {applied}/{total_events} events applied, {}/{} records produced",
            feeder.produced(),
            feeder.total()
        ));
        assert!(
            feeder.is_flowing(),
            "kill #{kill} came after the stream ended"
        );
        assert!(
            applied < total_events,
            "kill #{kill} hit a hub that had applied everything"
        );
        hub.restart().await;
        timeline.note(format_args!("hub ready again after kill #{kill}"));
    }
    feeder.finish().await;
    timeline.note("stream ended");

    await_reference_stats(&pool, &calls, step, 120, "aggregates equal one clean run").await;
    timeline.note("aggregates equal one clean run");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM voice_call_logs").await,
        calls.len() as i64
    );
    assert_eq!(applied_events(&pool).await, total_events);
    assert_transcripts_stored(&pool, &calls).await;
    let wrong: i64 = count(
        &pool,
        "SELECT count(*) FROM voice_call_logs WHERE ended_at IS NULL OR started_at IS NULL",
    )
    .await;
    assert_eq!(wrong, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM hub_dead_letters").await,
        0
    );
}

/// Issue #14: a pipeline runs several transactions at once, one per group
/// of partitions. The hub is killed (SIGKILL) at the moment at least two of
/// the voice pipeline's transactions are open, seen in `pg_locks` (each
/// holds its partitions' rows of `hub_consumer_offsets` until it ends), and
/// the result still equals one clean run: each transaction stored its own
/// partitions' offsets with its writes, so what the kill took back is
/// applied again and what committed is skipped. Two kills 12 s apart, for
/// the reason the test above gives.
#[sqlx::test(migrations = "./migrations")]
async fn killing_the_hub_with_several_transactions_in_flight_changes_nothing(pool: PgPool) {
    let topics = Topics::new();
    let opts = HubOptions {
        restartable: true,
        batch_max: 40,
        extra_env: vec![("LAD_PIPELINE_CONCURRENCY".into(), "3".into())],
    };
    let mut hub = Hub::start(&pool, &topics, opts).await;
    let tenant = Uuid::new_v4();
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let agents: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let step = ChronoDuration::minutes(1);
    let (calls, events) = scripted_calls(&mut rng, tenant, &agents, 300, step);
    let total_events = events.len() as i64;

    let timeline = Timeline::start();
    let records = events.into_iter().map(|e| (topics.voice(), e)).collect();
    let feeder = PacedFeeder::start(producer(true), records, Duration::from_secs(40));
    timeline.note(format_args!(
        "stream of {total_events} events starts, over 40 s"
    ));
    for kill in 1..=2 {
        tokio::time::sleep(Duration::from_secs(12)).await;
        let open = transactions_in_flight(&pool, 2, Duration::from_secs(20)).await;
        hub.kill();
        let applied = applied_events(&pool).await;
        timeline.note(format_args!(
            "kill #{kill}: SIGKILL with {open} pipeline transactions open, \
             {applied}/{total_events} events applied, {}/{total_events} produced",
            feeder.produced()
        ));
        assert!(
            open >= 2,
            "kill #{kill}: never saw two transactions in flight"
        );
        assert!(
            applied < total_events,
            "kill #{kill} hit a hub that had applied everything"
        );
        hub.start_again().await;
        timeline.note(format_args!("hub ready again after kill #{kill}"));
    }
    feeder.finish().await;
    timeline.note("stream ended");

    await_reference_stats(&pool, &calls, step, 120, "aggregates equal one clean run").await;
    eventually(60, "every event applied", || async {
        (applied_events(&pool).await == total_events).then_some(())
    })
    .await;
    assert_transcripts_stored(&pool, &calls).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM voice_call_logs").await,
        calls.len() as i64
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM hub_dead_letters").await,
        0
    );
}

/// Waits (up to `within`) until at least `at_least` transactions hold locks
/// on `hub_consumer_offsets` in this test's database, and returns how many
/// did at that moment (the most seen, if never that many).
async fn transactions_in_flight(pool: &PgPool, at_least: i64, within: Duration) -> i64 {
    let deadline = std::time::Instant::now() + within;
    let mut most = 0;
    let mut conn = pool.acquire().await.expect("connection");
    while std::time::Instant::now() < deadline {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT l.pid) FROM pg_locks l
             JOIN pg_class c ON c.oid = l.relation
             WHERE c.relname = 'hub_consumer_offsets'
               AND l.mode IN ('RowExclusiveLock', 'RowShareLock')
               AND l.granted
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.pid <> pg_backend_pid()",
        )
        .fetch_one(&mut *conn)
        .await
        .expect("pg_locks");
        if open >= at_least {
            return open;
        }
        most = most.max(open);
    }
    most
}

/// With no batch wait (the default), a backlog is still applied in batches
/// of what the consumer has already received, not a transaction a record:
/// the pipeline only stops waiting for more, it does not stop taking them.
#[sqlx::test(migrations = "./migrations")]
async fn a_backlog_is_applied_in_large_batches_without_a_batch_wait(pool: PgPool) {
    let topics = Topics::new();
    let kafka = lad_consumers::kafka::KafkaSettings {
        brokers: brokers(),
        ..Default::default()
    };
    lad_consumers::kafka::ensure_topics(&kafka, &[&topics.voice()], 3, 1)
        .await
        .expect("voice topic");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let agents: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let step = ChronoDuration::minutes(1);
    let (calls, events) = scripted_calls(&mut rng, Uuid::new_v4(), &agents, 150, step);
    produce(&producer(false), &topics.voice(), &events).await;

    let hub = Hub::start(&pool, &topics, HubOptions::default()).await;
    await_reference_stats(&pool, &calls, step, 60, "the backlog applied").await;

    let (status, metrics) = lad_hub::http::fetch(hub.addr, "/metrics")
        .await
        .expect("metrics");
    assert_eq!(status, 200);
    let series = format!(r#"lad_batch_seconds_count{{topic="{}"}} "#, topics.voice());
    let batches: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .expect("the voice pipeline's batch count");
    assert!(batches >= 1.0);
    assert!(
        batches * 10.0 <= events.len() as f64,
        "{} events took {batches} batches",
        events.len()
    );
}
