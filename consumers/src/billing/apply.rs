//! Pure billing logic: pricing, the sequential balance decisions of a batch,
//! and the rows and aggregate deltas they produce. No I/O: the store hands
//! in what it read under the wallet locks, and writes what comes out.

use super::event::UsageItem;
use crate::envelope::Rejection;
use crate::pipeline::EventMeta;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Money columns are NUMERIC(20,6).
pub const MONEY_SCALE: u32 = 6;

/// The first amount NUMERIC(20,6) cannot hold (14 integer digits).
pub fn money_ceiling() -> Decimal {
    Decimal::new(100_000_000_000_000, 0)
}

/// The pricing catalog's lookup key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PriceKey {
    pub category: String,
    pub provider: String,
    pub model: String,
    pub unit: String,
}

impl PriceKey {
    pub fn of(item: &UsageItem) -> PriceKey {
        PriceKey {
            category: item.category.clone(),
            provider: item.provider.clone(),
            model: item.model.clone(),
            unit: item.unit.clone(),
        }
    }
}

/// Active unit prices of the catalog, for the keys a batch needs.
pub type PriceList = HashMap<PriceKey, Decimal>;

/// The cost of a usage and, when it came from the catalog, each item's unit price.
#[derive(Debug, Clone, PartialEq)]
pub struct Priced {
    pub cost: Decimal,
    pub unit_prices: Option<Vec<Decimal>>,
}

/// Cost of a usage: `total_cost` when given (the items are then not looked
/// up at all), else the sum of quantity x unit price. Line products are
/// summed exactly and the total is rounded once, half away from zero, to
/// the ledger's 6 places, so a usage of many small lines is not skewed by
/// per-line rounding.
pub fn price(
    items: &[UsageItem],
    total_cost: Option<Decimal>,
    prices: &PriceList,
) -> Result<Priced, Rejection> {
    let (exact, unit_prices) = match total_cost {
        Some(c) => (c, None),
        None => {
            let mut missing = Vec::new();
            let mut unit_prices = Vec::with_capacity(items.len());
            let mut sum = Decimal::ZERO;
            for item in items {
                match prices.get(&PriceKey::of(item)) {
                    Some(p) => {
                        unit_prices.push(*p);
                        sum = item
                            .quantity
                            .checked_mul(*p)
                            .and_then(|line| sum.checked_add(line))
                            .ok_or_else(too_large)?;
                    }
                    None => missing.push(format!(
                        "{}/{}/{}/{}",
                        item.category, item.provider, item.model, item.unit
                    )),
                }
            }
            if !missing.is_empty() {
                return Err(Rejection::RuleViolation(format!(
                    "no active price in billing_pricing_catalog for usage item(s) {} \
                     (category/provider/model/unit)",
                    missing.join(", ")
                )));
            }
            (sum, Some(unit_prices))
        }
    };
    let cost = exact.round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::MidpointAwayFromZero);
    if cost >= money_ceiling() {
        return Err(too_large());
    }
    Ok(Priced { cost, unit_prices })
}

fn too_large() -> Rejection {
    Rejection::RuleViolation("the usage's cost does not fit NUMERIC(20,6)".into())
}

/// A usage to charge, borrowed from a decoded event or a [`super::UsageRequest`].
#[derive(Debug, Clone)]
pub struct UsageOp<'a> {
    pub meta: EventMeta,
    pub idempotency_key: &'a str,
    pub feature_key: &'a str,
    pub user_id: Option<Uuid>,
    pub items: &'a [UsageItem],
    pub total_cost: Option<Decimal>,
    pub metadata: &'a Value,
}

#[derive(Debug, Clone)]
pub struct CreditOp<'a> {
    pub meta: EventMeta,
    pub idempotency_key: &'a str,
    pub amount: Decimal,
    pub reason: &'a str,
    pub metadata: &'a Value,
}

/// One wallet movement request, in the order it must be decided.
#[derive(Debug, Clone)]
pub enum Op<'a> {
    Usage(UsageOp<'a>),
    Credit(CreditOp<'a>),
}

impl<'a> Op<'a> {
    pub fn meta(&self) -> &EventMeta {
        match self {
            Op::Usage(u) => &u.meta,
            Op::Credit(c) => &c.meta,
        }
    }

    pub fn idempotency_key(&self) -> &'a str {
        match self {
            Op::Usage(u) => u.idempotency_key,
            Op::Credit(c) => c.idempotency_key,
        }
    }
}

