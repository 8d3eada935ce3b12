//! Billing end to end: random usages, credits, repeated keys and voice calls
//! through the real broker while the hub is SIGKILLed, checked against a
//! reference computed here; and the billing channel's authorization.

use crate::support::*;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use lad_hub::demo::Event;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Prices of the catalog rows the test installs: (category, provider, model, unit, price).
const PRICES: &[(&str, &str, &str, &str, &str)] = &[
    ("llm", "openai", "gpt-4o", "1k_tokens", "0.0125"),
    ("enrichment", "apollo", "people", "request", "0.05"),
    ("voice", "twilio", "pstn", "minute", "0.013"),
];

fn dec(s: &str) -> Decimal {
    s.parse().expect("decimal")
}

#[derive(Default)]
struct Reference {
    balance: HashMap<Uuid, Decimal>,
    keys: HashSet<(Uuid, String)>,
    cost_daily: BTreeMap<(Uuid, NaiveDate, String), (i64, Decimal)>,
    insufficient: usize,
}

impl Reference {
    fn credit(&mut self, tenant: Uuid, key: &str, amount: Decimal) {
        if self.keys.insert((tenant, key.to_owned())) {
            *self.balance.entry(tenant).or_default() += amount;
        }
    }

    fn usage(&mut self, tenant: Uuid, key: &str, feature: &str, cost: Decimal, at: DateTime<Utc>) {
        if !self.keys.insert((tenant, key.to_owned())) {
            return;
        }
        let balance = self.balance.entry(tenant).or_default();
        if cost > *balance {
            self.insufficient += 1;
            return;
        }
        *balance -= cost;
        let slot = self
            .cost_daily
            .entry((tenant, at.date_naive(), feature.to_owned()))
            .or_default();
        slot.0 += 1;
        slot.1 += cost;
    }
}

fn credit(tenant: Uuid, key: &str, amount: Decimal, at: DateTime<Utc>) -> Event {
    Event::new(
        tenant,
        "billing.credit",
        tenant,
        at,
        json!({
        "idempotency_key": key, "amount": amount.to_string(), "reason": "top-up"}),
    )
}

