//! The ICP assistant's streamed replies (contract §6), from
//! `lad.ai.icp-assistant.v1`, and their pure decoding.

use crate::envelope::{Envelope, Rejection};
use std::borrow::Cow;
use uuid::Uuid;

pub const DELTA: &str = "ai.reply.delta";
pub const COMPLETED: &str = "ai.reply.completed";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AiEvent {
    Delta(ReplyDelta),
    Completed(ReplyCompleted),
}

/// One piece of a reply being written; `seq` orders the pieces of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyDelta {
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub user_id: Uuid,
    pub seq: i32,
    pub delta: String,
}

/// The whole reply, once the assistant finished it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyCompleted {
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub user_id: Uuid,
    pub content: String,
    pub tokens_used: i32,
    pub model: Option<String>,
}

/// The event of an envelope read from the assistant topic, or why it is rejected.
pub fn decode(envelope: &Envelope) -> Result<AiEvent, Rejection> {
    let f = envelope.fields();
    match envelope.event_type.as_str() {
        DELTA => Ok(AiEvent::Delta(ReplyDelta {
            conversation_id: f.uuid("conversation_id")?,
            message_id: f.uuid("message_id")?,
            user_id: f.uuid("user_id")?,
            seq: f.non_negative_i32("seq")?,
            delta: f.string("delta")?.into_owned(),
        })),
        COMPLETED => Ok(AiEvent::Completed(ReplyCompleted {
            conversation_id: f.uuid("conversation_id")?,
            message_id: f.uuid("message_id")?,
            user_id: f.uuid("user_id")?,
            content: f.string("content")?.into_owned(),
            tokens_used: f.non_negative_i32("tokens_used")?,
            model: f.opt_string("model")?.map(Cow::into_owned),
        })),
        other => Err(Rejection::UnknownType(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::test_envelope as envelope;
    use serde_json::{json, Value};

    fn ids() -> Value {
        json!({
            "conversation_id": Uuid::new_v4(),
            "message_id": Uuid::new_v4(),
            "user_id": Uuid::new_v4(),
        })
    }

    fn with(mut base: Value, extra: Value) -> Value {
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    }

    #[test]
    fn a_delta_decodes_and_may_be_empty_text() {
        let d = with(ids(), json!({"seq": 3, "delta": ""}));
        let AiEvent::Delta(delta) = decode(&envelope(DELTA, d.clone())).unwrap() else {
            panic!("not a delta");
        };
        assert_eq!(delta.seq, 3);
        assert_eq!(delta.delta, "");
        assert_eq!(delta.message_id.to_string(), d["message_id"]);
    }

    #[test]
    fn a_completed_reply_decodes_with_an_optional_model() {
        let d = with(ids(), json!({"content": "Hello", "tokens_used": 12}));
        let AiEvent::Completed(c) = decode(&envelope(COMPLETED, d.clone())).unwrap() else {
            panic!("not completed");
        };
        assert_eq!(
            (c.content.as_str(), c.tokens_used, c.model),
            ("Hello", 12, None)
        );
        let d = with(d, json!({"model": "gpt-x"}));
        let AiEvent::Completed(c) = decode(&envelope(COMPLETED, d)).unwrap() else {
            panic!("not completed");
        };
        assert_eq!(c.model.as_deref(), Some("gpt-x"));
    }

    #[test]
    fn bad_fields_are_invalid_data_naming_the_field() {
        let cases = [
            (DELTA, "seq", json!(-1)),
            (DELTA, "seq", json!(1.5)),
            (DELTA, "delta", json!(5)),
            (DELTA, "user_id", json!("someone")),
            (COMPLETED, "tokens_used", json!(-3)),
            (COMPLETED, "content", Value::Null),
            (COMPLETED, "model", json!(["x"])),
            (COMPLETED, "conversation_id", Value::Null),
        ];
        for (kind, field, value) in cases {
            let base = if kind == DELTA {
                with(ids(), json!({"seq": 0, "delta": "x"}))
            } else {
                with(ids(), json!({"content": "x", "tokens_used": 0}))
            };
            let d = with(base, json!({ field: value }));
            let err = decode(&envelope(kind, d)).unwrap_err();
            assert_eq!(err.kind(), "invalid_data", "{kind} {field}");
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn other_types_on_the_assistant_topic_are_unknown() {
        let err = decode(&envelope("ai.reply.started", ids())).unwrap_err();
        assert_eq!(err, Rejection::UnknownType("ai.reply.started".into()));
    }
}
