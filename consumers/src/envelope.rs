//! The event envelope of contract §2 and the field readers every domain decodes
//! its `data` with. Pure functions: bytes in, a typed envelope or a [`Rejection`] out.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
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

/// A decoded envelope, borrowing the record it was read from. `data` stays
/// raw JSON until the topic's domain reads its fields.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub event_id: Uuid,
    pub event_type: String,
    pub version: u32,
    pub tenant_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub data: Data<'a>,
}

/// A JSON object read one level deep: its members' names, and each value as
/// the raw JSON text it arrived as, read by [`Fields`] only when asked for.
/// Building a `serde_json::Map` of every event's `data` (a `String` for each
/// name and string value, a tree node for each member) was 8-11 % of the
/// hub's CPU in the ingest bench (issue #14), for fields read once each.
#[derive(Debug, Default)]
pub struct Data<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Data<'a> {
    /// The members of `raw` when it is an object.
    pub fn object(raw: &'a RawValue) -> Option<Data<'a>> {
        match serde_json::from_str(raw.get()) {
            Ok(MaybeObject::Object(data)) => Some(data),
            _ => None,
        }
    }

    /// The value of `name`, the last one if the object repeats it (as a
    /// `serde_json::Map` would keep it).
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }
}

/// A value read as an object one level deep, or noted as something else.
enum MaybeObject<'a> {
    Object(Data<'a>),
    Other,
}

impl<'de> Deserialize<'de> for MaybeObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MaybeObjectVisitor)
    }
}

struct MaybeObjectVisitor;

impl<'de> Visitor<'de> for MaybeObjectVisitor {
    type Value = MaybeObject<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(Name(name)) = map.next_key()? {
            members.push((name, map.next_value()?));
        }
        Ok(MaybeObject::Object(Data(members)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MaybeObject::Other)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(MaybeObject::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(MaybeObject::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(MaybeObject::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(MaybeObject::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(MaybeObject::Other)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(MaybeObject::Other)
    }
}

/// A member's name, borrowed from the record unless it holds an escape.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(s)))
            }

            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(NameVisitor)
    }
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
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<MaybeObject<'a>>,
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

impl<'a> Envelope<'a> {
    pub fn decode(payload: Option<&'a [u8]>) -> Result<Envelope<'a>, Rejection> {
        let bytes = payload.ok_or_else(|| Rejection::InvalidJson("record has no value".into()))?;
        let env = |msg: String| Rejection::InvalidEnvelope(msg);
        // A struct also reads from a JSON array (field by field, in
        // order), which must not pass for an envelope.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(match serde_json::from_slice::<IgnoredAny>(bytes) {
                Err(e) => Rejection::InvalidJson(e.to_string()),
                Ok(_) => env("value must be a JSON object".into()),
            });
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
            Some(MaybeObject::Object(data)) => data,
            Some(MaybeObject::Other) => return Err(env("data must be a JSON object".into())),
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
pub struct Fields<'a>(pub &'a Data<'a>);

fn invalid(name: &str, what: &str) -> Rejection {
    Rejection::InvalidData(format!("data.{name} {what}"))
}

/// The text of a raw JSON string, borrowed unless it holds an escape; `None`
/// for any other value. The record was read as JSON whole already, so a
/// value's first byte says what it is.
fn text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let quoted = raw.get();
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.get(name).filter(|v| v.get() != "null")
    }

    fn required(&self, name: &str) -> Result<&'a RawValue, Rejection> {
        self.get(name).ok_or_else(|| invalid(name, "is required"))
    }

