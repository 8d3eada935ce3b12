//! The billing pipeline against a real Postgres: hand-built records through
//! `BatchApplier` (decode → apply in one transaction), and `billing::charge`
//! as the voice pipeline calls it; then the wallets, ledger, usage events,
//! daily costs, outbox and dead letters they left.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::{at, envelope, live, Feed, DEAD, ROW_RECORDS};
use lad_consumers::billing::{self, BillingDomain, UsageRequest};
use lad_consumers::pipeline::{Effects, EventMeta};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

const TOPIC: &str = "lad.billing.usage.v1";

fn feed(pool: &PgPool) -> Feed<BillingDomain> {
    Feed::new(BillingDomain::new(), pool.clone(), TOPIC, Some(b"tenant"))
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn credit(tenant: Uuid, key: &str, amount: &str) -> Value {
    envelope(
        tenant,
        "billing.credit",
        at(0),
        json!({"idempotency_key": key, "amount": amount, "reason": "stripe_payment"}),
    )
}

fn usage(
    tenant: Uuid,
    key: &str,
    feature: &str,
    total_cost: &str,
    occurred: DateTime<Utc>,
) -> Value {
    envelope(
        tenant,
        "billing.usage",
        occurred,
        json!({
            "idempotency_key": key,
            "feature_key": feature,
            "usage_items": [],
            "total_cost": total_cost,
        }),
    )
}

fn priced_usage(tenant: Uuid, key: &str, items: Value) -> Value {
    envelope(
        tenant,
        "billing.usage",
        at(0),
        json!({"idempotency_key": key, "feature_key": "ai_icp_assistant", "usage_items": items}),
    )
}

fn item(model: &str, quantity: &str) -> Value {
    json!({"category": "llm", "provider": "openai", "model": model, "unit": "1k_tokens", "quantity": quantity})
}

async fn balance(pool: &PgPool, tenant: Uuid) -> Option<Decimal> {
    sqlx::query_scalar(
        "SELECT current_balance FROM billing_wallets WHERE tenant_id = $1 AND user_id IS NULL",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// (transaction_type, amount, balance_after, idempotency_key) in balance order.
async fn ledger(pool: &PgPool, tenant: Uuid) -> Vec<(String, Decimal, Decimal, String)> {
    sqlx::query_as(
        "SELECT transaction_type, amount, balance_after, idempotency_key
         FROM billing_ledger_transactions WHERE tenant_id = $1 ORDER BY created_at, balance_after DESC",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// (idempotency_key, status, total_cost, has a ledger row) by key.
async fn usages(pool: &PgPool, tenant: Uuid) -> Vec<(String, String, Decimal, bool)> {
    sqlx::query_as(
        "SELECT idempotency_key, status, total_cost, ledger_transaction_id IS NOT NULL
         FROM billing_usage_events WHERE tenant_id = $1 ORDER BY idempotency_key",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Every wallet whose balance differs from the sum of its ledger rows.
async fn unbalanced_wallets(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM billing_wallets w
         WHERE w.current_balance <> COALESCE(
           (SELECT sum(amount) FROM billing_ledger_transactions l WHERE l.wallet_id = w.id), 0)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// (day, feature_key, usage_count, total_cost) ordered by key.
async fn cost_daily(pool: &PgPool, tenant: Uuid) -> Vec<(String, String, i64, Decimal)> {
    sqlx::query_as(
        "SELECT day::text, feature_key, usage_count, total_cost
         FROM billing_cost_daily WHERE tenant_id = $1 ORDER BY day, feature_key",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn kinds(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect()
}

async fn dead_letters(pool: &PgPool) -> Vec<(i64, String, String)> {
    sqlx::query_as(
        "SELECT kafka_offset, error_kind, reason FROM hub_dead_letters ORDER BY kafka_offset",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn add_price(pool: &PgPool, model: &str, price: &str, active: bool) {
    sqlx::query(
        "INSERT INTO billing_pricing_catalog (category, provider, model, unit, unit_price, is_active)
         VALUES ('llm', 'openai', $1, '1k_tokens', $2::numeric, $3)",
    )
    .bind(model)
    .bind(price)
    .bind(active)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrations = "../migrations")]
async fn credits_and_usages_of_one_batch_are_decided_in_record_order(pool: PgPool) {
    let mut feed = feed(&pool);
    let t = Uuid::new_v4();
    let outcome = feed
        .send(&[
            usage(t, "u0", "apollo_search", "5", at(0)),
            credit(t, "c1", "10"),
            usage(t, "u2", "apollo_search", "4", at(1)),
            usage(t, "u3", "apollo_search", "7", at(2)),
        ])
        .await;
    assert_eq!(
        (outcome.applied, outcome.rejected, outcome.duplicates),
        (4, 0, 0)
    );

    assert_eq!(balance(&pool, t).await, Some(d("6")));
    assert_eq!(
        ledger(&pool, t).await,
        vec![
            ("credit".into(), d("10"), d("10"), "c1".into()),
            ("debit".into(), d("-4"), d("6"), "u2".into()),
        ]
    );
    assert_eq!(
        usages(&pool, t).await,
        vec![
            ("u0".into(), "insufficient_funds".into(), d("5"), false),
            ("u2".into(), "charged".into(), d("4"), true),
            ("u3".into(), "insufficient_funds".into(), d("7"), false),
        ]
    );
    assert_eq!(
        cost_daily(&pool, t).await,
        vec![("2026-11-25".into(), "apollo_search".into(), 1, d("4"))]
    );
    assert_eq!(unbalanced_wallets(&pool).await, 0);

    let messages = live(&pool).await;
    assert_eq!(
        kinds(&messages),
        vec![
            "billing.rejected",
            "billing.credited",
            "billing.charged",
            "billing.rejected",
            "billing.wallet"
        ]
    );
    let channel = format!("tenant:{t}:billing");
    assert!(messages.iter().all(|m| m["channel"] == channel.as_str()));
    assert_eq!(messages[0]["data"]["reason"], "insufficient_funds");
    assert_eq!(messages[0]["data"]["balance"], "0.000000");
    assert_eq!(messages[0]["data"]["cost"], "5.000000");
    assert_eq!(messages[1]["data"]["balance_after"], "10.000000");
    assert_eq!(messages[2]["data"]["amount"], "4.000000");
    assert_eq!(messages[2]["data"]["balance_after"], "6.000000");
    assert_eq!(messages[2]["data"]["idempotency_key"], "u2");
    assert_eq!(messages[3]["data"]["balance"], "6.000000");
    let wallet = &messages[4]["data"];
    assert_eq!(wallet["current_balance"], "6.000000");
    assert_eq!(wallet["currency"], "USD");
    assert_eq!(wallet["tenant_id"], t.to_string());
    let wallet_id: Uuid = sqlx::query_scalar("SELECT id FROM billing_wallets WHERE tenant_id = $1")
        .bind(t)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(wallet["wallet_id"], wallet_id.to_string());
}

#[sqlx::test(migrations = "../migrations")]
async fn an_idempotency_key_is_applied_once_across_batches_offsets_and_redeliveries(pool: PgPool) {
    let mut feed = feed(&pool);
    let t = Uuid::new_v4();
    let first = feed.records(&[
        credit(t, "top-up-1", "100"),
        usage(t, "job-1", "enrichment", "1", at(0)),
    ]);
    feed.apply(&first).await;

    // The same records again (a redelivery at the same offsets): fenced off.
    let again = feed.apply(&first).await;
    assert_eq!((again.applied, again.already_applied), (0, 2));

    // New events (new event_ids, later offsets) reusing the keys, one of
    // them twice in the batch, and a credit reusing a usage's key.
    let outcome = feed
        .send(&[
            usage(t, "job-1", "enrichment", "1", at(5)),
            credit(t, "top-up-1", "100"),
            usage(t, "job-2", "enrichment", "2", at(6)),
            usage(t, "job-2", "enrichment", "2", at(7)),
            credit(t, "job-2", "50"),
        ])
        .await;
    assert_eq!(
        (outcome.applied, outcome.rejected, outcome.duplicates),
        (5, 0, 0)
    );

    assert_eq!(balance(&pool, t).await, Some(d("97")));
    assert_eq!(ledger(&pool, t).await.len(), 3);
    assert_eq!(usages(&pool, t).await.len(), 2);
    assert_eq!(
        cost_daily(&pool, t).await,
        vec![("2026-11-25".into(), "enrichment".into(), 2, d("3"))]
    );
    assert!(
        dead_letters(&pool).await.is_empty(),
        "a repeated key is not an error"
    );
    assert_eq!(unbalanced_wallets(&pool).await, 0);
    // The second batch announced only the one new charge and the wallet.
    let messages = live(&pool).await;
    assert_eq!(
        kinds(&messages),
        vec![
            "billing.credited",
            "billing.charged",
            "billing.wallet",
            "billing.charged",
            "billing.wallet"
        ]
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn usage_is_priced_from_the_active_catalog_and_an_unpriced_item_is_dead_lettered(
    pool: PgPool,
) {
    add_price(&pool, "gpt-4o-mini", "0.15", true).await;
    add_price(&pool, "gpt-4o", "2.5", true).await;
    add_price(&pool, "retired", "0.01", false).await;
    let mut feed = feed(&pool);
    let t = Uuid::new_v4();
    let outcome = feed
        .send(&[
            credit(t, "c", "10"),
            priced_usage(
                t,
                "p1",
                json!([item("gpt-4o-mini", "2.5"), item("gpt-4o", "0.1")]),
            ),
            priced_usage(
                t,
                "p2",
                json!([item("gpt-4o-mini", "1"), item("retired", "1")]),
            ),
            priced_usage(t, "p3", json!([item("nobody-prices-this", "0")])),
        ])
        .await;
    assert_eq!((outcome.applied, outcome.rejected), (2, 2));

    // 2.5 x 0.15 + 0.1 x 2.5 = 0.625
    assert_eq!(balance(&pool, t).await, Some(d("9.375")));
    assert_eq!(
        usages(&pool, t).await,
        vec![("p1".into(), "charged".into(), d("0.625"), true)]
    );
    let items: Value =
        sqlx::query_scalar("SELECT usage_items FROM billing_usage_events WHERE tenant_id = $1")
            .bind(t)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(items[0]["unit_price"], "0.15000000");
    assert_eq!(items[1]["quantity"], "0.1");

    let letters = dead_letters(&pool).await;
    assert_eq!(letters.len(), 2);
    assert_eq!((letters[0].0, letters[0].1.as_str()), (2, "rule_violation"));
    assert!(
        letters[0].2.contains("llm/openai/retired/1k_tokens"),
        "{}",
        letters[0].2
    );
    assert_eq!((letters[1].0, letters[1].1.as_str()), (3, "rule_violation"));
    let published: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM hub_outbox, jsonb_array_elements({ROW_RECORDS}) r WHERE r->>'topic' = $1"
    ))
    .bind(DEAD)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(published, 2);

    // The rejected usage left its key free: once priced, it is charged.
    add_price(&pool, "nobody-prices-this", "1", true).await;
    feed.send(&[priced_usage(
        t,
        "p3",
        json!([item("nobody-prices-this", "2")]),
    )])
    .await;
    assert_eq!(balance(&pool, t).await, Some(d("7.375")));
}

#[sqlx::test(migrations = "../migrations")]
async fn malformed_billing_events_are_dead_lettered_and_the_batch_goes_on(pool: PgPool) {
    let mut feed = feed(&pool);
    let t = Uuid::new_v4();
    let mut negative = priced_usage(t, "n", json!([item("m", "-1")]));
    negative["data"]["total_cost"] = json!("1");
    let outcome = feed
        .send(&[
            credit(t, "c", "10"),
            negative,
            usage(t, "bad-feature", "Not A Feature", "1", at(0)),
            credit(t, "zero", "0"),
            envelope(t, "billing.refund", at(0), json!({})),
            usage(t, "ok", "voice_calls", "1", at(0)),
        ])
        .await;
    assert_eq!((outcome.applied, outcome.rejected), (2, 4));
    let kinds: Vec<String> = dead_letters(&pool).await.into_iter().map(|l| l.1).collect();
    assert_eq!(
        kinds,
        vec![
            "invalid_data",
            "invalid_data",
            "invalid_data",
            "unknown_type"
        ]
    );
    assert_eq!(balance(&pool, t).await, Some(d("9")));
}

#[sqlx::test(migrations = "../migrations")]
async fn cost_daily_sums_only_what_was_charged_by_utc_day_and_feature(pool: PgPool) {
    let mut feed = feed(&pool);
    let t = Uuid::new_v4();
    let late_evening = Utc.with_ymd_and_hms(2026, 11, 25, 23, 59, 59).unwrap();
    let next_day_in_berlin = DateTime::parse_from_rfc3339("2026-11-26T00:30:00+01:00").unwrap();
    feed.send(&[
        credit(t, "c", "10"),
        usage(t, "a", "voice_calls", "1.5", late_evening),
        usage(t, "b", "voice_calls", "0", late_evening),
        usage(t, "c2", "apollo_search", "2", at(0)),
    ])
    .await;
    feed.send(&[
        usage(
            t,
            "d",
            "voice_calls",
            "0.25",
            next_day_in_berlin.with_timezone(&Utc),
        ),
        usage(t, "e", "voice_calls", "100", late_evening),
        usage(
            t,
            "f",
            "voice_calls",
            "3",
            Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap(),
        ),
    ])
    .await;

    assert_eq!(
        cost_daily(&pool, t).await,
        vec![
            ("2026-11-25".into(), "apollo_search".into(), 1, d("2")),
            // 23:30Z on the 25th; the zero-cost usage counts, the refused one does not.
            ("2026-11-25".into(), "voice_calls".into(), 3, d("1.75")),
            ("2026-11-26".into(), "voice_calls".into(), 1, d("3")),
        ]
    );
    // The zero-cost usage is charged but moves no money: no ledger row.
    let zero = usages(&pool, t)
        .await
        .into_iter()
        .find(|u| u.0 == "b")
        .unwrap();
    assert_eq!(zero, ("b".into(), "charged".into(), d("0"), false));
    assert_eq!(ledger(&pool, t).await.len(), 5);
    assert_eq!(balance(&pool, t).await, Some(d("3.25")));
    assert_eq!(unbalanced_wallets(&pool).await, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn every_wallet_balance_equals_the_sum_of_its_ledger_after_mixed_batches(pool: PgPool) {
    let mut feed = feed(&pool);
    let tenants: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    for round in 0..4 {
        let mut batch = Vec::new();
        for (i, t) in tenants.iter().enumerate() {
            batch.push(credit(*t, &format!("c{round}"), &format!("{}.10", i + 1)));
            for j in 0..3 {
                let cost = format!("0.{}{}5", (round + j) % 10, i);
                batch.push(usage(
                    *t,
                    &format!("u{round}-{j}"),
                    "enrichment",
                    &cost,
                    at(j),
                ));
            }
            batch.push(usage(
                *t,
                &format!("big{round}"),
                "enrichment",
                "1000",
                at(9),
            ));
        }
        feed.send(&batch).await;
    }
    assert_eq!(unbalanced_wallets(&pool).await, 0);
    let negative: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM billing_ledger_transactions WHERE balance_after < 0",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(negative, 0);
    let refused: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM billing_usage_events WHERE status = 'insufficient_funds'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(refused, 12, "every 1000 usage is refused");
    // The last ledger row of each wallet carries its current balance.
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM billing_wallets w
         WHERE w.current_balance <> (SELECT min(balance_after) FROM billing_ledger_transactions l
                                     WHERE l.wallet_id = w.id AND l.idempotency_key LIKE 'u3-%')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(mismatched, 0);
}

fn voice_charge(tenant: Uuid, call_id: Uuid, cost: &str) -> UsageRequest {
    UsageRequest {
        meta: EventMeta {
            event_id: Uuid::new_v4(),
            tenant_id: tenant,
            occurred_at: at(30),
            record: 0,
        },
        idempotency_key: format!("voice-call:{call_id}"),
        feature_key: "voice_calls".into(),
        user_id: None,
        items: Vec::new(),
        total_cost: Some(d(cost)),
        metadata: json!({"call_id": call_id}),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn charge_with_the_same_voice_call_key_twice_charges_once(pool: PgPool) {
    let mut feed = feed(&pool);
    let t = Uuid::new_v4();
    feed.send(&[credit(t, "c", "5")]).await;
    let call = Uuid::new_v4();

    let mut tx = pool.begin().await.unwrap();
    let mut fx = Effects::new(Utc::now());
    // Twice in one call, as a batch holding a redelivered call.ended would.
    billing::charge(
        &mut tx,
        &[voice_charge(t, call, "1.20"), voice_charge(t, call, "1.20")],
        &mut fx,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(kinds_of(&fx), vec!["billing.charged", "billing.wallet"]);
    assert!(fx.rejected().is_empty());
    let data = fx.live()[0].data_value();
    assert_eq!(data["balance_after"], "3.800000");
    assert_eq!(data["feature_key"], "voice_calls");

    // And again in a later transaction.
    let mut tx = pool.begin().await.unwrap();
    let mut fx = Effects::new(Utc::now());
    billing::charge(&mut tx, &[voice_charge(t, call, "1.20")], &mut fx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(fx.live().is_empty(), "nothing new to announce");

    assert_eq!(balance(&pool, t).await, Some(d("3.8")));
    let key = format!("voice-call:{call}");
    assert_eq!(
        usages(&pool, t).await,
        vec![(key.clone(), "charged".into(), d("1.2"), true)]
    );
    let l = ledger(&pool, t).await;
    assert_eq!(l.len(), 2);
    assert_eq!(l[1], ("debit".into(), d("-1.2"), d("3.8"), key));
    let metadata: Value =
        sqlx::query_scalar("SELECT metadata FROM billing_usage_events WHERE tenant_id = $1")
            .bind(t)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(metadata["call_id"], call.to_string());
    assert_eq!(
        cost_daily(&pool, t).await,
        vec![("2026-11-25".into(), "voice_calls".into(), 1, d("1.2"))]
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn charge_records_a_call_the_wallet_cannot_cover_and_rejects_a_bad_request(pool: PgPool) {
    let t = Uuid::new_v4();
    let mut bad = voice_charge(t, Uuid::new_v4(), "1");
    bad.feature_key = "Voice Calls".into();
    bad.meta.record = 7;
    let mut tx = pool.begin().await.unwrap();
    let mut fx = Effects::new(Utc::now());
    billing::charge(
        &mut tx,
        &[voice_charge(t, Uuid::new_v4(), "0.50"), bad],
        &mut fx,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(kinds_of(&fx), vec!["billing.rejected", "billing.wallet"]);
    assert_eq!(fx.rejected().len(), 1);
    assert_eq!(fx.rejected()[0].0.record, 7);
    assert_eq!(fx.rejected()[0].1.kind(), "invalid_data");
    // The wallet was opened with 0 and stays there.
    assert_eq!(balance(&pool, t).await, Some(d("0")));
    assert!(ledger(&pool, t).await.is_empty());
    let u = usages(&pool, t).await;
    assert_eq!(u.len(), 1);
    assert_eq!((u[0].1.as_str(), u[0].3), ("insufficient_funds", false));
    assert!(cost_daily(&pool, t).await.is_empty());
}

fn kinds_of(fx: &Effects) -> Vec<&'static str> {
    fx.live().iter().map(|u| u.kind).collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn two_transactions_charging_one_tenant_queue_on_the_wallet_and_share_its_keys(pool: PgPool) {
    let mut feed = feed(&pool);
    let t = Uuid::new_v4();
    feed.send(&[credit(t, "c", "10")]).await;
    let (call_a, call_b) = (Uuid::new_v4(), Uuid::new_v4());

    let mut first = pool.begin().await.unwrap();
    let mut fx = Effects::new(Utc::now());
    billing::charge(&mut first, &[voice_charge(t, call_a, "1")], &mut fx)
        .await
        .unwrap();

    // A second pipeline charges the same call and another one meanwhile: it
    // must wait for the wallet, then see the first one's key.
    let other = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            let mut fx = Effects::new(Utc::now());
            billing::charge(
                &mut tx,
                &[voice_charge(t, call_a, "1"), voice_charge(t, call_b, "2")],
                &mut fx,
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            fx.live().iter().map(|u| u.kind).collect::<Vec<_>>()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !other.is_finished(),
        "the second charge waits for the wallet lock"
    );
    first.commit().await.unwrap();

    assert_eq!(
        other.await.unwrap(),
        vec!["billing.charged", "billing.wallet"]
    );
    assert_eq!(balance(&pool, t).await, Some(d("7")));
    assert_eq!(ledger(&pool, t).await.len(), 3);
    assert_eq!(unbalanced_wallets(&pool).await, 0);
}
