//! The value of a `lad.live.v1` record, as the gateway reads it: written by
//! `lad_consumers::pipeline::live_record` (plus the relay's `id`) or by
//! `lad_consumers::pipeline::ephemeral_record` (with an id of its own, and
//! the `origin` of the process that also delivered it in-process). `data`
//! stays raw: the gateway forwards it byte for byte.

use crate::gateway::dedupe::OutboxId;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
pub struct LiveRecord<'a> {
    #[serde(default, borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub origin: Option<Cow<'a, str>>,
    pub tenant_id: Uuid,
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub data: &'a RawValue,
}

impl<'a> LiveRecord<'a> {
    pub fn parse(value: &'a [u8]) -> Result<LiveRecord<'a>, serde_json::Error> {
        serde_json::from_slice(value)
    }

    /// The record's `position` in its channel's stream. Relayed records are
    /// placed by where they sit in `lad.live.v1` (`read_at`). Ephemeral ones
    /// (an id that is not an outbox id) are placed by their id: the same
    /// delta then has the same position on every node, whether it came
    /// from the topic or in-process, where it has no offset at all.
    pub fn position<'p>(&'p self, read_at: Option<&'p str>) -> Option<&'p str> {
        match self.id.as_deref() {
            Some(id) if OutboxId::parse(id).is_none() => Some(id),
            _ => read_at,
        }
    }
}

pub const AI_DELTA: &str = "ai.reply.delta";
pub const AI_COMPLETED: &str = "ai.reply.completed";

#[derive(Debug, Deserialize)]
pub struct DeltaData {
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub user_id: Uuid,
    pub seq: u64,
    pub delta: String,
}

#[derive(Debug, Deserialize)]
pub struct CompletedData {
    pub message_id: Uuid,
    pub user_id: Uuid,
}

/// The partition of a `"{partition}:{offset}"` position; repeats are told
/// apart per partition.
pub fn partition_of(position: &str) -> Option<i32> {
    let (p, o) = position.split_once(':')?;
    o.parse::<i64>().ok()?;
    p.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_relayed_record_parses_with_its_data_untouched() {
        let t = Uuid::new_v4();
        let value = format!(
            r#"{{"id":"12.0","tenant_id":"{t}","channel":"tenant:{t}:calls","type":"call.updated","data":{{"b":1,"a":"\u00e9"}},"committed_at":"2026-11-25T10:00:00Z"}}"#
        );
        let r = LiveRecord::parse(value.as_bytes()).unwrap();
        assert_eq!(r.id.as_deref(), Some("12.0"));
        assert_eq!(r.tenant_id, t);
        assert_eq!(r.kind, "call.updated");
        assert_eq!(
            r.data.get(),
            r#"{"b":1,"a":"\u00e9"}"#,
            "key order and escapes kept"
        );
    }

    #[test]
    fn relayed_records_sit_at_their_offset_and_ephemeral_ones_at_their_id() {
        let t = Uuid::new_v4();
        let rec =
            |id: &str| format!(r#"{{{id}"tenant_id":"{t}","channel":"c","type":"t","data":{{}}}}"#);
        let relayed = rec(r#""id":"12.0","#);
        let r = LiveRecord::parse(relayed.as_bytes()).unwrap();
        assert_eq!(r.position(Some("2:40")), Some("2:40"));
        assert_eq!(
            r.position(None),
            None,
            "a relayed record only has an offset"
        );
        let ephemeral = rec(r#""id":"ai:m:3","origin":"n1","#);
        let r = LiveRecord::parse(ephemeral.as_bytes()).unwrap();
        assert_eq!(r.position(Some("2:41")), Some("ai:m:3"));
        assert_eq!(r.position(None), Some("ai:m:3"));
        assert_eq!(r.origin.as_deref(), Some("n1"));
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
    fn positions_name_their_partition() {
        assert_eq!(partition_of("3:17"), Some(3));
        assert_eq!(partition_of("-1:5"), Some(-1));
        assert_eq!(partition_of("3"), None);
        assert_eq!(partition_of("x:1"), None);
        assert_eq!(partition_of("1:x"), None);
    }
}