/// A tenant's wallet as locked for the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Wallet {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub current_balance: Decimal,
    pub currency: String,
    /// `active`, `frozen` or `closed` (shown; the hub charges whatever it is).
    pub status: String,
    pub updated_at: DateTime<Utc>,
}

/// What became of one op.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Charged. `ledger_id` is `None` for a zero cost: the ledger refuses
    /// zero amounts (CHECK amount <> 0) and nothing moved.
    Charged {
        usage_event_id: Uuid,
        ledger_id: Option<Uuid>,
        cost: Decimal,
        balance_after: Decimal,
    },
    /// Recorded, not charged: the balance could not cover `cost`.
    InsufficientFunds {
        usage_event_id: Uuid,
        cost: Decimal,
        balance: Decimal,
    },
    Credited {
        ledger_id: Uuid,
        amount: Decimal,
        balance_after: Decimal,
    },
    /// The tenant already used this idempotency key: nothing is written.
    KeyAlreadyUsed,
    /// Dead-lettered; nothing of the op is written.
    Rejected(Rejection),
}

pub const STATUS_CHARGED: &str = "charged";
pub const STATUS_INSUFFICIENT_FUNDS: &str = "insufficient_funds";

#[derive(Debug, Clone, PartialEq)]
pub struct UsageEventRow<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Option<Uuid>,
    pub feature_key: &'a str,
    pub usage_items: Value,
    pub total_cost: Decimal,
    pub currency: &'a str,
    pub status: &'static str,
    pub idempotency_key: &'a str,
    pub event_id: Uuid,
    pub ledger_transaction_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub metadata: &'a Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub wallet_id: Uuid,
    /// `debit` (amount < 0) or `credit` (amount > 0).
    pub transaction_type: &'static str,
    pub amount: Decimal,
    pub balance_after: Decimal,
    pub idempotency_key: &'a str,
    pub usage_event_id: Option<Uuid>,
    pub event_id: Uuid,
    pub reason: &'a str,
    pub metadata: &'a Value,
}

/// One `billing_cost_daily` delta.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CostDailyKey<'a> {
    pub tenant_id: Uuid,
    pub day: NaiveDate,
    pub feature_key: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CostDailyDelta {
    pub usage_count: i64,
    pub total_cost: Decimal,
}

/// Everything a batch writes, decided in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan<'a> {
    /// One per op, same order.
    pub decisions: Vec<Decision>,
    pub usage_rows: Vec<UsageEventRow<'a>>,
    pub ledger_rows: Vec<LedgerRow<'a>>,
    /// Final balance of each wallet whose balance moved, by wallet id.
    pub balances: BTreeMap<Uuid, Decimal>,
    /// Tenants with at least one usage or credit recorded in this batch.
    pub touched: Vec<Uuid>,
    /// Sorted by key: the order the upserts take their row locks in.
    pub cost_daily: BTreeMap<CostDailyKey<'a>, CostDailyDelta>,
}

