//! The event envelope of contract §2 and the field readers every domain decodes
//! its `data` with. Pure functions: bytes in, a typed envelope or a [`Rejection`] out.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::str::FromStr;
use uuid::Uuid;

/// Why a record was rejected. The variant is the dead letter's `error_kind`;
/// the message is its `reason`, written for the producer's team to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("value is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid envelope: {0}")]
    InvalidEnvelope(String),
    #[error("unknown type {0:?} for this topic")]
    UnknownType(String),
    #[error("invalid data: {0}")]
    InvalidData(String),
    #[error("rule violation: {0}")]
    RuleViolation(String),
}

impl Rejection {
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::InvalidJson(_) => "invalid_json",
            Rejection::InvalidEnvelope(_) => "invalid_envelope",
            Rejection::UnknownType(_) => "unknown_type",
            Rejection::InvalidData(_) => "invalid_data",
            Rejection::RuleViolation(_) => "rule_violation",
        }
    }
}

/// A decoded envelope. `data` stays a JSON object until the topic's domain reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub event_id: Uuid,
    pub event_type: String,
    pub version: u32,
    pub tenant_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub data: Map<String, Value>,
}

/// The only envelope version this hub understands. A producer that bumps it
/// changes the meaning of `data`, so guessing would be worse than rejecting.
pub const SUPPORTED_VERSION: u32 = 1;

/// The envelope as it arrives, read in one pass: the header fields stay
/// borrowed slices of the record (read below), only `data` becomes a tree.
/// A `Value` for the whole record cost a `String` for every key and header
/// value of every event (issue #14). `present` keeps an explicit `null`
/// apart from a missing field, so each gets its own message.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    event_id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "type", deserialize_with = "present")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    version: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    tenant_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    occurred_at: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    data: Option<Value>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A JSON value read no further than its kind: a string (unescaped), null,
/// or anything else as written. For the envelope's header fields and the
/// live stream's entity keys, which are read from raw JSON text.
pub(crate) enum Scalar<'a> {
    Str(Cow<'a, str>),
    Null,
    Other(&'a str),
}

impl<'a> Scalar<'a> {
    pub(crate) fn of(raw: &'a RawValue) -> Scalar<'a> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => match serde_json::from_str(text) {
                Ok(s) => Scalar::Str(s),
                Err(_) => Scalar::Other(text),
            },
            _ if text == "null" => Scalar::Null,
            _ => Scalar::Other(text),
        }
    }
}

fn header(raw: Option<&RawValue>) -> Option<Scalar<'_>> {
    raw.map(Scalar::of)
}

impl Envelope {
    pub fn decode(payload: Option<&[u8]>) -> Result<Envelope, Rejection> {
        let bytes = payload.ok_or_else(|| Rejection::InvalidJson("record has no value".into()))?;
        let env = |msg: String| Rejection::InvalidEnvelope(msg);
        // A struct also reads from a JSON array (field by field, in
        // order), which must not pass for an envelope.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                    Err(e) => Rejection::InvalidJson(e.to_string()),
                    Ok(_) => env("value must be a JSON object".into()),
                },
            );
        }
        let wire: Wire<'_> = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
            // A repeated header field: which one applies is anyone's guess.
            serde_json::error::Category::Data => env(e.to_string()),
            _ => Rejection::InvalidJson(e.to_string()),
        })?;

        let event_id = uuid_field(header(wire.event_id), "event_id").map_err(env)?;
        let event_type = match header(wire.kind) {
            Some(Scalar::Str(s)) if !s.is_empty() => s.into_owned(),
            Some(Scalar::Str(_)) => return Err(env("type must not be empty".into())),
            Some(_) => return Err(env("type must be a string".into())),
            None => return Err(env("missing required field type".into())),
        };
        let version = match header(wire.version) {
            None | Some(Scalar::Null) => SUPPORTED_VERSION,
            Some(Scalar::Other(n)) if n.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
                serde_json::from_str::<u64>(n)
                    .ok()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| env("version must be a positive integer".into()))?
            }
            Some(_) => return Err(env("version must be an integer".into())),
        };
        if version != SUPPORTED_VERSION {
            return Err(env(format!(
                "unsupported version {version} (this hub reads version {SUPPORTED_VERSION})"
            )));
        }
        let tenant_id = uuid_field(header(wire.tenant_id), "tenant_id").map_err(env)?;
        let occurred_at = match header(wire.occurred_at) {
            Some(Scalar::Str(s)) => match crate::instant::parse_plain(&s) {
                Some(at) => at,
                None => DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| env(format!("occurred_at is not RFC 3339: {e}")))?,
            },
            Some(_) => return Err(env("occurred_at must be an RFC 3339 string".into())),
            None => return Err(env("missing required field occurred_at".into())),
        };
        let data = match wire.data {
            Some(Value::Object(m)) => m,
            Some(_) => return Err(env("data must be a JSON object".into())),
            None => return Err(env("missing required field data".into())),
        };
        Ok(Envelope {
            event_id,
            event_type,
            version,
            tenant_id,
            occurred_at,
            data,
        })
    }

    /// Reader over `data` that names the offending field in every error.
    pub fn fields(&self) -> Fields<'_> {
        Fields(&self.data)
    }
}

