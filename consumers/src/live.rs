//! The live stream, both ends of it: what the pipelines publish on
//! `lad.live.v1` (one [`LiveUpdate`] per channel message, written as a
//! [`LiveRecord`] value), how each message type is delivered to a socket
//! that falls behind ([`delivery`]), and the channel names of contract §7.
//! The gateway reads records and parses channels with these same types, so
//! writer and reader cannot drift.

use crate::envelope::Scalar;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use uuid::Uuid;

/// A message for one channel, written to the outbox inside the transaction
/// that committed what it describes.
#[derive(Debug, Clone, Serialize)]
pub struct LiveUpdate {
    pub tenant_id: Uuid,
    pub channel: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The entity a state message describes ([`delivery`]); `None` for events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Serialized once, when the update is made: a batch pushes thousands,
    /// and a `Value` tree for each, built only to be written out, led the
    /// hub's profile in allocations, key comparisons and frees (issue #14).
    pub data: Box<RawValue>,
}

impl LiveUpdate {
    /// `data` is best a struct that borrows what it shows, with its
    /// instants written by [`crate::instant`]: a `json!` map allocates every
    /// member only to be written out (issue #14). The domains' messages that
    /// replaced maps list their members in name order, the order the maps
    /// wrote them in, so the text on `lad.live.v1` did not change.
    pub fn new(channel: Channel, kind: &'static str, data: impl Serialize) -> LiveUpdate {
        let data = serde_json::value::to_raw_value(&data).expect("live data serializes to JSON");
        LiveUpdate {
            tenant_id: channel.tenant_id(),
            channel: channel.to_string(),
            kind,
            key: state_key(kind, data.get()),
            data,
        }
    }

    /// `data` as a tree, for code that inspects it (tests, mostly).
    pub fn data_value(&self) -> Value {
        serde_json::from_str(self.data.get()).expect("live data is JSON")
    }
}

/// How a live message type reaches a socket that is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The latest state of one entity, named by these `data` fields: a newer
    /// message for the same entity replaces one still queued (conflation),
    /// because a dashboard needs the latest value, not every step.
    State(&'static [&'static str]),
    /// One piece of an ordered stream: never merged, never skipped.
    Event,
}

/// Every state message type and its entity, in one place. Anything not
/// listed is an event.
pub fn delivery(kind: &str) -> Delivery {
    match kind {
        "call.updated" => Delivery::State(&["id"]),
        "call.stats" => Delivery::State(&["day", "agent_id"]),
        "campaign.stats" => Delivery::State(&["campaign_id", "step_id", "status"]),
        "billing.wallet" => Delivery::State(&["wallet_id"]),
        _ => Delivery::Event,
    }
}

/// `"{type}/{field}/{field}…"` for a state message, from its data (JSON
/// text); `None` for an event (or a state message missing a key field:
/// delivered unmerged rather than merged with the wrong entity).
pub fn state_key(kind: &str, data: &str) -> Option<String> {
    let Delivery::State(fields) = delivery(kind) else {
        return None;
    };
    let members = picked_members(data, fields)?;
    let mut key = String::from(kind);
    for member in members {
        key.push('/');
        match Scalar::of(member?) {
            Scalar::Str(s) => key.push_str(&s),
            Scalar::Null => return None,
            Scalar::Other(text) => key.push_str(text),
        }
    }
    Some(key)
}