    /// The value of a member that should be a string, if present.
    fn opt_text(&self, name: &str, wrong_type: &str) -> Result<Option<Cow<'a, str>>, Rejection> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => text(v).map(Some).ok_or_else(|| invalid(name, wrong_type)),
        }
    }

    pub fn uuid(&self, name: &str) -> Result<Uuid, Rejection> {
        self.opt_uuid(name)?
            .ok_or_else(|| invalid(name, "is required"))
    }

    pub fn opt_uuid(&self, name: &str) -> Result<Option<Uuid>, Rejection> {
        match self.opt_text(name, "must be a UUID string")? {
            None => Ok(None),
            Some(s) => Uuid::parse_str(&s)
                .map(Some)
                .map_err(|_| invalid(name, &format!("is not a UUID: {s:?}"))),
        }
    }

    pub fn string(&self, name: &str) -> Result<Cow<'a, str>, Rejection> {
        self.opt_string(name)?
            .ok_or_else(|| invalid(name, "is required"))
    }

    pub fn non_empty_string(&self, name: &str) -> Result<Cow<'a, str>, Rejection> {
        let s = self.string(name)?;
        if s.trim().is_empty() {
            return Err(invalid(name, "must not be empty"));
        }
        Ok(s)
    }

    pub fn opt_string(&self, name: &str) -> Result<Option<Cow<'a, str>>, Rejection> {
        self.opt_text(name, "must be a string")
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
        let raw = self.required(name)?.get();
        if let Ok(n) = raw.parse::<i64>() {
            if let Some(v) = i32::try_from(n).ok().filter(|v| *v >= 0) {
                return Ok(v);
            }
        }
        // Not a plain integer in range: say what it was, as JSON reads it.
        match serde_json::from_str::<serde_json::Number>(raw) {
            Ok(n) => Err(invalid(name, &format!("must be an integer >= 0, got {n}"))),
            Err(_) => Err(invalid(name, "must be an integer")),
        }
    }

    pub fn decimal(&self, name: &str) -> Result<Decimal, Rejection> {
        self.opt_decimal(name)?
            .ok_or_else(|| invalid(name, "is required"))
    }

    /// Money arrives as a decimal *string*: a JSON number would already have
    /// been through a binary float in many producers' serializers.
    pub fn opt_decimal(&self, name: &str) -> Result<Option<Decimal>, Rejection> {
        match self.opt_text(name, "must be a decimal string such as \"1.25\"")? {
            None => Ok(None),
            Some(s) => parse_decimal(&s).map(Some).map_err(|e| invalid(name, &e)),
        }
    }

    pub fn non_negative_decimal(&self, name: &str) -> Result<Decimal, Rejection> {
        let d = self.decimal(name)?;
        if d.is_sign_negative() && !d.is_zero() {
            return Err(invalid(name, &format!("must be >= 0, got {d}")));
        }
        Ok(d)
    }

    /// The elements of an array, each still raw.
    pub fn array(&self, name: &str) -> Result<Vec<&'a RawValue>, Rejection> {
        let raw = self.required(name)?;
        match raw.get().starts_with('[') {
            true => serde_json::from_str(raw.get()).map_err(|e| invalid(name, &e.to_string())),
            false => Err(invalid(name, "must be an array")),
        }
    }

    /// An object member, raw, if present.
    pub fn opt_object(&self, name: &str) -> Result<Option<&'a RawValue>, Rejection> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.get().starts_with('{') => Ok(Some(v)),
            Some(_) => Err(invalid(name, "must be an object")),
        }
    }

    pub fn currency(&self, name: &str) -> Result<String, Rejection> {
        match self.opt_string(name)? {
            None => Ok("USD".to_owned()),
            Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => {
                Ok(c.into_owned())
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
/// The record it borrows is leaked: a few hundred bytes a test.
#[cfg(test)]
pub(crate) fn test_envelope(event_type: &str, data: serde_json::Value) -> Envelope<'static> {
    let value = serde_json::json!({
        "event_id": Uuid::new_v4(),
        "type": event_type,
        "tenant_id": Uuid::new_v4(),
        "occurred_at": "2026-11-25T10:00:00Z",
        "data": data,
    });
    let record = serde_json::to_vec(&value).expect("serializes").leak();
    Envelope::decode(Some(record)).expect("valid envelope")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Runs `check` on fields read from `data` as a record would hold it.
    fn with_fields(data: Value, check: impl FnOnce(Fields<'_>)) {
        let text = data.to_string();
        let raw: &RawValue = serde_json::from_str(&text).unwrap();
        check(Fields(&Data::object(raw).expect("an object")));
    }

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
        let record = bytes(valid());
        let env = Envelope::decode(Some(&record)).unwrap();
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
    fn readers_take_each_value_as_json_reads_it_from_the_raw_text() {
        // Spacing, escapes in names and values, a repeated member (the last
        // counts, as a `serde_json::Map` keeps it) and nested values.
        let text = r#"{ "te\u0078t" : "a\"b\u00e9" , "plain":"x", "n" : 7,
            "n" : 8, "blank": "  ", "nothing": null, "neg": -1, "frac": 1.5,
            "big": 3000000000, "quoted": "5", "yes": true,
            "obj": {"k": [1, {"z": null}]}, "list": [ {"a": 1}, "s" ],
            "id": "0b1d5f3a-8f55-4c1c-a6a4-2f6c1d9e0a77", "money": "2.50" }"#;
        let raw: &RawValue = serde_json::from_str(text).unwrap();
        let data = Data::object(raw).unwrap();
        let f = Fields(&data);
        let message = |e: Rejection| e.to_string();

        assert_eq!(f.string("text").unwrap(), "a\"b\u{e9}");
        assert!(matches!(f.string("plain").unwrap(), Cow::Borrowed("x")));
        assert_eq!(f.non_negative_i32("n").unwrap(), 8);
        assert_eq!(f.opt_string("nothing").unwrap(), None);
        assert_eq!(f.opt_string("absent").unwrap(), None);
        assert_eq!(
            message(f.string("nothing").unwrap_err()),
            "invalid data: data.nothing is required"
        );
        assert_eq!(
            message(f.non_empty_string("blank").unwrap_err()),
            "invalid data: data.blank must not be empty"
        );
        for (name, got) in [("neg", "-1"), ("frac", "1.5"), ("big", "3000000000")] {
            assert_eq!(
                message(f.non_negative_i32(name).unwrap_err()),
                format!("invalid data: data.{name} must be an integer >= 0, got {got}")
            );
        }
        for name in ["quoted", "yes", "obj", "list"] {
            assert_eq!(
                message(f.non_negative_i32(name).unwrap_err()),
                format!("invalid data: data.{name} must be an integer")
            );
        }
        for name in ["n", "yes", "obj", "list"] {
            assert_eq!(
                message(f.string(name).unwrap_err()),
                format!("invalid data: data.{name} must be a string")
            );
            assert_eq!(
                message(f.uuid(name).unwrap_err()),
                format!("invalid data: data.{name} must be a UUID string")
            );
            assert_eq!(
                message(f.decimal(name).unwrap_err()),
                format!("invalid data: data.{name} must be a decimal string such as \"1.25\"")
            );
        }
        assert_eq!(
            f.uuid("id").unwrap().to_string(),
            "0b1d5f3a-8f55-4c1c-a6a4-2f6c1d9e0a77"
        );
        assert_eq!(
            message(f.uuid("plain").unwrap_err()),
            "invalid data: data.plain is not a UUID: \"x\""
        );
        assert_eq!(f.decimal("money").unwrap().to_string(), "2.50");
        assert_eq!(
            message(f.one_of("plain", &["a", "b"]).unwrap_err()),
            "invalid data: data.plain must be one of [\"a\", \"b\"], got \"x\""
        );

        let list = f.array("list").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(
            Fields(&Data::object(list[0]).unwrap())
                .non_negative_i32("a")
                .unwrap(),
            1
        );
        assert!(Data::object(list[1]).is_none());
        assert_eq!(
            message(f.array("obj").unwrap_err()),
            "invalid data: data.obj must be an array"
        );
        assert_eq!(
            f.opt_object("obj").unwrap().unwrap().get(),
            r#"{"k": [1, {"z": null}]}"#
        );
        assert!(f.opt_object("nothing").unwrap().is_none());
        assert_eq!(
            message(f.opt_object("list").unwrap_err()),
            "invalid data: data.list must be an object"
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
        with_fields(data, |f| {
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
        });
    }

    #[test]
    fn negative_decimals_fail_the_non_negative_reader() {
        let data = json!({"cost": "-0.01", "zero": "0.00"});
        with_fields(data, |f| {
            assert!(f.non_negative_decimal("cost").is_err());
            assert!(f.non_negative_decimal("zero").is_ok());
        });
    }

    #[test]
    fn currency_defaults_to_usd_and_must_be_iso_shaped() {
        let data = json!({"a": "EUR", "b": "euro"});
        with_fields(data, |f| {
            assert_eq!(f.currency("a").unwrap(), "EUR");
            assert_eq!(f.currency("missing").unwrap(), "USD");
            assert!(f.currency("b").is_err());
        });
    }
}
