//! The messages of `tenant:{tenant_id}:billing`. Money is a decimal string
//! with the ledger's 6 places (`"12.500000"`), the same spelling the
//! database gives back, so a snapshot and a message never disagree on text.

use super::apply::{CreditOp, UsageOp, Wallet, MONEY_SCALE};
use crate::live::{Channel, LiveUpdate};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

pub const CHARGED: &str = "billing.charged";
pub const CREDITED: &str = "billing.credited";
pub const REJECTED: &str = "billing.rejected";
pub const WALLET: &str = "billing.wallet";

/// `d` as a string with exactly [`MONEY_SCALE`] places. Amounts reaching
/// here are already rounded to that scale, so this only pads.
pub fn money(d: Decimal) -> String {
    let mut d = d;
    d.rescale(MONEY_SCALE);
    d.to_string()
}

fn channel(tenant_id: Uuid) -> Channel {
    Channel::Billing { tenant_id }
}

// Members in name order, as the maps these structs replaced wrote them
// (see `LiveUpdate::new`).

/// `amount` is the (positive) cost taken from the wallet;
/// `ledger_transaction_id` is null for a zero-cost usage, which moves no money.
pub fn charged(
    u: &UsageOp<'_>,
    usage_event_id: Uuid,
    ledger_transaction_id: Option<Uuid>,
    amount: Decimal,
    balance_after: Decimal,
    currency: &str,
) -> LiveUpdate {
    #[derive(Serialize)]
    struct Charged<'a> {
        amount: String,
        balance_after: String,
        currency: &'a str,
        event_id: Uuid,
        feature_key: &'a str,
        idempotency_key: &'a str,
        ledger_transaction_id: Option<Uuid>,
        #[serde(with = "crate::instant::rfc3339")]
        occurred_at: DateTime<Utc>,
        usage_event_id: Uuid,
        user_id: Option<Uuid>,
    }
    let data = Charged {
        amount: money(amount),
        balance_after: money(balance_after),
        currency,
        event_id: u.meta.event_id,
        feature_key: u.feature_key,
        idempotency_key: u.idempotency_key,
        ledger_transaction_id,
        occurred_at: u.meta.occurred_at,
        usage_event_id,
        user_id: u.user_id,
    };
    LiveUpdate::new(channel(u.meta.tenant_id), CHARGED, data)
}

pub fn credited(
    c: &CreditOp<'_>,
    ledger_transaction_id: Uuid,
    balance_after: Decimal,
    currency: &str,
) -> LiveUpdate {
    #[derive(Serialize)]
    struct Credited<'a> {
        amount: String,
        balance_after: String,
        currency: &'a str,
        event_id: Uuid,
        idempotency_key: &'a str,
        ledger_transaction_id: Uuid,
        #[serde(with = "crate::instant::rfc3339")]
        occurred_at: DateTime<Utc>,
        reason: &'a str,
    }
    let data = Credited {
        amount: money(c.amount),
        balance_after: money(balance_after),
        currency,
        event_id: c.meta.event_id,
        idempotency_key: c.idempotency_key,
        ledger_transaction_id,
        occurred_at: c.meta.occurred_at,
        reason: c.reason,
    };
    LiveUpdate::new(channel(c.meta.tenant_id), CREDITED, data)
}