/// Decides every op in order against running balances: a credit earlier in
/// the batch funds a usage after it, a usage refused for funds does not move
/// the balance. `used` holds the (tenant, idempotency_key) pairs the store
/// already has; usages and credits share one key space per tenant because
/// the ledger's unique key (tenant_id, idempotency_key) covers both.
/// A key is taken by every op that records something (charged, refused for
/// funds, credited), not by a rejected one.
pub fn plan<'a>(
    ops: &[Op<'a>],
    prices: &PriceList,
    used: &HashSet<(Uuid, String)>,
    wallets: &'a HashMap<Uuid, Wallet>,
    mut new_id: impl FnMut() -> Uuid,
) -> Plan<'a> {
    let mut balance: HashMap<Uuid, Decimal> = wallets
        .values()
        .map(|w| (w.tenant_id, w.current_balance))
        .collect();
    let mut taken: HashSet<(Uuid, &str)> = HashSet::new();
    let mut touched = Vec::new();
    let mut p = Plan {
        decisions: Vec::with_capacity(ops.len()),
        usage_rows: Vec::new(),
        ledger_rows: Vec::new(),
        balances: BTreeMap::new(),
        touched: Vec::new(),
        cost_daily: BTreeMap::new(),
    };

    for op in ops {
        let meta = op.meta();
        let tenant = meta.tenant_id;
        let key = op.idempotency_key();
        if taken.contains(&(tenant, key)) || used.contains(&(tenant, key.to_owned())) {
            p.decisions.push(Decision::KeyAlreadyUsed);
            continue;
        }
        let (Some(wallet), Some(bal)) = (wallets.get(&tenant), balance.get_mut(&tenant)) else {
            p.decisions
                .push(Decision::Rejected(Rejection::RuleViolation(
                    "the tenant's wallet could not be opened".into(),
                )));
            continue;
        };
        let decision = match op {
            Op::Usage(u) => {
                let priced = match price(u.items, u.total_cost, prices) {
                    Ok(priced) => priced,
                    Err(rejection) => {
                        p.decisions.push(Decision::Rejected(rejection));
                        continue;
                    }
                };
                let usage_event_id = new_id();
                let cost = priced.cost;
                let (decision, status, ledger_id) = if cost > *bal {
                    let d = Decision::InsufficientFunds {
                        usage_event_id,
                        cost,
                        balance: *bal,
                    };
                    (d, STATUS_INSUFFICIENT_FUNDS, None)
                } else {
                    let ledger_id = (!cost.is_zero()).then(&mut new_id);
                    *bal -= cost;
                    if let Some(id) = ledger_id {
                        p.ledger_rows.push(LedgerRow {
                            id,
                            tenant_id: tenant,
                            wallet_id: wallet.id,
                            transaction_type: "debit",
                            amount: -cost,
                            balance_after: *bal,
                            idempotency_key: key,
                            usage_event_id: Some(usage_event_id),
                            event_id: meta.event_id,
                            reason: u.feature_key,
                            metadata: u.metadata,
                        });
                        p.balances.insert(wallet.id, *bal);
                    }
                    let delta = p
                        .cost_daily
                        .entry(CostDailyKey {
                            tenant_id: tenant,
                            day: meta.occurred_at.date_naive(),
                            feature_key: u.feature_key,
                        })
                        .or_default();
                    delta.usage_count += 1;
                    delta.total_cost += cost;
                    let d = Decision::Charged {
                        usage_event_id,
                        ledger_id,
                        cost,
                        balance_after: *bal,
                    };
                    (d, STATUS_CHARGED, ledger_id)
                };
                p.usage_rows.push(UsageEventRow {
                    id: usage_event_id,
                    tenant_id: tenant,
                    user_id: u.user_id,
                    feature_key: u.feature_key,
                    usage_items: items_json(u.items, priced.unit_prices.as_deref()),
                    total_cost: cost,
                    currency: &wallet.currency,
                    status,
                    idempotency_key: key,
                    event_id: meta.event_id,
                    ledger_transaction_id: ledger_id,
                    occurred_at: meta.occurred_at,
                    metadata: u.metadata,
                });
                decision
            }
            Op::Credit(c) => {
                let after = *bal + c.amount;
                if after >= money_ceiling() {
                    p.decisions
                        .push(Decision::Rejected(Rejection::RuleViolation(
                            "the credit would take the balance beyond NUMERIC(20,6)".into(),
                        )));
                    continue;
                }
                *bal = after;
                let ledger_id = new_id();
                p.ledger_rows.push(LedgerRow {
                    id: ledger_id,
                    tenant_id: tenant,
                    wallet_id: wallet.id,
                    transaction_type: "credit",
                    amount: c.amount,
                    balance_after: after,
                    idempotency_key: key,
                    usage_event_id: None,
                    event_id: meta.event_id,
                    reason: c.reason,
                    metadata: c.metadata,
                });
                p.balances.insert(wallet.id, after);
                Decision::Credited {
                    ledger_id,
                    amount: c.amount,
                    balance_after: after,
                }
            }
        };
        taken.insert((tenant, key));
        if !touched.contains(&tenant) {
            touched.push(tenant);
        }
        p.decisions.push(decision);
    }
    touched.sort_unstable();
    p.touched = touched;
    p
}

