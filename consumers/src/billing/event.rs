//! The events of `lad.billing.usage.v1` (contract §5) and their decoding.
//! Pure: an [`Envelope`] in, a [`BillingEvent`] or a [`Rejection`] out.

use crate::envelope::{Data, Envelope, Fields, Rejection};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

pub const USAGE: &str = "billing.usage";
pub const CREDIT: &str = "billing.credit";

/// Longest accepted `idempotency_key`, in bytes. The key is part of two
/// unique btree indexes; a key near the btree row limit (~2.7 kB) would make
/// the insert fail and cost a batch split to isolate, so it is refused here.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq)]
pub enum BillingEvent {
    Usage(Usage),
    Credit(Credit),
}

/// A `billing.usage`: something a metered feature consumed, to charge once.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub idempotency_key: String,
    pub feature_key: String,
    pub user_id: Option<Uuid>,
    pub items: Vec<UsageItem>,
    /// When given, the cost as is: the pricing catalog is not consulted.
    pub total_cost: Option<Decimal>,
    /// `data.metadata` (an optional object, a hub extension), stored with the
    /// usage event and its ledger row.
    pub metadata: Value,
}

/// One priced line of a usage. `quantity` serializes as a decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct UsageItem {
    pub category: String,
    pub provider: String,
    pub model: String,
    pub unit: String,
    pub quantity: Decimal,
}

/// A `billing.credit`: a wallet top-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Credit {
    pub idempotency_key: String,
    pub amount: Decimal,
    pub reason: String,
    /// `data.metadata` (optional object, hub extension), stored on the ledger row.
    pub metadata: Value,
}

pub fn decode(env: &Envelope) -> Result<BillingEvent, Rejection> {
    let f = env.fields();
    match env.event_type.as_str() {
        USAGE => decode_usage(f).map(BillingEvent::Usage),
        CREDIT => decode_credit(f).map(BillingEvent::Credit),
        other => Err(Rejection::UnknownType(other.to_owned())),
    }
}

fn decode_usage(f: Fields<'_>) -> Result<Usage, Rejection> {
    let items = f
        .array("usage_items")?
        .iter()
        .enumerate()
        .map(|(i, v)| decode_item(i, v))
        .collect::<Result<Vec<_>, _>>()?;
    let usage = Usage {
        idempotency_key: f.string("idempotency_key")?.into_owned(),
        feature_key: f.string("feature_key")?.into_owned(),
        user_id: f.opt_uuid("user_id")?,
        items,
        total_cost: f.opt_decimal("total_cost")?,
        metadata: metadata(f)?,
    };
    check_usage(
        &usage.idempotency_key,
        &usage.feature_key,
        &usage.items,
        usage.total_cost,
    )?;
    Ok(usage)
}

fn decode_item(index: usize, value: &RawValue) -> Result<UsageItem, Rejection> {
    let Some(item) = Data::object(value) else {
        return Err(Rejection::InvalidData(format!(
            "data.usage_items[{index}] must be an object"
        )));
    };
    // The shared readers name fields `data.<name>`; point at the item instead.
    let at = |e: Rejection| match e {
        Rejection::InvalidData(msg) => {
            Rejection::InvalidData(msg.replacen("data.", &format!("data.usage_items[{index}]."), 1))
        }
        other => other,
    };
    let f = Fields(&item);
    Ok(UsageItem {
        category: f.non_empty_string("category").map_err(at)?.into_owned(),
        provider: f.non_empty_string("provider").map_err(at)?.into_owned(),
        model: f.non_empty_string("model").map_err(at)?.into_owned(),
        unit: f.non_empty_string("unit").map_err(at)?.into_owned(),
        quantity: f.non_negative_decimal("quantity").map_err(at)?,
    })
}

fn decode_credit(f: Fields<'_>) -> Result<Credit, Rejection> {
    let credit = Credit {
        idempotency_key: f.string("idempotency_key")?.into_owned(),
        amount: f.decimal("amount")?,
        reason: f.string("reason")?.into_owned(),
        metadata: metadata(f)?,
    };
    check_idempotency_key(&credit.idempotency_key)?;
    if credit.amount <= Decimal::ZERO {
        return Err(Rejection::InvalidData(format!(
            "data.amount must be > 0, got {}",
            credit.amount
        )));
    }
    Ok(credit)
}

fn metadata(f: Fields<'_>) -> Result<Value, Rejection> {
    match f.opt_object("metadata")? {
        None => Ok(Value::Object(Map::new())),
        Some(raw) => serde_json::from_str(raw.get())
            .map_err(|e| Rejection::InvalidData(format!("data.metadata {e}"))),
    }
}