/// The top-level members of the JSON object `text` named by `fields`, in
/// their order, as unparsed slices (a repeated member: its last value, as
/// in a map); `None` unless `text` is one JSON object. Every state message
/// is read for its key as it is made, so nothing else of it is kept: a map
/// of all its members was 3 % of the hub's CPU (issue #14).
fn picked_members<'a>(text: &'a str, fields: &[&str]) -> Option<Vec<Option<&'a RawValue>>> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

    /// A member's name, as its place in `fields`.
    struct Place<'f>(&'f [&'f str]);

    impl<'de> DeserializeSeed<'de> for Place<'_> {
        type Value = Option<usize>;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl Visitor<'_> for Place<'_> {
        type Value = Option<usize>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a member name")
        }

        fn visit_str<E>(self, name: &str) -> Result<Option<usize>, E> {
            Ok(self.0.iter().position(|f| *f == name))
        }
    }

    struct Picked<'f>(&'f [&'f str]);

    impl<'de> Visitor<'de> for Picked<'_> {
        type Value = Vec<Option<&'de RawValue>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut picked = vec![None; self.0.len()];
            while let Some(place) = map.next_key_seed(Place(self.0))? {
                match place {
                    Some(i) => picked[i] = Some(map.next_value()?),
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(picked)
        }
    }

    let mut de = serde_json::Deserializer::from_str(text);
    let picked = de.deserialize_map(Picked(fields)).ok()?;
    de.end().ok()?;
    Some(picked)
}

/// A `lad.live.v1` record value (docs/schemas/live-record.json), one
/// definition for both ends. Written by [`LiveRecord::committed`] (the
/// relay splices the outbox `id` in) and [`LiveRecord::ephemeral`]; read by
/// the gateway with [`LiveRecord::parse`], which borrows and keeps `data`
/// raw so it is forwarded byte for byte.
#[derive(Debug, Deserialize, Serialize)]
pub struct LiveRecord<'a> {
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    /// Ephemeral records only: the process that also delivered it in-process.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Cow<'a, str>>,
    pub tenant_id: Uuid,
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// State messages only: the entity, for conflation.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub key: Option<Cow<'a, str>>,
    /// Committed records only: when the transaction that wrote it committed
    /// (the batch's clock), for the commit-to-socket latency.
    #[serde(
        default,
        with = "crate::instant::rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub committed_at: Option<DateTime<Utc>>,
    #[serde(borrow)]
    pub data: &'a RawValue,
}

