//! Voice call events of contract §3 and their decoding (pure).

use crate::envelope::{Envelope, Rejection};
use rust_decimal::Decimal;
use std::borrow::Cow;
use uuid::Uuid;

pub const DIRECTIONS: &[&str] = &["outbound", "inbound"];
pub const SPEAKERS: &[&str] = &["agent", "lead"];
pub const END_STATUSES: &[&str] = &["completed", "failed", "no_answer", "busy", "canceled"];
pub const SENTIMENTS: &[&str] = &["positive", "neutral", "negative"];

#[derive(Debug, Clone, PartialEq)]
pub enum VoiceEvent {
    Started(Started),
    Answered { call_id: Uuid },
    Transcript(TranscriptLine),
    Ended(Ended),
    Analyzed(Analysis),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    pub call_id: Uuid,
    pub agent_id: Uuid,
    pub lead_id: Option<Uuid>,
    pub direction: &'static str,
    pub from_number: String,
    pub to_number: String,
    pub batch_id: Option<Uuid>,
    pub initiated_by_user_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptLine {
    pub call_id: Uuid,
    pub seq: i32,
    pub speaker: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub call_id: Uuid,
    pub status: &'static str,
    pub duration_seconds: i32,
    pub cost: Decimal,
    pub currency: String,
    pub recording_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub call_id: Uuid,
    pub sentiment: &'static str,
    pub lead_category: String,
    pub summary: Option<String>,
}

impl VoiceEvent {
    pub fn decode(env: &Envelope) -> Result<VoiceEvent, Rejection> {
        let f = env.fields();
        let call_id = f.uuid("call_id")?;
        Ok(match env.event_type.as_str() {
            "call.started" => VoiceEvent::Started(Started {
                call_id,
                agent_id: f.uuid("agent_id")?,
                lead_id: f.opt_uuid("lead_id")?,
                direction: f.one_of("direction", DIRECTIONS)?,
                from_number: f.non_empty_string("from_number")?.into_owned(),
                to_number: f.non_empty_string("to_number")?.into_owned(),
                batch_id: f.opt_uuid("batch_id")?,
                initiated_by_user_id: f.opt_uuid("initiated_by_user_id")?,
            }),
            "call.answered" => VoiceEvent::Answered { call_id },
            "call.transcript" => VoiceEvent::Transcript(TranscriptLine {
                call_id,
                seq: f.non_negative_i32("seq")?,
                speaker: f.one_of("speaker", SPEAKERS)?,
                text: f.string("text")?.into_owned(),
            }),
            "call.ended" => VoiceEvent::Ended(Ended {
                call_id,
                status: f.one_of("status", END_STATUSES)?,
                duration_seconds: f.non_negative_i32("duration_seconds")?,
                cost: f.non_negative_decimal("cost")?,
                currency: f.currency("currency")?,
                recording_url: f.opt_string("recording_url")?.map(Cow::into_owned),
            }),
            "call.analyzed" => VoiceEvent::Analyzed(Analysis {
                call_id,
                sentiment: f.one_of("sentiment", SENTIMENTS)?,
                lead_category: f.non_empty_string("lead_category")?.into_owned(),
                summary: f.opt_string("summary")?.map(Cow::into_owned),
            }),
            other => return Err(Rejection::UnknownType(other.to_owned())),
        })
    }

    pub fn call_id(&self) -> Uuid {
        match self {
            VoiceEvent::Started(s) => s.call_id,
            VoiceEvent::Answered { call_id } => *call_id,
            VoiceEvent::Transcript(t) => t.call_id,
            VoiceEvent::Ended(e) => e.call_id,
            VoiceEvent::Analyzed(a) => a.call_id,
        }
    }

    /// Whether the event changes the call's row in `voice_call_logs`.
    pub fn touches_call_log(&self) -> bool {
        matches!(
            self,
            VoiceEvent::Started(_) | VoiceEvent::Answered { .. } | VoiceEvent::Ended(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::test_envelope as envelope;
    use serde_json::json;

    #[test]
    fn decodes_a_started_call_with_optional_fields_absent() {
        let call = Uuid::new_v4();
        let agent = Uuid::new_v4();
        let env = envelope(
            "call.started",
            json!({"call_id": call, "agent_id": agent, "direction": "outbound",
                   "from_number": "+15550001", "to_number": "+15550002"}),
        );
        let VoiceEvent::Started(s) = VoiceEvent::decode(&env).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(
            (s.call_id, s.agent_id, s.direction),
            (call, agent, "outbound")
        );
        assert_eq!(s.lead_id, None);
    }

    #[test]
    fn ended_defaults_currency_to_usd_and_keeps_exact_cost() {
        let env = envelope(
            "call.ended",
            json!({"call_id": Uuid::new_v4(), "status": "completed",
                   "duration_seconds": 61, "cost": "0.123456"}),
        );
        let VoiceEvent::Ended(e) = VoiceEvent::decode(&env).unwrap() else {
            panic!("not an end")
        };
        assert_eq!(e.currency, "USD");
        assert_eq!(e.cost.to_string(), "0.123456");
    }

    #[test]
    fn rejects_negative_cost_unknown_status_and_missing_call_id() {
        let neg = envelope(
            "call.ended",
            json!({"call_id": Uuid::new_v4(), "status": "completed", "duration_seconds": 1, "cost": "-1"}),
        );
        assert!(
            matches!(VoiceEvent::decode(&neg), Err(Rejection::InvalidData(m)) if m.contains("cost"))
        );
        let status = envelope(
            "call.ended",
            json!({"call_id": Uuid::new_v4(), "status": "hung", "duration_seconds": 1, "cost": "1"}),
        );
        assert!(
            matches!(VoiceEvent::decode(&status), Err(Rejection::InvalidData(m)) if m.contains("status"))
        );
        let missing = envelope("call.answered", json!({}));
        assert!(
            matches!(VoiceEvent::decode(&missing), Err(Rejection::InvalidData(m)) if m.contains("call_id"))
        );
    }

    #[test]
    fn rejects_unknown_types_and_negative_seq() {
        let unknown = envelope("call.teleported", json!({"call_id": Uuid::new_v4()}));
        assert!(matches!(
            VoiceEvent::decode(&unknown),
            Err(Rejection::UnknownType(_))
        ));
        let seq = envelope(
            "call.transcript",
            json!({"call_id": Uuid::new_v4(), "seq": -1, "speaker": "agent", "text": "hi"}),
        );
        assert!(
            matches!(VoiceEvent::decode(&seq), Err(Rejection::InvalidData(m)) if m.contains("seq"))
        );
    }
}