/// The stored `usage_items`: the items as sent, plus the unit price each
/// was charged at when the catalog priced them (prices change; the usage
/// row keeps what was applied).
fn items_json(items: &[UsageItem], unit_prices: Option<&[Decimal]>) -> Value {
    Value::Array(
        items
            .iter()
            .enumerate()
            .map(|(i, it)| {
                let mut v = json!({
                    "category": it.category,
                    "provider": it.provider,
                    "model": it.model,
                    "unit": it.unit,
                    "quantity": it.quantity,
                });
                if let Some(p) = unit_prices.and_then(|ps| ps.get(i)) {
                    v["unit_price"] = json!(p);
                }
                v
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn item(model: &str, quantity: &str) -> UsageItem {
        UsageItem {
            category: "llm".into(),
            provider: "openai".into(),
            model: model.into(),
            unit: "1k_tokens".into(),
            quantity: d(quantity),
        }
    }

    fn prices() -> PriceList {
        [(PriceKey::of(&item("mini", "0")), d("0.00015000"))]
            .into_iter()
            .chain([(PriceKey::of(&item("big", "0")), d("0.01"))])
            .collect()
    }

    fn meta(tenant: Uuid, record: usize, occurred_at: &str) -> EventMeta {
        EventMeta {
            event_id: Uuid::new_v4(),
            tenant_id: tenant,
            occurred_at: DateTime::parse_from_rfc3339(occurred_at)
                .unwrap()
                .with_timezone(&Utc),
            record,
        }
    }

    fn wallet(tenant: Uuid, balance: &str) -> Wallet {
        Wallet {
            id: Uuid::new_v4(),
            tenant_id: tenant,
            current_balance: d(balance),
            currency: "USD".into(),
            status: "active".into(),
            updated_at: Utc::now(),
        }
    }

    fn wallets(ws: &[Wallet]) -> HashMap<Uuid, Wallet> {
        ws.iter().map(|w| (w.tenant_id, w.clone())).collect()
    }

    static EMPTY: Value = Value::Null;

    fn usage<'a>(
        m: EventMeta,
        key: &'a str,
        items: &'a [UsageItem],
        total: Option<&str>,
    ) -> Op<'a> {
        Op::Usage(UsageOp {
            meta: m,
            idempotency_key: key,
            feature_key: "ai_icp_assistant",
            user_id: None,
            items,
            total_cost: total.map(d),
            metadata: &EMPTY,
        })
    }

    fn credit<'a>(m: EventMeta, key: &'a str, amount: &str) -> Op<'a> {
        Op::Credit(CreditOp {
            meta: m,
            idempotency_key: key,
            amount: d(amount),
            reason: "promo",
            metadata: &EMPTY,
        })
    }

    #[test]
    fn catalog_prices_are_summed_exactly_then_rounded_once() {
        let mut ps = prices();
        ps.insert(PriceKey::of(&item("tiny", "0")), d("0.00000150"));
        // Each line is 0.0000015: rounded per line that would be 3 x 0.000002.
        let items = [item("tiny", "1"), item("tiny", "1"), item("tiny", "1")];
        let priced = price(&items, None, &ps).unwrap();
        assert_eq!(priced.cost, d("0.000005"));
        assert_eq!(priced.unit_prices, Some(vec![d("0.0000015"); 3]));
        let half = [item("big", "0.00005")]; // 0.0000005: half rounds away from zero
        assert_eq!(price(&half, None, &ps).unwrap().cost, d("0.000001"));
    }

    #[test]
    fn total_cost_overrides_pricing_even_for_unknown_items() {
        let items = [item("unpriced", "5")];
        let priced = price(&items, Some(d("2.50")), &prices()).unwrap();
        assert_eq!(priced.cost, d("2.50"));
        assert_eq!(priced.unit_prices, None);
    }

    #[test]
    fn an_unpriced_item_is_a_rule_violation_naming_it() {
        let items = [item("mini", "1"), item("ghost", "0")];
        let err = price(&items, None, &prices()).unwrap_err();
        assert_eq!(err.kind(), "rule_violation");
        assert!(
            err.to_string().contains("llm/openai/ghost/1k_tokens"),
            "{err}"
        );
    }

    #[test]
    fn a_cost_beyond_the_ledger_precision_is_refused() {
        let mut ps = prices();
        ps.insert(PriceKey::of(&item("huge", "0")), d("1000000"));
        let items = [item("huge", "99999999999999")];
        assert_eq!(
            price(&items, None, &ps).unwrap_err().kind(),
            "rule_violation"
        );
    }

    #[test]
    fn a_credit_earlier_in_the_batch_funds_a_usage_after_it_not_before() {
        let t = Uuid::new_v4();
        let ws = wallets(&[wallet(t, "1.000000")]);
        let ops = [
            usage(meta(t, 0, "2026-11-25T10:00:00Z"), "u1", &[], Some("5")),
            credit(meta(t, 1, "2026-11-25T10:00:01Z"), "c1", "10"),
            usage(meta(t, 2, "2026-11-25T10:00:02Z"), "u2", &[], Some("5")),
        ];
        let mut n = 0u128;
        let p = plan(&ops, &prices(), &HashSet::new(), &ws, || {
            n += 1;
            Uuid::from_u128(n)
        });
        assert!(matches!(
            p.decisions[0],
            Decision::InsufficientFunds { ref cost, ref balance, .. } if *cost == d("5") && *balance == d("1")
        ));
        assert!(
            matches!(p.decisions[1], Decision::Credited { balance_after, .. } if balance_after == d("11"))
        );
        assert!(
            matches!(p.decisions[2], Decision::Charged { balance_after, .. } if balance_after == d("6"))
        );
        assert_eq!(p.ledger_rows.len(), 2);
        assert_eq!(p.ledger_rows[1].amount, d("-5"));
        assert_eq!(p.ledger_rows[1].transaction_type, "debit");
        assert_eq!(p.usage_rows.len(), 2);
        assert_eq!(p.usage_rows[0].status, STATUS_INSUFFICIENT_FUNDS);
        assert_eq!(p.usage_rows[0].ledger_transaction_id, None);
        assert_eq!(p.usage_rows[1].status, STATUS_CHARGED);
        assert_eq!(
            p.usage_rows[1].ledger_transaction_id,
            Some(p.ledger_rows[1].id)
        );
        assert_eq!(p.ledger_rows[1].usage_event_id, Some(p.usage_rows[1].id));
        assert_eq!(
            p.balances.values().copied().collect::<Vec<_>>(),
            vec![d("6")]
        );
        assert_eq!(p.touched, vec![t]);
        // Only the charged usage counts.
        let deltas: Vec<_> = p.cost_daily.values().copied().collect();
        assert_eq!(
            deltas,
            vec![CostDailyDelta {
                usage_count: 1,
                total_cost: d("5")
            }]
        );
    }

    #[test]
    fn the_wallet_balance_equals_its_start_plus_the_ledger_rows() {
        let t = Uuid::new_v4();
        let ws = wallets(&[wallet(t, "3")]);
        let ops = [
            usage(meta(t, 0, "2026-11-25T10:00:00Z"), "a", &[], Some("1.25")),
            credit(meta(t, 1, "2026-11-25T10:00:00Z"), "b", "0.5"),
            usage(meta(t, 2, "2026-11-25T10:00:00Z"), "c", &[], Some("2.25")),
            usage(
                meta(t, 3, "2026-11-25T10:00:00Z"),
                "d",
                &[],
                Some("0.000001"),
            ),
        ];
        let p = plan(&ops, &prices(), &HashSet::new(), &ws, Uuid::new_v4);
        let sum: Decimal = p.ledger_rows.iter().map(|r| r.amount).sum();
        let final_balance = *p.balances.values().next().unwrap();
        assert_eq!(d("3") + sum, final_balance);
        assert_eq!(final_balance, Decimal::ZERO);
        assert!(matches!(p.decisions[3], Decision::InsufficientFunds { .. }));
        assert!(p
            .ledger_rows
            .iter()
            .all(|r| r.balance_after >= Decimal::ZERO));
    }

    #[test]
    fn a_key_used_before_or_earlier_in_the_batch_is_not_applied_again() {
        let t = Uuid::new_v4();
        let ws = wallets(&[wallet(t, "100")]);
        let ops = [
            usage(meta(t, 0, "2026-11-25T10:00:00Z"), "old", &[], Some("1")),
            usage(meta(t, 1, "2026-11-25T10:00:00Z"), "new", &[], Some("1")),
            credit(meta(t, 2, "2026-11-25T10:00:00Z"), "new", "7"),
            usage(meta(t, 3, "2026-11-25T10:00:00Z"), "new", &[], Some("1")),
        ];
        let used: HashSet<_> = [(t, "old".to_owned())].into_iter().collect();
        let p = plan(&ops, &prices(), &used, &ws, Uuid::new_v4);
        assert_eq!(p.decisions[0], Decision::KeyAlreadyUsed);
        assert!(matches!(p.decisions[1], Decision::Charged { .. }));
        assert_eq!(p.decisions[2], Decision::KeyAlreadyUsed);
        assert_eq!(p.decisions[3], Decision::KeyAlreadyUsed);
        assert_eq!(p.ledger_rows.len(), 1);
        assert_eq!(
            p.balances.values().copied().collect::<Vec<_>>(),
            vec![d("99")]
        );
    }

    #[test]
    fn keys_are_per_tenant() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let ws = wallets(&[wallet(a, "10"), wallet(b, "10")]);
        let ops = [
            usage(meta(a, 0, "2026-11-25T10:00:00Z"), "same", &[], Some("1")),
            usage(meta(b, 1, "2026-11-25T10:00:00Z"), "same", &[], Some("2")),
        ];
        let p = plan(&ops, &prices(), &HashSet::new(), &ws, Uuid::new_v4);
        assert!(p
            .decisions
            .iter()
            .all(|x| matches!(x, Decision::Charged { .. })));
        assert_eq!(p.touched.len(), 2);
        assert_eq!(p.balances.len(), 2);
    }

    #[test]
    fn a_rejected_usage_writes_nothing_and_leaves_its_key_free() {
        let t = Uuid::new_v4();
        let ws = wallets(&[wallet(t, "10")]);
        let ghost = [item("ghost", "1")];
        let mini = [item("mini", "1000")];
        let ops = [
            usage(meta(t, 0, "2026-11-25T10:00:00Z"), "k", &ghost, None),
            usage(meta(t, 1, "2026-11-25T10:00:00Z"), "k", &mini, None),
        ];
        let p = plan(&ops, &prices(), &HashSet::new(), &ws, Uuid::new_v4);
        assert!(
            matches!(p.decisions[0], Decision::Rejected(ref r) if r.kind() == "rule_violation")
        );
        assert!(matches!(p.decisions[1], Decision::Charged { cost, .. } if cost == d("0.15")));
        assert_eq!(p.usage_rows.len(), 1);
        assert_eq!(
            p.usage_rows[0].usage_items[0]["unit_price"],
            json!("0.00015000")
        );
    }

    #[test]
    fn a_zero_cost_usage_is_charged_without_a_ledger_row() {
        let t = Uuid::new_v4();
        let ws = wallets(&[wallet(t, "0")]);
        let ops = [usage(
            meta(t, 0, "2026-11-25T23:59:59Z"),
            "z",
            &[],
            Some("0"),
        )];
        let p = plan(&ops, &prices(), &HashSet::new(), &ws, Uuid::new_v4);
        assert!(matches!(
            p.decisions[0],
            Decision::Charged { ledger_id: None, cost, balance_after, .. } if cost.is_zero() && balance_after.is_zero()
        ));
        assert!(p.ledger_rows.is_empty());
        assert!(p.balances.is_empty(), "no wallet update when nothing moved");
        assert_eq!(p.usage_rows[0].status, STATUS_CHARGED);
        assert_eq!(p.touched, vec![t]);
        let (k, v) = p.cost_daily.iter().next().unwrap();
        assert_eq!(k.day, NaiveDate::from_ymd_opt(2026, 11, 25).unwrap());
        assert_eq!(v.usage_count, 1);
    }

    #[test]
    fn cost_daily_groups_by_utc_day_and_feature_in_key_order() {
        let t = Uuid::new_v4();
        let ws = wallets(&[wallet(t, "100")]);
        let ops = [
            usage(meta(t, 0, "2026-11-26T00:30:00+02:00"), "a", &[], Some("1")),
            usage(meta(t, 1, "2026-11-25T10:00:00Z"), "b", &[], Some("2")),
            usage(meta(t, 2, "2026-11-26T10:00:00Z"), "c", &[], Some("4")),
        ];
        let p = plan(&ops, &prices(), &HashSet::new(), &ws, Uuid::new_v4);
        let rows: Vec<_> = p
            .cost_daily
            .iter()
            .map(|(k, v)| (k.day.to_string(), *v))
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    "2026-11-25".to_owned(),
                    CostDailyDelta {
                        usage_count: 2,
                        total_cost: d("3")
                    }
                ),
                (
                    "2026-11-26".to_owned(),
                    CostDailyDelta {
                        usage_count: 1,
                        total_cost: d("4")
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_credit_past_the_column_range_is_rejected() {
        let t = Uuid::new_v4();
        let ws = wallets(&[wallet(t, "99999999999999")]);
        let ops = [credit(meta(t, 0, "2026-11-25T10:00:00Z"), "c", "1")];
        let p = plan(&ops, &prices(), &HashSet::new(), &ws, Uuid::new_v4);
        assert!(matches!(p.decisions[0], Decision::Rejected(_)));
        assert!(p.ledger_rows.is_empty() && p.touched.is_empty());
    }
}