impl<'a> LiveRecord<'a> {
    pub fn parse(value: &'a [u8]) -> Result<LiveRecord<'a>, serde_json::Error> {
        serde_json::from_slice(value)
    }

    /// `u` as a record, borrowing it: `data` is copied as it is, never
    /// parsed into a tree.
    fn of(u: &'a LiveUpdate) -> LiveRecord<'a> {
        LiveRecord {
            id: None,
            origin: None,
            tenant_id: u.tenant_id,
            channel: Cow::Borrowed(&u.channel),
            kind: Cow::Borrowed(u.kind),
            key: u.key.as_deref().map(Cow::Borrowed),
            committed_at: None,
            data: &u.data,
        }
    }

    /// The value of a committed update, as the outbox stores it (the relay
    /// splices its `id` in).
    pub fn committed(u: &LiveUpdate, committed_at: DateTime<Utc>) -> Box<RawValue> {
        let record = LiveRecord {
            committed_at: Some(committed_at),
            ..LiveRecord::of(u)
        };
        serde_json::value::to_raw_value(&record).expect("live records serialize")
    }

    /// The value of an ephemeral update, published at once with its own
    /// `id`; `origin` names the process that also delivered it in-process.
    pub fn ephemeral(id: &str, u: &LiveUpdate, origin: Option<&str>) -> Vec<u8> {
        let record = LiveRecord {
            id: Some(Cow::Borrowed(id)),
            origin: origin.map(Cow::Borrowed),
            ..LiveRecord::of(u)
        };
        serde_json::to_vec(&record).expect("live records serialize")
    }

    /// True for a record the relay published from the outbox (its id is
    /// `"{row}.{index}"`); those are placed by their offset.
    pub fn is_relayed(&self) -> bool {
        self.id
            .as_deref()
            .is_none_or(|id| OutboxId::parse(id).is_some())
    }

    /// The record's `position` in its channel's stream. Relayed records are
    /// placed by where they sit in `lad.live.v1` (`read_at`). Ephemeral ones
    /// are placed by their id: the same delta then has the same position on
    /// every node, whether it came from the topic or in-process, where it
    /// has no offset at all.
    pub fn position<'p>(&'p self, read_at: Option<&'p str>) -> Option<&'p str> {
        match self.id.as_deref() {
            Some(id) if OutboxId::parse(id).is_none() => Some(id),
            _ => read_at,
        }
    }
}

/// The members a live record carries before its `data`, read without
/// reading `data`: what a gateway needs to pass over a record for a channel
/// nobody on it listens to, the common case for a node among many tenants.
/// Parsing the whole record only to drop it was 6 % of the hub's CPU under
/// a backlog (issue #14).
///
/// [`LiveHead::peek`] reads only the layout [`LiveRecord`] is written in:
/// string members without escapes, `data` last. Anything else (another
/// writer's record, a repeated member) is `None`, and the caller parses the
/// record whole, which is always right.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LiveHead<'a> {
    pub id: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub tenant_id: Option<&'a str>,
    pub channel: Option<&'a str>,
}

impl<'a> LiveHead<'a> {
    pub fn peek(value: &'a [u8]) -> Option<LiveHead<'a>> {
        let mut rest = value.trim_ascii_start().strip_prefix(b"{")?;
        let mut head = LiveHead::default();
        loop {
            let (name, after) = plain_string(rest.trim_ascii_start())?;
            let after = after.trim_ascii_start().strip_prefix(b":")?;
            if name == "data" {
                return head.channel.is_some().then_some(head);
            }
            let (text, after) = plain_string(after.trim_ascii_start())?;
            let slot = match name {
                "id" => Some(&mut head.id),
                "origin" => Some(&mut head.origin),
                "tenant_id" => Some(&mut head.tenant_id),
                "channel" => Some(&mut head.channel),
                _ => None,
            };
            if slot.is_some_and(|slot| slot.replace(text).is_some()) {
                return None;
            }
            rest = after.trim_ascii_start().strip_prefix(b",")?;
        }
    }
}

/// A JSON string at the start of `s` that needs no unescaping, and what
/// follows it.
fn plain_string(s: &[u8]) -> Option<(&str, &[u8])> {
    let s = s.strip_prefix(b"\"")?;
    let end = s
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    if s[end] != b'"' {
        return None;
    }
    Some((std::str::from_utf8(&s[..end]).ok()?, &s[end + 1..]))
}

/// The id the relay gives a committed record: `"{row}.{index}"`, its outbox
/// row and its place in the row. Stable across republishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxId {
    pub row: u64,
    pub index: u32,
}

impl OutboxId {
    pub fn parse(id: &str) -> Option<OutboxId> {
        let (row, index) = id.split_once('.')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(row) || !digits(index) {
            return None;
        }
        Some(OutboxId {
            row: row.parse().ok()?,
            index: index.parse().ok()?,
        })
    }
}

/// The gateway of this same process. Ephemeral records (assistant deltas)
/// are handed to it directly as well as published, so a reply streamed to a
/// socket on the node that consumes it skips the round trip through
/// `lad.live.v1`; other nodes still get it from the topic.
pub trait LocalGateway: Send + Sync {
    /// Takes one `lad.live.v1` record value. Must not block: it runs on the
    /// pipeline's task.
    fn deliver(&self, record: &[u8]);
}

/// Where a pipeline hands its ephemeral records in-process, and the name it
/// stamps on them (`origin`) so the same gateway skips its own records when
/// they come back from the topic.
#[derive(Clone)]
pub struct LocalHandoff {
    pub origin: String,
    pub gateway: Arc<dyn LocalGateway>,
}

impl fmt::Debug for LocalHandoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalHandoff")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// A live channel. Every variant is scoped to one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Calls { tenant_id: Uuid },
    Call { tenant_id: Uuid, call_id: Uuid },
    Campaign { tenant_id: Uuid, campaign_id: Uuid },
    Billing { tenant_id: Uuid },
    UserAi { tenant_id: Uuid, user_id: Uuid },
}

