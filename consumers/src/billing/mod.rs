//! Billing (contract §5): `lad.billing.usage.v1` → wallets, ledger, usage
//! events, `billing_cost_daily` → `tenant:{t}:billing`.
//!
//! One path settles every wallet movement, whether it comes from the billing
//! topic ([`BillingDomain`]) or from another pipeline's transaction
//! ([`charge`], used by voice for `call.ended`):
//!
//! 1. look up the catalog prices the batch needs;
//! 2. open missing wallets and lock all of the batch's wallets in tenant order;
//! 3. read which idempotency keys the tenants already used (under the lock,
//!    so two pipelines charging one tenant cannot both miss a key);
//! 4. decide every op in record order in memory ([`apply::plan`]);
//! 5. write usage events, ledger rows, each wallet once, and the daily cost
//!    deltas once per key, each as one statement.

pub mod apply;
pub mod event;
pub mod live;
pub mod store;

pub use apply::Wallet;
pub use event::{BillingEvent, Credit, Usage, UsageItem};

use crate::envelope::{Envelope, Rejection};
use crate::pipeline::{Accepted, Domain, Effects, EventMeta};
use apply::{CreditOp, Decision, Op, PriceKey, UsageOp};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use std::collections::BTreeSet;
use std::future::Future;
use uuid::Uuid;

/// The billing topic's [`Domain`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BillingDomain;

impl BillingDomain {
    pub fn new() -> BillingDomain {
        BillingDomain
    }
}

impl Domain for BillingDomain {
    type Event = BillingEvent;

    fn decode(&self, envelope: &Envelope) -> Result<BillingEvent, Rejection> {
        event::decode(envelope)
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [Accepted<BillingEvent>],
        fx: &'a mut Effects,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'a {
        apply_events(conn, events, fx)
    }
}

async fn apply_events(
    conn: &mut PgConnection,
    events: &[Accepted<BillingEvent>],
    fx: &mut Effects,
) -> Result<(), sqlx::Error> {
    let ops: Vec<Op<'_>> = events
        .iter()
        .map(|a| match &a.event {
            BillingEvent::Usage(u) => Op::Usage(UsageOp {
                meta: a.meta,
                idempotency_key: &u.idempotency_key,
                feature_key: &u.feature_key,
                user_id: u.user_id,
                items: &u.items,
                total_cost: u.total_cost,
                metadata: &u.metadata,
            }),
            BillingEvent::Credit(c) => Op::Credit(CreditOp {
                meta: a.meta,
                idempotency_key: &c.idempotency_key,
                amount: c.amount,
                reason: &c.reason,
                metadata: &c.metadata,
            }),
        })
        .collect();
    settle(conn, &ops, fx).await
}

/// A usage to charge from another pipeline's transaction. `meta` is the
/// event that caused it (its `record` indexes the caller's batch, so a
/// rejection dead-letters the caller's record).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRequest {
    pub meta: EventMeta,
    pub idempotency_key: String,
    pub feature_key: String,
    pub user_id: Option<Uuid>,
    pub items: Vec<UsageItem>,
    pub total_cost: Option<Decimal>,
    pub metadata: serde_json::Value,
}

/// Charges `requests` in order inside the caller's transaction, with the
/// same rules as a `billing.usage` from Kafka: a key the tenant already
/// used is not charged again, a usage the balance cannot cover is recorded
/// as `insufficient_funds`. Live messages and rejections go to `fx`.
pub async fn charge(
    conn: &mut PgConnection,
    requests: &[UsageRequest],
    fx: &mut Effects,
) -> Result<(), sqlx::Error> {
    let mut ops = Vec::with_capacity(requests.len());
    for r in requests {
        // A Kafka usage was checked when decoded; a request from code is checked here.
        match event::check_usage(&r.idempotency_key, &r.feature_key, &r.items, r.total_cost) {
            Ok(()) => ops.push(Op::Usage(UsageOp {
                meta: r.meta,
                idempotency_key: &r.idempotency_key,
                feature_key: &r.feature_key,
                user_id: r.user_id,
                items: &r.items,
                total_cost: r.total_cost,
                metadata: &r.metadata,
            })),
            Err(rejection) => fx.reject(&r.meta, rejection),
        }
    }
    settle(conn, &ops, fx).await
}

async fn settle(
    conn: &mut PgConnection,
    ops: &[Op<'_>],
    fx: &mut Effects,
) -> Result<(), sqlx::Error> {
    if ops.is_empty() {
        return Ok(());
    }
    let price_keys: Vec<PriceKey> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Usage(u) if u.total_cost.is_none() => Some(u.items),
            _ => None,
        })
        .flatten()
        .map(PriceKey::of)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let prices = store::load_prices(conn, &price_keys).await?;

    let tenants: Vec<Uuid> = ops.iter().map(|op| op.meta().tenant_id).collect();
    let wallets = store::lock_wallets(conn, &tenants).await?;

    let keys: Vec<(Uuid, &str)> = ops
        .iter()
        .map(|op| (op.meta().tenant_id, op.idempotency_key()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let used = store::used_keys(conn, &keys).await?;

    // Time-ordered ids, because this runs while the tenants' wallets are
    // locked: the new rows' primary-key entries, and the entries of the
    // indexes on the other table that point at them, go to the indexes'
    // right edge instead of to random pages.
    let plan = apply::plan(ops, &prices, &used, &wallets, Uuid::now_v7);
    store::insert_usage_events(conn, &plan.usage_rows, fx.now).await?;
    store::insert_ledger(conn, &plan.ledger_rows, fx.now).await?;
    let stamped = store::update_balances(conn, &plan.balances).await?;
    store::add_cost_daily(conn, &plan.cost_daily).await?;

    for (op, decision) in ops.iter().zip(&plan.decisions) {
        let tenant = op.meta().tenant_id;
        let currency = wallets.get(&tenant).map_or("USD", |w| w.currency.as_str());
        match (op, decision) {
            (_, Decision::Rejected(rejection)) => fx.reject(op.meta(), rejection.clone()),
            (
                Op::Usage(u),
                Decision::Charged {
                    usage_event_id,
                    ledger_id,
                    cost,
                    balance_after,
                },
            ) => fx.push(live::charged(
                u,
                *usage_event_id,
                *ledger_id,
                *cost,
                *balance_after,
                currency,
            )),
            (
                Op::Usage(u),
                Decision::InsufficientFunds {
                    usage_event_id,
                    cost,
                    balance,
                },
            ) => fx.push(live::rejected(
                u,
                *usage_event_id,
                *cost,
                *balance,
                currency,
            )),
            (
                Op::Credit(c),
                Decision::Credited {
                    ledger_id,
                    balance_after,
                    ..
                },
            ) => fx.push(live::credited(c, *ledger_id, *balance_after, currency)),
            // A repeated key announces nothing; plan never pairs an op with
            // the other kind's decision.
            _ => {}
        }
    }

    // The final state of every wallet the batch recorded something against.
    for tenant in &plan.touched {
        if let Some(w) = wallets.get(tenant) {
            let mut w = w.clone();
            if let Some(balance) = plan.balances.get(&w.id) {
                w.current_balance = *balance;
            }
            if let Some(at) = stamped.get(&w.id) {
                w.updated_at = *at;
            }
            fx.push(live::wallet(&w));
        }
    }
    Ok(())
}