#[sqlx::test(migrations = "./migrations")]
async fn random_billing_under_sigkill_matches_the_reference(pool: PgPool) {
    for (c, p, m, u, price) in PRICES {
        sqlx::query(
            "INSERT INTO billing_pricing_catalog (category, provider, model, unit, unit_price) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(c).bind(p).bind(m).bind(u).bind(dec(price))
        .execute(&pool)
        .await
        .unwrap();
    }
    let topics = Topics::new();
    let opts = HubOptions {
        restartable: true,
        batch_max: 50,
        ..HubOptions::default()
    };
    let mut hub = Hub::start(&pool, &topics, opts).await;
    let producer = producer(true);
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut reference = Reference::default();
    let day0 = Utc.with_ymd_and_hms(2026, 11, 23, 22, 0, 0).unwrap();

    // Tenants charged only by the voice chain get their funds first: their
    // charges come from another topic, so only a settled balance makes the
    // reference independent of how the two topics interleave.
    let voice_tenants: Vec<Uuid> = (0..2).map(|_| Uuid::new_v4()).collect();
    let funding: Vec<Event> = voice_tenants
        .iter()
        .map(|t| {
            reference.credit(*t, "seed", dec("100000"));
            credit(*t, "seed", dec("100000"), day0)
        })
        .collect();
    produce(&producer, &topics.billing(), &funding).await;
    eventually(60, "voice tenants funded", || async {
        (count(
            &pool,
            "SELECT count(*) FROM billing_wallets WHERE current_balance > 0",
        )
        .await
            == 2)
            .then_some(())
    })
    .await;

    let tenants: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let mut billing_events = Vec::new();
    let mut used_keys: Vec<(Uuid, String)> = Vec::new();
    for i in 0..1500 {
        let tenant = tenants[rng.gen_range(0..tenants.len())];
        let at = day0 + chrono::Duration::seconds(7 * i);
        let roll = rng.gen_range(0..100);
        let event = if roll < 10 && !used_keys.is_empty() {
            // A key the tenant already used, under a new event id: never applied again.
            let (t, key) = used_keys[rng.gen_range(0..used_keys.len())].clone();
            Event::new(
                t,
                "billing.usage",
                t,
                at,
                json!({
                "idempotency_key": key, "feature_key": "replay", "usage_items": [], "total_cost": "1.00"}),
            )
        } else if roll < 30 {
            let key = format!("credit-{i}");
            let amount = Decimal::new(rng.gen_range(1..5000), 2);
            reference.credit(tenant, &key, amount);
            used_keys.push((tenant, key.clone()));
            credit(tenant, &key, amount, at)
        } else {
            let key = format!("usage-{i}");
            let (data, cost) = if rng.gen_bool(0.5) {
                let cost = Decimal::new(rng.gen_range(0..3000), 3);
                (
                    json!({"idempotency_key": key, "feature_key": "apollo_search", "usage_items": [],
                        "total_cost": cost.to_string()}),
                    cost,
                )
            } else {
                let (c, p, m, u, price) = PRICES[rng.gen_range(0..PRICES.len())];
                let qty = Decimal::new(rng.gen_range(0..400), 1);
                (
                    json!({"idempotency_key": key, "feature_key": "icp_assistant", "user_id": Uuid::new_v4(),
                        "usage_items": [{"category": c, "provider": p, "model": m, "unit": u,
                                         "quantity": qty.to_string()}]}),
                    qty * dec(price),
                )
            };
            let feature = data["feature_key"].as_str().unwrap().to_owned();
            reference.usage(tenant, &key, &feature, cost, at);
            used_keys.push((tenant, key.clone()));
            Event::new(tenant, "billing.usage", tenant, at, data)
        };
        billing_events.push(event);
    }
    // Redeliveries of the very same records.
    let replays: Vec<Event> = billing_events.iter().step_by(13).cloned().collect();
    billing_events.extend(replays);

    let mut voice_events = Vec::new();
    for i in 0..300 {
        let tenant = voice_tenants[i % 2];
        let call = Uuid::new_v4();
        let at = day0 + chrono::Duration::seconds(23 * i as i64);
        let cost = Decimal::new(rng.gen_range(1..900), 3);
        let ended = Event::new(
            call,
            "call.ended",
            tenant,
            at,
            json!({
            "call_id": call, "status": "completed", "duration_seconds": 30, "cost": cost.to_string()}),
        );
        reference.usage(
            tenant,
            &format!("voice-call:{call}"),
            "voice_calls",
            cost,
            at,
        );
        voice_events.push(ended.clone());
        if i % 5 == 0 {
            // The voice service retried with a new event id: still one charge.
            let mut again = ended;
            again.value["event_id"] = json!(Uuid::new_v4());
            voice_events.push(again);
        }
    }

    // Every event the hub must apply once: the funding, the billing
    // stream (its replays share their originals' ids) and the voice calls.
    let total_events = funding
        .iter()
        .chain(&billing_events)
        .chain(&voice_events)
        .map(Event::event_id)
        .collect::<HashSet<_>>()
        .len() as i64;
    // Both topics interleaved at a steady pace for 55 s: longer than the
    // three kills (12-13.5 s apart, plus the restarts) take, so each kill
    // lands on a hub with work in hand.
    let mut records = Vec::with_capacity(billing_events.len() + voice_events.len());
    let mut voice = voice_events.into_iter();
    for chunk in billing_events.chunks(5) {
        records.extend(chunk.iter().map(|e| (topics.billing(), e.clone())));
        records.extend(voice.next().map(|e| (topics.voice(), e)));
    }
    records.extend(voice.map(|e| (topics.voice(), e)));
    let timeline = Timeline::start();
    let feeder = PacedFeeder::start(
        crate::support::producer(true),
        records,
        std::time::Duration::from_secs(55),
    );
    timeline.note(format_args!(
        "stream of {} records ({total_events} distinct events) starts, over 55 s",
        feeder.total()
    ));
    for kill in 1..=3 {
        let wait = rng.gen_range(12_000..13_500);
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
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

    let expected_daily = reference.cost_daily.clone();
    // Polled by hand rather than with `eventually`: a timeout must say what
    // differs (events not applied yet, or applied with other sums).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let rows: Vec<(Uuid, NaiveDate, String, i64, Decimal)> = sqlx::query_as(
            "SELECT tenant_id, day, feature_key, usage_count, total_cost FROM billing_cost_daily",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let got: BTreeMap<_, _> = rows
            .into_iter()
            .map(|(t, d, f, n, c)| ((t, d, f), (n, c)))
            .collect();
        if got == expected_daily {
            break;
        }
        if std::time::Instant::now() > deadline {
            let differing: Vec<_> = expected_daily
                .keys()
                .chain(got.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|k| got.get(*k) != expected_daily.get(*k))
                .map(|k| (k, got.get(k), expected_daily.get(k)))
                .collect();
            panic!(
                "billing_cost_daily did not equal the reference within 180 s \
                 ({}/{total_events} events applied); (key, stored, reference): {differing:?}",
                applied_events(&pool).await
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    timeline.note("billing_cost_daily equals the reference");
    assert_eq!(applied_events(&pool).await, total_events);

    let wallets: Vec<(Uuid, Decimal, Option<Decimal>)> = sqlx::query_as(
        "SELECT w.tenant_id, w.current_balance,
                (SELECT sum(amount) FROM billing_ledger_transactions l WHERE l.wallet_id = w.id)
         FROM billing_wallets w",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(wallets.len(), reference.balance.len());
    for (tenant, balance, ledger_sum) in wallets {
        assert_eq!(
            balance,
            ledger_sum.unwrap_or_default(),
            "balance = sum(ledger)"
        );
        assert_eq!(
            balance, reference.balance[&tenant],
            "balance = reference for {tenant}"
        );
    }
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM billing_ledger_transactions WHERE balance_after < 0"
        )
        .await,
        0
    );
    let insufficient = count(
        &pool,
        "SELECT count(*) FROM billing_usage_events WHERE status = 'insufficient_funds'",
    )
    .await;
    assert_eq!(insufficient as usize, reference.insufficient);
    let charged_keys = count(
        &pool,
        "SELECT count(DISTINCT (tenant_id, idempotency_key)) FROM billing_ledger_transactions",
    )
    .await;
    assert_eq!(
        charged_keys,
        count(&pool, "SELECT count(*) FROM billing_ledger_transactions").await,
        "a key charged twice"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn the_billing_channel_refuses_a_viewer_and_streams_wallet_updates_to_an_admin(pool: PgPool) {
    let topics = Topics::new();
    let hub = Hub::start(&pool, &topics, HubOptions::default()).await;
    let tenant = Uuid::new_v4();
    let channel = format!("tenant:{tenant}:billing");
    let mut viewer =
        Client::connect(&hub.ws_url(&token(tenant, Uuid::new_v4(), "viewer", &[]))).await;
    assert_eq!(viewer.subscribe(&channel).await["code"], "forbidden");
    let mut admin =
        Client::connect(&hub.ws_url(&token(tenant, Uuid::new_v4(), "admin", &[]))).await;
    let sub = admin.subscribe(&channel).await;
    assert_eq!(sub["op"], "subscribed", "{sub}");
    let mut member =
        Client::connect(&hub.ws_url(&token(tenant, Uuid::new_v4(), "member", &["billing.view"])))
            .await;
    assert_eq!(member.subscribe(&channel).await["op"], "subscribed");

    let now = Utc::now();
    let events = vec![
        credit(tenant, "top-up-1", dec("10.00"), now),
        Event::new(
            tenant,
            "billing.usage",
            tenant,
            now,
            json!({"idempotency_key": "u1", "feature_key": "apollo_search",
            "usage_items": [], "total_cost": "2.50"}),
        ),
        Event::new(
            tenant,
            "billing.usage",
            tenant,
            now,
            json!({"idempotency_key": "u2", "feature_key": "apollo_search",
            "usage_items": [], "total_cost": "99.00"}),
        ),
    ];
    produce(&producer(false), &topics.billing(), &events).await;
    let msgs = admin
        .messages_until(60, |m| {
            m.iter().any(|x| x["type"] == "billing.rejected")
                && m.iter().any(|x| {
                    x["type"] == "billing.wallet" && x["data"]["current_balance"] == "7.500000"
                })
        })
        .await;
    assert!(msgs.iter().any(|m| m["type"] == "billing.credited"));
    assert!(msgs
        .iter()
        .any(|m| m["type"] == "billing.charged" && m["data"]["idempotency_key"] == "u1"));
    assert!(msgs.iter().all(|m| m["channel"] == channel));
    let seen = member
        .messages_until(30, |m| m.iter().any(|x| x["type"] == "billing.wallet"))
        .await;
    assert!(!seen.is_empty());
    assert!(
        viewer.next_frame(1).await.is_none(),
        "a refused viewer receives nothing"
    );
}