fn uuid_field(value: Option<Scalar<'_>>, name: &str) -> Result<Uuid, String> {
    match value {
        Some(Scalar::Str(s)) => {
            Uuid::parse_str(&s).map_err(|_| format!("{name} is not a UUID: {s:?}"))
        }
        Some(Scalar::Null) | None => Err(format!("missing required field {name}")),
        Some(Scalar::Other(_)) => Err(format!("{name} must be a UUID string")),
    }
}

/// Typed access to an event's `data` object. Every error is an
/// [`Rejection::InvalidData`] naming the field as `data.<name>`.
#[derive(Clone, Copy)]
pub struct Fields<'a>(pub &'a Map<String, Value>);

fn invalid(name: &str, what: &str) -> Rejection {
    Rejection::InvalidData(format!("data.{name} {what}"))
}

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&'a Value> {
        match self.0.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn required(&self, name: &str) -> Result<&'a Value, Rejection> {
        self.get(name).ok_or_else(|| invalid(name, "is required"))
    }

    pub fn uuid(&self, name: &str) -> Result<Uuid, Rejection> {
        self.opt_uuid(name)?
            .ok_or_else(|| invalid(name, "is required"))
    }

    pub fn opt_uuid(&self, name: &str) -> Result<Option<Uuid>, Rejection> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Uuid::parse_str(s)
                .map(Some)
                .map_err(|_| invalid(name, &format!("is not a UUID: {s:?}"))),
            Some(_) => Err(invalid(name, "must be a UUID string")),
        }
    }

    pub fn string(&self, name: &str) -> Result<&'a str, Rejection> {
        match self.required(name)? {
            Value::String(s) => Ok(s),
            _ => Err(invalid(name, "must be a string")),
        }
    }

    pub fn non_empty_string(&self, name: &str) -> Result<&'a str, Rejection> {
        let s = self.string(name)?;
        if s.trim().is_empty() {
            return Err(invalid(name, "must not be empty"));
        }
        Ok(s)
    }

    pub fn opt_string(&self, name: &str) -> Result<Option<&'a str>, Rejection> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(name, "must be a string")),
        }
    }

    /// A string restricted to `allowed`, returned as the matching `&'static str`.
    pub fn one_of(&self, name: &str, allowed: &[&'static str]) -> Result<&'static str, Rejection> {
        let s = self.string(name)?;
        allowed
            .iter()
            .find(|a| **a == s)
            .copied()
            .ok_or_else(|| invalid(name, &format!("must be one of {allowed:?}, got {s:?}")))
    }

    pub fn opt_one_of(
        &self,
        name: &str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>, Rejection> {
        match self.get(name) {
            None => Ok(None),
            Some(_) => self.one_of(name, allowed).map(Some),
        }
    }

    /// A non-negative integer that fits `i32` (what the schema stores).
    pub fn non_negative_i32(&self, name: &str) -> Result<i32, Rejection> {
        match self.required(name)? {
            Value::Number(n) => n
                .as_i64()
                .filter(|v| *v >= 0)
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| invalid(name, &format!("must be an integer >= 0, got {n}"))),
            _ => Err(invalid(name, "must be an integer")),
        }
    }

    pub fn decimal(&self, name: &str) -> Result<Decimal, Rejection> {
        self.opt_decimal(name)?
            .ok_or_else(|| invalid(name, "is required"))
    }

    /// Money arrives as a decimal *string*: a JSON number would already have
    /// been through a binary float in many producers' serializers.
    pub fn opt_decimal(&self, name: &str) -> Result<Option<Decimal>, Rejection> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => parse_decimal(s).map(Some).map_err(|e| invalid(name, &e)),
            Some(_) => Err(invalid(name, "must be a decimal string such as \"1.25\"")),
        }
    }

    pub fn non_negative_decimal(&self, name: &str) -> Result<Decimal, Rejection> {
        let d = self.decimal(name)?;
        if d.is_sign_negative() && !d.is_zero() {
            return Err(invalid(name, &format!("must be >= 0, got {d}")));
        }
        Ok(d)
    }

    pub fn array(&self, name: &str) -> Result<&'a Vec<Value>, Rejection> {
        match self.required(name)? {
            Value::Array(a) => Ok(a),
            _ => Err(invalid(name, "must be an array")),
        }
    }

    pub fn currency(&self, name: &str) -> Result<String, Rejection> {
        match self.opt_string(name)? {
            None => Ok("USD".to_owned()),
            Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => {
                Ok(c.to_owned())
            }
            Some(c) => Err(invalid(
                name,
                &format!("must be an ISO 4217 code such as USD, got {c:?}"),
            )),
        }
    }
}