impl Channel {
    pub fn tenant_id(&self) -> Uuid {
        match *self {
            Channel::Calls { tenant_id }
            | Channel::Call { tenant_id, .. }
            | Channel::Campaign { tenant_id, .. }
            | Channel::Billing { tenant_id }
            | Channel::UserAi { tenant_id, .. } => tenant_id,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Calls { tenant_id } => write!(f, "tenant:{tenant_id}:calls"),
            Channel::Call { tenant_id, call_id } => write!(f, "tenant:{tenant_id}:call:{call_id}"),
            Channel::Campaign {
                tenant_id,
                campaign_id,
            } => write!(f, "tenant:{tenant_id}:campaign:{campaign_id}"),
            Channel::Billing { tenant_id } => write!(f, "tenant:{tenant_id}:billing"),
            Channel::UserAi { tenant_id, user_id } => {
                write!(f, "tenant:{tenant_id}:user:{user_id}:ai")
            }
        }
    }
}

/// Why a channel name is not one of ours; the gateway answers `unknown_channel`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel {0:?}")]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Channel, UnknownChannel> {
        let unknown = || UnknownChannel(s.to_owned());
        let parts: Vec<&str> = s.split(':').collect();
        let id = |p: &str| Uuid::parse_str(p).map_err(|_| unknown());
        // Only the canonical (hyphenated, lower-case) spelling is accepted, so
        // one channel has exactly one name in the registry.
        let canonical = |p: &str, u: Uuid| {
            if u.hyphenated().to_string() == p {
                Ok(u)
            } else {
                Err(unknown())
            }
        };
        let uuid = |p: &str| id(p).and_then(|u| canonical(p, u));
        match parts.as_slice() {
            ["tenant", t, "calls"] => Ok(Channel::Calls {
                tenant_id: uuid(t)?,
            }),
            ["tenant", t, "billing"] => Ok(Channel::Billing {
                tenant_id: uuid(t)?,
            }),
            ["tenant", t, "call", c] => Ok(Channel::Call {
                tenant_id: uuid(t)?,
                call_id: uuid(c)?,
            }),
            ["tenant", t, "campaign", c] => Ok(Channel::Campaign {
                tenant_id: uuid(t)?,
                campaign_id: uuid(c)?,
            }),
            ["tenant", t, "user", u, "ai"] => Ok(Channel::UserAi {
                tenant_id: uuid(t)?,
                user_id: uuid(u)?,
            }),
            _ => Err(unknown()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn state_messages_are_keyed_by_their_entity_and_events_are_not() {
        let t = Uuid::new_v4();
        let calls = Channel::Calls { tenant_id: t };
        let u = LiveUpdate::new(calls, "call.updated", json!({"id": "c1", "status": "x"}));
        assert_eq!(u.key.as_deref(), Some("call.updated/c1"));
        let s = LiveUpdate::new(
            calls,
            "call.stats",
            json!({"day": "2026-11-25", "agent_id": "a1", "calls_started": 3}),
        );
        assert_eq!(s.key.as_deref(), Some("call.stats/2026-11-25/a1"));
        let c = state_key(
            "campaign.stats",
            r#"{"campaign_id": "c", "step_id": "s", "status": "sent", "count": 2}"#,
        );
        assert_eq!(c.as_deref(), Some("campaign.stats/c/s/sent"));
        assert_eq!(
            state_key("billing.wallet", r#"{"wallet_id": "w"}"#).as_deref(),
            Some("billing.wallet/w")
        );
        for event in [
            "call.transcript",
            "call.analyzed",
            "billing.charged",
            "ai.reply.delta",
        ] {
            assert_eq!(delivery(event), Delivery::Event);
            assert_eq!(state_key(event, r#"{"id": "x"}"#), None);
        }
        assert_eq!(
            state_key("call.updated", r#"{"status": "x"}"#),
            None,
            "no entity, no merging"
        );
        assert_eq!(state_key("call.updated", r#"{"id": null}"#), None);
        // Escapes are read as JSON, numbers as written.
        assert_eq!(
            state_key("call.updated", r#"{"a": {"id": 1}, "id": "c\u0031"}"#).as_deref(),
            Some("call.updated/c1")
        );
        assert_eq!(
            state_key("call.stats", r#"{"day": "d", "agent_id": 7}"#).as_deref(),
            Some("call.stats/d/7")
        );
    }

    #[test]
    fn a_key_is_read_from_the_top_level_of_one_json_object_only() {
        let key = |data: &str| state_key("call.stats", data);
        // Fields in any order, a repeated one by its last value, an escaped
        // member name by what it spells.
        assert_eq!(
            key(r#"{"agent_id": "a", "x": [1, {"day": 0}], "day": "d0", "day": "d1"}"#).as_deref(),
            Some("call.stats/d1/a")
        );
        assert_eq!(
            key(r#"{"d\u0061y": "d", "agent_id": "a"}"#).as_deref(),
            Some("call.stats/d/a")
        );
        for not_one_object in [
            r#"{"day": "d", "agent_id": "a"} {}"#,
            r#"["d", "a"]"#,
            r#"{"day": "d", "agent_id": "a""#,
            "",
        ] {
            assert_eq!(key(not_one_object), None, "{not_one_object}");
        }
    }

    #[test]
    fn a_committed_record_reads_back_with_its_data_untouched() {
        let t = Uuid::new_v4();
        let u = LiveUpdate::new(
            Channel::Calls { tenant_id: t },
            "call.updated",
            json!({"id": "c1", "a": "\u{e9}"}),
        );
        let value = LiveRecord::committed(&u, Utc::now())
            .get()
            .as_bytes()
            .to_vec();
        let r = LiveRecord::parse(&value).unwrap();
        assert_eq!((r.tenant_id, &*r.kind), (t, "call.updated"));
        assert_eq!(r.key.as_deref(), Some("call.updated/c1"));
        assert_eq!(r.data.get(), u.data.get());
        let raw = format!(
            r#"{{"id":"12.0","tenant_id":"{t}","channel":"c","type":"t","data":{{"b":1,"a":"\u00e9"}}}}"#
        );
        let r = LiveRecord::parse(raw.as_bytes()).unwrap();
        assert_eq!(
            r.data.get(),
            r#"{"b":1,"a":"\u00e9"}"#,
            "key order and escapes kept"
        );
        assert!(r.key.is_none());
    }

    #[test]
    fn relayed_records_sit_at_their_offset_and_ephemeral_ones_at_their_id() {
        let t = Uuid::new_v4();
        let u = LiveUpdate::new(
            Channel::UserAi {
                tenant_id: t,
                user_id: t,
            },
            "ai.reply.delta",
            json!({"seq": 3}),
        );
        let relayed =
            format!(r#"{{"id":"12.0","tenant_id":"{t}","channel":"c","type":"t","data":{{}}}}"#);
        let r = LiveRecord::parse(relayed.as_bytes()).unwrap();
        assert!(r.is_relayed());
        assert_eq!(r.position(Some("2:40")), Some("2:40"));
        assert_eq!(
            r.position(None),
            None,
            "a relayed record only has an offset"
        );
        let plain = LiveRecord::ephemeral("ai:m:3", &u, None);
        let r = LiveRecord::parse(&plain).unwrap();
        assert!(!r.is_relayed() && r.origin.is_none());
        assert_eq!(r.position(Some("2:41")), Some("ai:m:3"));
        let local = LiveRecord::ephemeral("ai:m:3", &u, Some("n1"));
        let r = LiveRecord::parse(&local).unwrap();
        assert_eq!(
            (r.position(None), r.origin.as_deref()),
            (Some("ai:m:3"), Some("n1"))
        );
    }

    #[test]
    fn the_head_of_a_record_as_the_hub_writes_it_is_read_without_its_data() {
        let t = Uuid::new_v4();
        let calls = Channel::Calls { tenant_id: t };
        let u = LiveUpdate::new(calls, "call.updated", json!({"id": "c1", "channel": "x"}));
        let name = calls.to_string();
        let relayed = crate::outbox::with_id(&LiveRecord::committed(&u, Utc::now()), "12.3");
        let tenant = t.to_string();
        assert_eq!(
            LiveHead::peek(&relayed),
            Some(LiveHead {
                id: Some("12.3"),
                origin: None,
                tenant_id: Some(&tenant),
                channel: Some(&name),
            })
        );
        let ephemeral = LiveRecord::ephemeral("ai:m:3", &u, Some("n1"));
        let head = LiveHead::peek(&ephemeral).unwrap();
        assert_eq!(
            (head.id, head.origin, head.channel),
            (Some("ai:m:3"), Some("n1"), Some(name.as_str()))
        );
        let spaced = format!(r#" {{ "channel" : "{name}" , "data" : {{}} }}"#);
        assert_eq!(
            LiveHead::peek(spaced.as_bytes()).unwrap().channel,
            Some(name.as_str())
        );
    }

    #[test]
    fn a_record_in_another_layout_has_no_head_and_is_parsed_whole() {
        for other in [
            &b"not json"[..],
            br#"{"data":{},"channel":"c"}"#,
            br#"{"n":1,"channel":"c","data":{}}"#,
            br#"{"channel":"c\u0041","data":{}}"#,
            br#"{"channel":"c","channel":"d","data":{}}"#,
            br#"{"channel":"c"}"#,
            br#"{"channel":"c" "data":{}}"#,
            br#"["channel","c"]"#,
        ] {
            assert_eq!(
                LiveHead::peek(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn records_without_the_envelope_fields_are_refused() {
        for bad in [
            &b"not json"[..],
            br#"{"tenant_id":"x","channel":"c","type":"t","data":{}}"#,
            br#"{"tenant_id":"00000000-0000-0000-0000-000000000000","type":"t","data":{}}"#,
            br#"{"tenant_id":"00000000-0000-0000-0000-000000000000","channel":"c","type":"t"}"#,
        ] {
            assert!(LiveRecord::parse(bad).is_err());
        }
    }

    #[test]
    fn outbox_ids_parse_only_in_their_own_form() {
        assert_eq!(
            OutboxId::parse("17.3"),
            Some(OutboxId { row: 17, index: 3 })
        );
        for bad in [
            "", "17", "17.", ".3", "a.b", "17.3.1", "-1.2", "ai:x:1", "1.+2",
        ] {
            assert_eq!(OutboxId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_channel_round_trips_through_its_name() {
        let t = Uuid::new_v4();
        let x = Uuid::new_v4();
        for ch in [
            Channel::Calls { tenant_id: t },
            Channel::Call {
                tenant_id: t,
                call_id: x,
            },
            Channel::Campaign {
                tenant_id: t,
                campaign_id: x,
            },
            Channel::Billing { tenant_id: t },
            Channel::UserAi {
                tenant_id: t,
                user_id: x,
            },
        ] {
            assert_eq!(ch.to_string().parse::<Channel>().unwrap(), ch);
            assert_eq!(ch.tenant_id(), t);
        }
    }

    #[test]
    fn malformed_or_non_canonical_names_are_unknown() {
        let t = Uuid::new_v4();
        for bad in [
            "".to_owned(),
            "tenant".to_owned(),
            format!("tenant:{t}:nope"),
            format!("tenant:{t}:calls:extra"),
            format!("tenant:{}:calls", t.simple()),
            format!("tenant:{}:calls", t.to_string().to_uppercase()),
            format!("tenant:{t}:user:not-a-uuid:ai"),
            format!("org:{t}:calls"),
        ] {
            assert!(bad.parse::<Channel>().is_err(), "{bad} accepted");
        }
    }
}