/// A usage recorded as `insufficient_funds`. The cost is given both as
/// `amount` (the published schema's name) and `cost`.
pub fn rejected(
    u: &UsageOp<'_>,
    usage_event_id: Uuid,
    cost: Decimal,
    balance: Decimal,
    currency: &str,
) -> LiveUpdate {
    #[derive(Serialize)]
    struct Rejected<'a> {
        amount: String,
        balance: String,
        cost: String,
        currency: &'a str,
        event_id: Uuid,
        feature_key: &'a str,
        idempotency_key: &'a str,
        #[serde(with = "crate::instant::rfc3339")]
        occurred_at: DateTime<Utc>,
        reason: &'static str,
        usage_event_id: Uuid,
        user_id: Option<Uuid>,
    }
    let data = Rejected {
        amount: money(cost),
        balance: money(balance),
        cost: money(cost),
        currency,
        event_id: u.meta.event_id,
        feature_key: u.feature_key,
        idempotency_key: u.idempotency_key,
        occurred_at: u.meta.occurred_at,
        reason: "insufficient_funds",
        usage_event_id,
        user_id: u.user_id,
    };
    LiveUpdate::new(channel(u.meta.tenant_id), REJECTED, data)
}

/// The wallet as the billing channel shows it (message data and snapshot).
pub fn wallet_data(w: &Wallet) -> Value {
    json!({
        "wallet_id": w.id,
        "tenant_id": w.tenant_id,
        "current_balance": money(w.current_balance),
        "currency": w.currency,
        "status": w.status,
        "updated_at": w.updated_at,
    })
}

/// The billing channel's snapshot: the wallet, or before its first use the
/// wallet-to-be (contract §5: created with balance 0).
pub fn wallet_snapshot(tenant_id: Uuid, wallet: Option<&Wallet>) -> Value {
    let wallet = match wallet {
        Some(w) => wallet_data(w),
        None => json!({
            "wallet_id": null,
            "tenant_id": tenant_id,
            "current_balance": money(Decimal::ZERO),
            "currency": "USD",
            "status": "active",
            "updated_at": null,
        }),
    };
    json!({ "wallet": wallet })
}