/// The rules a usage must meet whoever sends it: decoded from Kafka, or
/// handed to [`super::charge`] by another pipeline.
pub fn check_usage(
    idempotency_key: &str,
    feature_key: &str,
    items: &[UsageItem],
    total_cost: Option<Decimal>,
) -> Result<(), Rejection> {
    check_idempotency_key(idempotency_key)?;
    check_feature_key(feature_key)?;
    if let Some(i) = items
        .iter()
        .position(|it| it.quantity.is_sign_negative() && !it.quantity.is_zero())
    {
        return Err(Rejection::InvalidData(format!(
            "data.usage_items[{i}].quantity must be >= 0, got {}",
            items[i].quantity
        )));
    }
    match total_cost {
        Some(c) if c.is_sign_negative() && !c.is_zero() => Err(Rejection::InvalidData(format!(
            "data.total_cost must be >= 0, got {c}"
        ))),
        // Nothing to price and no cost given: charging zero would hide a
        // producer bug, so it is refused instead.
        None if items.is_empty() => Err(Rejection::InvalidData(
            "data.usage_items must not be empty when data.total_cost is absent".into(),
        )),
        _ => Ok(()),
    }
}

pub fn check_idempotency_key(key: &str) -> Result<(), Rejection> {
    if key.trim().is_empty() {
        return Err(Rejection::InvalidData(
            "data.idempotency_key must not be empty".into(),
        ));
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(Rejection::InvalidData(format!(
            "data.idempotency_key is longer than {MAX_IDEMPOTENCY_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

/// "Unknown feature" check. The hub keeps no registry of features (the
/// entitlements table is per tenant and optional), so a feature is known
/// when its key is a sane identifier: `^[a-z][a-z0-9_.-]{0,63}$`, e.g.
/// `voice_calls`, `apollo.search`. That refuses empty keys, whitespace,
/// upper case and free text, which would otherwise split `billing_cost_daily`
/// into rows nobody can group.
pub fn check_feature_key(key: &str) -> Result<(), Rejection> {
    let bytes = key.as_bytes();
    let ok = matches!(bytes.first(), Some(b'a'..=b'z'))
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Rejection::InvalidData(format!(
            "data.feature_key must match ^[a-z][a-z0-9_.-]{{0,63}}$, got {key:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::test_envelope as envelope;
    use serde_json::json;

    fn usage_data() -> Value {
        json!({
            "idempotency_key": "icp-msg-81f3",
            "feature_key": "ai_icp_assistant",
            "user_id": "5a1e0f0e-1111-4c1c-a6a4-2f6c1d9e0a77",
            "usage_items": [
                {"category": "llm", "provider": "openai", "model": "gpt-4o-mini", "unit": "1k_tokens", "quantity": "2.5"}
            ]
        })
    }

    fn rejected(kind: &str, data: Value) -> Rejection {
        decode(&envelope(kind, data)).unwrap_err()
    }

    #[test]
    fn a_priced_usage_decodes_with_its_items() {
        let BillingEvent::Usage(u) = decode(&envelope(USAGE, usage_data())).unwrap() else {
            panic!("not a usage")
        };
        assert_eq!(u.idempotency_key, "icp-msg-81f3");
        assert_eq!(u.feature_key, "ai_icp_assistant");
        assert!(u.user_id.is_some());
        assert_eq!(u.items.len(), 1);
        assert_eq!(u.items[0].quantity.to_string(), "2.5");
        assert_eq!(u.total_cost, None);
        assert_eq!(u.metadata, json!({}));
    }

    #[test]
    fn total_cost_makes_empty_items_acceptable() {
        let data = json!({
            "idempotency_key": "k", "feature_key": "voice_calls",
            "usage_items": [], "total_cost": "1.250000", "metadata": {"call": 1}
        });
        let BillingEvent::Usage(u) = decode(&envelope(USAGE, data)).unwrap() else {
            panic!("not a usage")
        };
        assert_eq!(u.total_cost.unwrap().to_string(), "1.250000");
        assert_eq!(u.metadata, json!({"call": 1}));
    }

    #[test]
    fn a_credit_decodes() {
        let data = json!({"idempotency_key": "stripe:pi_1", "amount": "100.00", "reason": "stripe_payment"});
        let BillingEvent::Credit(c) = decode(&envelope(CREDIT, data)).unwrap() else {
            panic!("not a credit")
        };
        assert_eq!(c.amount.to_string(), "100.00");
        assert_eq!(c.reason, "stripe_payment");
    }

    #[test]
    fn an_unknown_type_is_rejected_as_such() {
        assert_eq!(
            rejected("billing.refund", usage_data()).kind(),
            "unknown_type"
        );
    }

    #[test]
    fn bad_usages_are_invalid_data_naming_the_field() {
        let mut cases: Vec<(Value, &str)> = Vec::new();
        let with = |f: &dyn Fn(&mut Value)| {
            let mut d = usage_data();
            f(&mut d);
            d
        };
        cases.push((
            with(&|d| d["idempotency_key"] = json!("")),
            "idempotency_key",
        ));
        cases.push((
            with(&|d| d["idempotency_key"] = json!("x".repeat(256))),
            "idempotency_key",
        ));
        cases.push((
            with(&|d| {
                d.as_object_mut().unwrap().remove("idempotency_key");
            }),
            "idempotency_key",
        ));
        cases.push((
            with(&|d| {
                d.as_object_mut().unwrap().remove("feature_key");
            }),
            "feature_key",
        ));
        cases.push((
            with(&|d| d["feature_key"] = json!("Voice Calls")),
            "feature_key",
        ));
        cases.push((with(&|d| d["feature_key"] = json!("")), "feature_key"));
        cases.push((
            with(&|d| d["feature_key"] = json!(format!("a{}", "b".repeat(64)))),
            "feature_key",
        ));
        cases.push((with(&|d| d["user_id"] = json!("nope")), "user_id"));
        cases.push((
            with(&|d| {
                d.as_object_mut().unwrap().remove("usage_items");
            }),
            "usage_items",
        ));
        cases.push((with(&|d| d["usage_items"] = json!([])), "usage_items"));
        cases.push((with(&|d| d["usage_items"] = json!([1])), "usage_items[0]"));
        cases.push((
            with(&|d| d["usage_items"][0]["quantity"] = json!("-1")),
            "usage_items[0].quantity",
        ));
        cases.push((
            with(&|d| d["usage_items"][0]["quantity"] = json!(2.5)),
            "usage_items[0].quantity",
        ));
        cases.push((
            with(&|d| d["usage_items"][0]["quantity"] = json!("1e3")),
            "usage_items[0].quantity",
        ));
        cases.push((
            with(&|d| {
                d["usage_items"][0].as_object_mut().unwrap().remove("unit");
            }),
            "usage_items[0].unit",
        ));
        cases.push((with(&|d| d["total_cost"] = json!("-0.01")), "total_cost"));
        cases.push((with(&|d| d["total_cost"] = json!("abc")), "total_cost"));
        cases.push((with(&|d| d["metadata"] = json!("text")), "metadata"));
        for (data, field) in cases {
            let err = rejected(USAGE, data.clone());
            assert_eq!(err.kind(), "invalid_data", "{data}");
            assert!(
                err.to_string().contains(&format!("data.{field}")),
                "{err} should name {field}"
            );
        }
    }

    #[test]
    fn bad_credits_are_invalid_data() {
        let ok = json!({"idempotency_key": "k", "amount": "1", "reason": "promo"});
        for (field, value) in [
            ("amount", json!("0")),
            ("amount", json!("-5")),
            ("amount", json!(5)),
            ("amount", Value::Null),
            ("reason", Value::Null),
            ("idempotency_key", json!("  ")),
        ] {
            let mut data = ok.clone();
            data[field] = value;
            let err = rejected(CREDIT, data);
            assert_eq!(err.kind(), "invalid_data");
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn feature_keys_are_identifiers() {
        for good in ["voice_calls", "apollo.search", "a", "ai-icp_2"] {
            assert!(check_feature_key(good).is_ok(), "{good}");
        }
        for bad in ["", "1abc", "_x", "Voice", "a b", "é", "a/b"] {
            assert!(check_feature_key(bad).is_err(), "{bad}");
        }
        assert!(check_feature_key(&"a".repeat(64)).is_ok());
        assert!(check_feature_key(&"a".repeat(65)).is_err());
    }

    #[test]
    fn usage_items_serialize_quantities_as_strings() {
        let item = UsageItem {
            category: "llm".into(),
            provider: "openai".into(),
            model: "m".into(),
            unit: "1k_tokens".into(),
            quantity: Decimal::new(25, 1),
        };
        assert_eq!(
            serde_json::to_value(&item).unwrap()["quantity"],
            json!("2.5")
        );
    }
}