/// Strict decimal syntax: optional sign, digits, optional fraction. No
/// exponents, no spaces, at most 6 fractional digits beyond which the ledger
/// (NUMERIC(20,6)) would round silently.
pub fn parse_decimal(s: &str) -> Result<Decimal, String> {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let well_formed = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(body.contains('.') && frac.is_empty());
    if !well_formed {
        return Err(format!("is not a decimal string: {s:?}"));
    }
    if frac.len() > 6 {
        return Err(format!("has more than 6 decimal places: {s:?}"));
    }
    if int.len() > 14 {
        return Err(format!("is too large: {s:?}"));
    }
    Decimal::from_str(s).map_err(|e| format!("is not a decimal: {e}"))
}

/// An envelope around `data` with fresh ids, for the domains' decoding tests.
#[cfg(test)]
pub(crate) fn test_envelope(event_type: &str, data: Value) -> Envelope {
    let value = serde_json::json!({
        "event_id": Uuid::new_v4(),
        "type": event_type,
        "tenant_id": Uuid::new_v4(),
        "occurred_at": "2026-11-25T10:00:00Z",
        "data": data,
    });
    Envelope::decode(Some(&serde_json::to_vec(&value).expect("serializes")))
        .expect("valid envelope")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn valid() -> Value {
        json!({
            "event_id": "7f0c3c1e-3f4a-4b8e-9d55-0c1a8f0e6b11",
            "type": "call.ended",
            "tenant_id": "0b1d5f3a-8f55-4c1c-a6a4-2f6c1d9e0a77",
            "occurred_at": "2026-11-25T10:00:00.000Z",
            "data": {"call_id": "0b1d5f3a-8f55-4c1c-a6a4-2f6c1d9e0a77"}
        })
    }

    #[test]
    fn a_valid_envelope_decodes_with_version_defaulting_to_one() {
        let env = Envelope::decode(Some(&bytes(valid()))).unwrap();
        assert_eq!(env.version, 1);
        assert_eq!(env.event_type, "call.ended");
        assert_eq!(env.occurred_at.to_rfc3339(), "2026-11-25T10:00:00+00:00");
    }

    #[test]
    fn garbage_bytes_are_invalid_json() {
        let err = Envelope::decode(Some(b"{not json")).unwrap_err();
        assert_eq!(err.kind(), "invalid_json");
        assert_eq!(Envelope::decode(None).unwrap_err().kind(), "invalid_json");
    }

    #[test]
    fn each_missing_required_field_is_named() {
        for field in ["event_id", "type", "tenant_id", "occurred_at", "data"] {
            let mut v = valid();
            v.as_object_mut().unwrap().remove(field);
            let err = Envelope::decode(Some(&bytes(v))).unwrap_err();
            assert_eq!(err.kind(), "invalid_envelope", "{field}");
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn wrong_types_in_the_envelope_are_rejected() {
        let cases = [
            ("tenant_id", json!("not-a-uuid")),
            ("event_id", json!(12)),
            ("occurred_at", json!("yesterday")),
            ("data", json!([1, 2])),
            ("version", json!("1")),
            ("version", json!(2)),
        ];
        for (field, value) in cases {
            let mut v = valid();
            v[field] = value.clone();
            let err = Envelope::decode(Some(&bytes(v))).unwrap_err();
            assert_eq!(err.kind(), "invalid_envelope", "{field}={value}");
        }
    }

    #[test]
    fn nulls_arrays_and_repeated_fields_are_envelope_errors_with_their_reason() {
        let with = |field: &str, value: Value| {
            let mut v = valid();
            v[field] = value;
            Envelope::decode(Some(&bytes(v))).unwrap_err().to_string()
        };
        assert!(with("event_id", Value::Null).contains("missing required field event_id"));
        assert!(with("type", Value::Null).contains("type must be a string"));
        assert!(with("type", json!("")).contains("must not be empty"));
        assert!(with("occurred_at", Value::Null).contains("must be an RFC 3339 string"));
        assert!(with("data", Value::Null).contains("data must be a JSON object"));
        assert!(with("version", json!(-1)).contains("positive integer"));
        assert!(with("version", json!(1.5)).contains("positive integer"));
        assert!(with("version", json!(true)).contains("must be an integer"));
        let mut v = valid();
        v["version"] = Value::Null;
        v["unknown"] = json!({"nested": [1, 2]});
        assert_eq!(Envelope::decode(Some(&bytes(v))).unwrap().version, 1);

        for (payload, kind) in [
            (
                &br#"["7f0c3c1e-3f4a-4b8e-9d55-0c1a8f0e6b11", "call.ended"]"#[..],
                "invalid_envelope",
            ),
            (b" 12", "invalid_envelope"),
            (b"", "invalid_json"),
            (b"{} trailing", "invalid_json"),
        ] {
            let err = Envelope::decode(Some(payload)).unwrap_err();
            assert_eq!(err.kind(), kind, "{}", String::from_utf8_lossy(payload));
        }
        let repeated = br#"{"type": "call.ended", "type": "call.started"}"#;
        let err = Envelope::decode(Some(repeated)).unwrap_err();
        assert_eq!(err.kind(), "invalid_envelope");
        assert!(err.to_string().contains("duplicate field `type`"), "{err}");
        // Escapes in header strings are read as JSON.
        let text = String::from_utf8(bytes(valid()))
            .unwrap()
            .replace(r#""call.ended""#, r#""call.\u0065nded""#);
        assert!(text.contains(r"\u0065"));
        assert_eq!(
            Envelope::decode(Some(text.as_bytes())).unwrap().event_type,
            "call.ended"
        );
    }

    #[test]
    fn decimals_are_strict_strings() {
        assert_eq!(parse_decimal("1.25").unwrap().to_string(), "1.25");
        assert_eq!(parse_decimal("0").unwrap(), Decimal::ZERO);
        assert_eq!(parse_decimal("-3.5").unwrap().to_string(), "-3.5");
        for bad in ["", "1e3", " 1", "1.", ".5", "1.2345678", "abc", "1,5", "+1"] {
            assert!(parse_decimal(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn field_readers_name_the_field_in_errors() {
        let data = json!({"cost": 1.5, "n": -1, "kind": "x", "id": "nope"});
        let f = Fields(data.as_object().unwrap());
        assert!(f
            .decimal("cost")
            .unwrap_err()
            .to_string()
            .contains("data.cost"));
        assert!(f.non_negative_i32("n").is_err());
        assert!(f
            .one_of("kind", &["a", "b"])
            .unwrap_err()
            .to_string()
            .contains("data.kind"));
        assert!(f.uuid("id").is_err());
        assert!(f
            .uuid("absent")
            .unwrap_err()
            .to_string()
            .contains("required"));
        assert_eq!(f.opt_uuid("absent").unwrap(), None);
    }

    #[test]
    fn negative_decimals_fail_the_non_negative_reader() {
        let data = json!({"cost": "-0.01", "zero": "0.00"});
        let f = Fields(data.as_object().unwrap());
        assert!(f.non_negative_decimal("cost").is_err());
        assert!(f.non_negative_decimal("zero").is_ok());
    }

    #[test]
    fn currency_defaults_to_usd_and_must_be_iso_shaped() {
        let data = json!({"a": "EUR", "b": "euro"});
        let f = Fields(data.as_object().unwrap());
        assert_eq!(f.currency("a").unwrap(), "EUR");
        assert_eq!(f.currency("missing").unwrap(), "USD");
        assert!(f.currency("b").is_err());
    }
}