pub fn wallet(w: &Wallet) -> LiveUpdate {
    LiveUpdate::new(channel(w.tenant_id), WALLET, wallet_data(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::EventMeta;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn meta() -> EventMeta {
        EventMeta {
            event_id: Uuid::from_u128(1),
            tenant_id: Uuid::from_u128(2),
            occurred_at: DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            record: 0,
        }
    }

    fn credit(metadata: &Value) -> CreditOp<'_> {
        CreditOp {
            meta: meta(),
            idempotency_key: "stripe:1",
            amount: d("10"),
            reason: "stripe_payment",
            metadata,
        }
    }

    #[test]
    fn money_is_a_string_with_six_places() {
        assert_eq!(money(d("1.5")), "1.500000");
        assert_eq!(money(d("0")), "0.000000");
        assert_eq!(money(d("12.345678")), "12.345678");
    }

    #[test]
    fn charged_and_rejected_carry_the_usage_and_the_balance() {
        let md = json!({});
        let u = UsageOp {
            meta: meta(),
            idempotency_key: "voice-call:1",
            feature_key: "voice_calls",
            user_id: None,
            items: &[],
            total_cost: Some(d("1.25")),
            metadata: &md,
        };
        let c = charged(
            &u,
            Uuid::from_u128(3),
            Some(Uuid::from_u128(4)),
            d("1.25"),
            d("8.75"),
            "USD",
        );
        assert_eq!(c.channel, format!("tenant:{}:billing", Uuid::from_u128(2)));
        assert_eq!(c.kind, "billing.charged");
        let c_data = c.data_value();
        assert_eq!(c_data["amount"], "1.250000");
        assert_eq!(c_data["balance_after"], "8.750000");
        assert_eq!(c_data["usage_event_id"], Uuid::from_u128(3).to_string());
        assert_eq!(c_data["occurred_at"], "2026-11-25T10:00:00Z");
        assert_eq!(c_data["feature_key"], "voice_calls");

        let r = rejected(&u, Uuid::from_u128(3), d("1.25"), d("1"), "USD");
        assert_eq!(r.kind, "billing.rejected");
        let r_data = r.data_value();
        assert_eq!(r_data["reason"], "insufficient_funds");
        assert_eq!(r_data["cost"], "1.250000");
        assert_eq!(r_data["amount"], "1.250000");
        assert_eq!(r_data["balance"], "1.000000");
    }

    #[test]
    fn credited_and_wallet_shapes() {
        let md = json!({});
        let c = credit(&md);
        let m = credited(&c, Uuid::from_u128(5), d("10"), "USD");
        assert_eq!(m.kind, "billing.credited");
        let m_data = m.data_value();
        assert_eq!(m_data["amount"], "10.000000");
        assert_eq!(m_data["reason"], "stripe_payment");
        assert_eq!(
            m_data["ledger_transaction_id"],
            Uuid::from_u128(5).to_string()
        );

        let w = Wallet {
            id: Uuid::from_u128(6),
            tenant_id: Uuid::from_u128(2),
            current_balance: d("10.000000"),
            currency: "USD".into(),
            status: "active".into(),
            updated_at: meta().occurred_at,
        };
        let m = wallet(&w);
        assert_eq!(m.kind, "billing.wallet");
        let m_data = m.data_value();
        assert_eq!(
            m_data,
            json!({
                "wallet_id": Uuid::from_u128(6),
                "tenant_id": Uuid::from_u128(2),
                "current_balance": "10.000000",
                "currency": "USD",
                "status": "active",
                "updated_at": "2026-11-25T10:00:00Z",
            })
        );
        assert_eq!(wallet_snapshot(w.tenant_id, Some(&w))["wallet"], m_data);
        let none = wallet_snapshot(w.tenant_id, None);
        assert_eq!(
            (
                &none["wallet"]["wallet_id"],
                &none["wallet"]["current_balance"]
            ),
            (&Value::Null, &json!("0.000000"))
        );
    }

    #[test]
    fn messages_keep_the_text_their_maps_wrote() {
        let md = json!({});
        let u = UsageOp {
            meta: EventMeta {
                occurred_at: meta().occurred_at + chrono::Duration::microseconds(1_500),
                ..meta()
            },
            idempotency_key: "voice-call:\"1\"",
            feature_key: "voice_calls",
            user_id: Some(Uuid::from_u128(7)),
            items: &[],
            total_cost: Some(d("1.25")),
            metadata: &md,
        };
        let c = credit(&md);
        let (usage, ledger) = (Uuid::from_u128(3), Uuid::from_u128(4));
        let cases = [
            (
                charged(&u, usage, None, d("1.25"), d("8.75"), "USD"),
                json!({
                    "usage_event_id": usage,
                    "ledger_transaction_id": null,
                    "event_id": u.meta.event_id,
                    "idempotency_key": u.idempotency_key,
                    "feature_key": u.feature_key,
                    "user_id": u.user_id,
                    "amount": "1.250000",
                    "balance_after": "8.750000",
                    "currency": "USD",
                    "occurred_at": u.meta.occurred_at,
                }),
            ),
            (
                credited(&c, ledger, d("10"), "EUR"),
                json!({
                    "ledger_transaction_id": ledger,
                    "event_id": c.meta.event_id,
                    "idempotency_key": c.idempotency_key,
                    "amount": "10.000000",
                    "reason": c.reason,
                    "balance_after": "10.000000",
                    "currency": "EUR",
                    "occurred_at": c.meta.occurred_at,
                }),
            ),
            (
                rejected(&u, usage, d("1.25"), d("1"), "USD"),
                json!({
                    "usage_event_id": usage,
                    "event_id": u.meta.event_id,
                    "idempotency_key": u.idempotency_key,
                    "feature_key": u.feature_key,
                    "user_id": u.user_id,
                    "amount": "1.250000",
                    "cost": "1.250000",
                    "balance": "1.000000",
                    "currency": "USD",
                    "reason": "insufficient_funds",
                    "occurred_at": u.meta.occurred_at,
                }),
            ),
        ];
        for (message, map) in cases {
            assert_eq!(message.data.get(), map.to_string(), "{}", message.kind);
        }
    }
}
