//! The messages an assistant batch pushes on `tenant:{tenant_id}:user:{user_id}:ai`.

use super::apply::StoredReply;
use super::event::ReplyDelta;
use crate::live::{Channel, LiveUpdate};
use crate::pipeline::{Ephemeral, EventMeta};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

// Members in name order, as the maps these structs replaced wrote them
// (see `LiveUpdate::new`).

pub const DELTA: &str = "ai.reply.delta";
pub const COMPLETED: &str = "ai.reply.completed";

/// A streamed piece of a reply, published at once. The id is the same on
/// every redelivery of the piece, which is how the gateway drops repeats.
pub fn delta(meta: &EventMeta, d: &ReplyDelta) -> Ephemeral {
    #[derive(Serialize)]
    struct Delta<'a> {
        conversation_id: Uuid,
        delta: &'a str,
        message_id: Uuid,
        seq: i32,
        user_id: Uuid,
    }
    let data = Delta {
        conversation_id: d.conversation_id,
        delta: &d.delta,
        message_id: d.message_id,
        seq: d.seq,
        user_id: d.user_id,
    };
    let channel = Channel::UserAi {
        tenant_id: meta.tenant_id,
        user_id: d.user_id,
    };
    Ephemeral {
        id: format!("ai:{}:{}", d.message_id, d.seq),
        update: LiveUpdate::new(channel, DELTA, data),
    }
}

/// The stored reply. `final` tells the gateway the streamed reply of this
/// `message_id` is over (its in-memory copy can go: the stored one is the
/// truth). `id` and `role` make the data the `ai_messages` row that
/// docs/asyncapi.yaml (`aiMessageRow`) describes.
pub fn completed(s: &StoredReply) -> LiveUpdate {
    #[derive(Serialize)]
    struct Completed<'a> {
        content: &'a str,
        conversation_id: Uuid,
        #[serde(with = "crate::instant::rfc3339")]
        created_at: DateTime<Utc>,
        #[serde(rename = "final")]
        is_final: bool,
        id: Uuid,
        message_id: Uuid,
        model: Option<&'a str>,
        role: &'static str,
        tokens_used: i32,
        user_id: Uuid,
    }
    let r = &s.reply;
    let data = Completed {
        content: &r.content,
        conversation_id: r.conversation_id,
        created_at: s.created_at,
        is_final: true,
        id: r.message_id,
        message_id: r.message_id,
        model: r.model.as_deref(),
        role: "assistant",
        tokens_used: r.tokens_used,
        user_id: r.user_id,
    };
    let channel = Channel::UserAi {
        tenant_id: s.tenant_id,
        user_id: r.user_id,
    };
    LiveUpdate::new(channel, COMPLETED, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::event::ReplyCompleted;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn a_delta_goes_to_the_users_ai_channel_with_a_stable_id() {
        let meta = EventMeta {
            event_id: Uuid::new_v4(),
            tenant_id: Uuid::new_v4(),
            occurred_at: Utc::now(),
            record: 0,
        };
        let d = ReplyDelta {
            conversation_id: Uuid::new_v4(),
            message_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            seq: 4,
            delta: "lo".into(),
        };
        let e = delta(&meta, &d);
        assert_eq!(e.id, format!("ai:{}:4", d.message_id));
        assert_eq!(
            e.update.channel,
            format!("tenant:{}:user:{}:ai", meta.tenant_id, d.user_id)
        );
        assert_eq!(e.update.kind, "ai.reply.delta");
        let data = e.update.data_value();
        assert_eq!(data["seq"], 4);
        assert_eq!(data["delta"], "lo");
        assert_eq!(data.as_object().unwrap().len(), 5);
    }

    #[test]
    fn a_completed_reply_is_final_and_carries_the_stored_message() {
        let s = StoredReply {
            tenant_id: Uuid::new_v4(),
            created_at: Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap(),
            reply: ReplyCompleted {
                conversation_id: Uuid::new_v4(),
                message_id: Uuid::new_v4(),
                user_id: Uuid::new_v4(),
                content: "Hello".into(),
                tokens_used: 9,
                model: None,
            },
        };
        let u = completed(&s);
        assert_eq!(
            u.channel,
            format!("tenant:{}:user:{}:ai", s.tenant_id, s.reply.user_id)
        );
        assert_eq!(u.kind, "ai.reply.completed");
        let data = u.data_value();
        assert_eq!(data["final"], true);
        assert_eq!(data["id"], data["message_id"]);
        assert_eq!(data["role"], "assistant");
        assert_eq!(data["content"], "Hello");
        assert_eq!(data["tokens_used"], 9);
        assert!(data["model"].is_null());
        assert_eq!(data["created_at"], "2026-11-25T10:00:00Z");
    }

    #[test]
    fn messages_keep_the_text_their_maps_wrote() {
        let d = ReplyDelta {
            conversation_id: Uuid::new_v4(),
            message_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            seq: 17,
            delta: "a \"quoted\"\n line".into(),
        };
        let meta = EventMeta {
            event_id: Uuid::new_v4(),
            tenant_id: Uuid::new_v4(),
            occurred_at: Utc::now(),
            record: 0,
        };
        let map = json!({
            "conversation_id": d.conversation_id,
            "message_id": d.message_id,
            "user_id": d.user_id,
            "seq": d.seq,
            "delta": d.delta,
        });
        assert_eq!(delta(&meta, &d).update.data.get(), map.to_string());

        for model in [None, Some("gpt-x".to_owned())] {
            let s = StoredReply {
                tenant_id: meta.tenant_id,
                created_at: Utc::now(),
                reply: ReplyCompleted {
                    conversation_id: d.conversation_id,
                    message_id: d.message_id,
                    user_id: d.user_id,
                    content: "Hello, \u{e9}t\u{e9}".into(),
                    tokens_used: 9,
                    model,
                },
            };
            let r = &s.reply;
            let map = json!({
                "id": r.message_id,
                "conversation_id": r.conversation_id,
                "message_id": r.message_id,
                "user_id": r.user_id,
                "role": "assistant",
                "content": r.content,
                "tokens_used": r.tokens_used,
                "model": r.model,
                "created_at": s.created_at,
                "final": true,
            });
            assert_eq!(completed(&s).data.get(), map.to_string());
        }
    }
}
