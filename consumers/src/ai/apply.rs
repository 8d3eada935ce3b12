//! Pure logic of an assistant batch: the order deltas are pushed in, which
//! completed replies are admitted, and what they do to their conversations.

use super::event::{AiEvent, ReplyCompleted, ReplyDelta};
use crate::envelope::Rejection;
use crate::pipeline::{Accepted, EventMeta};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Removes the deltas from the batch and returns them in push order: each
/// message's deltas by `seq` (producers may interleave or reorder them
/// within a batch), messages in order of first appearance, and each
/// (message, seq) once. A message is its tenant's: two tenants' deltas
/// that share a `message_id` are two streams, neither drops the other's.
pub fn take_deltas(events: &mut Vec<Accepted<AiEvent>>) -> Vec<(EventMeta, ReplyDelta)> {
    let mut deltas = Vec::new();
    events.retain(|a| match &a.event {
        AiEvent::Delta(d) => {
            deltas.push((a.meta, d.clone()));
            false
        }
        AiEvent::Completed(_) => true,
    });
    let mut first_seen: HashMap<(Uuid, Uuid), usize> = HashMap::new();
    for (meta, d) in &deltas {
        let next = first_seen.len();
        first_seen
            .entry((meta.tenant_id, d.message_id))
            .or_insert(next);
    }
    // Stable: of two copies of one (message, seq), the earlier record is kept.
    deltas.sort_by_key(|(meta, d)| (first_seen[&(meta.tenant_id, d.message_id)], d.seq));
    deltas.dedup_by(|b, a| {
        a.0.tenant_id == b.0.tenant_id && a.1.message_id == b.1.message_id && a.1.seq == b.1.seq
    });
    deltas
}

/// A completed reply of the batch with its envelope facts.
#[derive(Debug, Clone, Copy)]
pub struct Completed<'e> {
    pub meta: &'e EventMeta,
    pub reply: &'e ReplyCompleted,
}

/// The completed replies of a batch, in record order. Deltas reach `apply`
/// only when a batch is decoded again for a retry; they are never stored.
pub fn completed(events: &[Accepted<AiEvent>]) -> Vec<Completed<'_>> {
    events
        .iter()
        .filter_map(|a| match &a.event {
            AiEvent::Completed(reply) => Some(Completed {
                meta: &a.meta,
                reply,
            }),
            AiEvent::Delta(_) => None,
        })
        .collect()
}

/// Who a conversation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Conversation {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
}

/// The conversations a batch touches, sorted (the order their rows are locked in).
pub fn conversation_ids(replies: &[Completed<'_>]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = replies.iter().map(|c| c.reply.conversation_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The messages a batch stores, sorted (the order their locks are taken in).
pub fn message_ids(replies: &[Completed<'_>]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = replies.iter().map(|c| c.reply.message_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[derive(Debug)]
pub struct Admission<'e> {
    pub kept: Vec<Completed<'e>>,
    pub rejected: Vec<(EventMeta, Rejection)>,
}

/// Keeps the replies that agree with their conversation's owner (the stored
/// row, else the batch's first reply in it) and whose `message_id` is not
/// another tenant's (`message_owners`: the stored ones' tenants), and of
/// several replies of one tenant with one `message_id` only the first, as
/// the store would. A rejection names neither the owner nor its ids.
pub fn admit<'e>(
    replies: &[Completed<'e>],
    existing: &HashMap<Uuid, Conversation>,
    message_owners: &HashMap<Uuid, Uuid>,
) -> Admission<'e> {
    let mut owners = existing.clone();
    let mut message_tenants = message_owners.clone();
    let mut messages = HashSet::new();
    let mut kept = Vec::with_capacity(replies.len());
    let mut rejected = Vec::new();
    for c in replies {
        let id = c.reply.conversation_id;
        let claimed = Conversation {
            tenant_id: c.meta.tenant_id,
            user_id: c.reply.user_id,
        };
        let message_id = c.reply.message_id;
        let message_tenant = message_tenants
            .get(&message_id)
            .copied()
            .unwrap_or(claimed.tenant_id);
        if message_tenant != claimed.tenant_id {
            rejected.push((
                *c.meta,
                Rejection::RuleViolation(format!(
                    "message_id {message_id} belongs to another tenant"
                )),
            ));
            continue;
        }
        let owner = *owners.entry(id).or_insert(claimed);
        if owner.tenant_id != claimed.tenant_id {
            rejected.push((
                *c.meta,
                Rejection::RuleViolation(format!("conversation {id} belongs to another tenant")),
            ));
        } else if owner.user_id != claimed.user_id {
            rejected.push((
                *c.meta,
                Rejection::RuleViolation(format!(
                    "conversation {id} belongs to user {}, not user {}",
                    owner.user_id, claimed.user_id
                )),
            ));
        } else if messages.insert(message_id) {
            message_tenants.insert(message_id, claimed.tenant_id);
            kept.push(*c);
        }
    }
    Admission { kept, rejected }
}

/// A conversation row to create if it does not exist yet.
#[derive(Debug, Clone, PartialEq)]
pub struct NewConversation {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    /// The conversation existed no later than its earliest reply.
    pub created_at: DateTime<Utc>,
}

/// One row per conversation of `kept`, sorted by id.
pub fn new_conversations(kept: &[Completed<'_>]) -> Vec<NewConversation> {
    let mut rows: BTreeMap<Uuid, NewConversation> = BTreeMap::new();
    for c in kept {
        let row = rows
            .entry(c.reply.conversation_id)
            .or_insert_with(|| NewConversation {
                id: c.reply.conversation_id,
                tenant_id: c.meta.tenant_id,
                user_id: c.reply.user_id,
                created_at: c.meta.occurred_at,
            });
        row.created_at = row.created_at.min(c.meta.occurred_at);
    }
    rows.into_values().collect()
}

/// A reply as stored in `ai_messages`. Its `created_at` is the event's
/// `occurred_at`, so a conversation's history reads in the order the
/// replies were written, not the order the hub received them.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReply {
    pub tenant_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub reply: ReplyCompleted,
}

/// What a batch adds to one conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationBump {
    pub id: Uuid,
    pub messages: i32,
    pub last_message_at: DateTime<Utc>,
}

/// One bump per conversation, sorted by id.
pub fn conversation_bumps(stored: &[StoredReply]) -> Vec<ConversationBump> {
    let mut bumps: BTreeMap<Uuid, ConversationBump> = BTreeMap::new();
    for s in stored {
        let b = bumps
            .entry(s.reply.conversation_id)
            .or_insert_with(|| ConversationBump {
                id: s.reply.conversation_id,
                messages: 0,
                last_message_at: s.created_at,
            });
        b.messages += 1;
        b.last_message_at = b.last_message_at.max(s.created_at);
    }
    bumps.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + secs, 0).unwrap()
    }

    fn meta(tenant: Uuid, record: usize) -> EventMeta {
        EventMeta {
            event_id: Uuid::new_v4(),
            tenant_id: tenant,
            occurred_at: at(record as i64),
            record,
        }
    }

    fn delta(message: Uuid, seq: i32, record: usize) -> Accepted<AiEvent> {
        Accepted {
            meta: meta(Uuid::nil(), record),
            event: AiEvent::Delta(ReplyDelta {
                conversation_id: Uuid::nil(),
                message_id: message,
                user_id: Uuid::nil(),
                seq,
                delta: format!("{seq}@{record}"),
            }),
        }
    }

    fn reply(tenant: Uuid, conversation: Uuid, user: Uuid, record: usize) -> Accepted<AiEvent> {
        Accepted {
            meta: meta(tenant, record),
            event: AiEvent::Completed(ReplyCompleted {
                conversation_id: conversation,
                message_id: Uuid::new_v4(),
                user_id: user,
                content: "done".into(),
                tokens_used: 1,
                model: None,
            }),
        }
    }

    #[test]
    fn deltas_leave_the_batch_sorted_by_seq_within_each_message_in_first_appearance_order() {
        let (m1, m2) = (Uuid::new_v4(), Uuid::new_v4());
        let t = Uuid::new_v4();
        let mut events = vec![
            delta(m2, 1, 0),
            delta(m1, 2, 1),
            reply(t, Uuid::new_v4(), Uuid::new_v4(), 2),
            delta(m2, 0, 3),
            delta(m1, 0, 4),
            delta(m1, 1, 5),
        ];
        let taken = take_deltas(&mut events);
        let order: Vec<(Uuid, i32)> = taken.iter().map(|(_, d)| (d.message_id, d.seq)).collect();
        assert_eq!(order, [(m2, 0), (m2, 1), (m1, 0), (m1, 1), (m1, 2)]);
        assert_eq!(events.len(), 1);
        assert!(matches!(events[0].event, AiEvent::Completed(_)));
    }

    #[test]
    fn a_repeated_delta_is_taken_once_keeping_the_first_copy() {
        let m = Uuid::new_v4();
        let mut events = vec![
            delta(m, 0, 0),
            delta(m, 1, 1),
            delta(m, 0, 2),
            delta(m, 1, 3),
        ];
        let taken = take_deltas(&mut events);
        let texts: Vec<&str> = taken.iter().map(|(_, d)| d.delta.as_str()).collect();
        assert_eq!(texts, ["0@0", "1@1"]);
        assert!(events.is_empty());
    }

    #[test]
    fn completed_replies_skip_any_delta_left_in_the_batch() {
        let t = Uuid::new_v4();
        let events = vec![
            delta(Uuid::new_v4(), 0, 0),
            reply(t, Uuid::new_v4(), Uuid::new_v4(), 1),
        ];
        let c = completed(&events);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].meta.record, 1);
    }

    #[test]
    fn a_reply_in_another_tenants_or_users_conversation_is_rejected() {
        let (t, other_t, u, other_u) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let conv = Uuid::new_v4();
        let existing = HashMap::from([(
            conv,
            Conversation {
                tenant_id: t,
                user_id: u,
            },
        )]);
        let events = vec![
            reply(other_t, conv, u, 0),
            reply(t, conv, other_u, 1),
            reply(t, conv, u, 2),
        ];
        let c = completed(&events);
        let adm = admit(&c, &existing, &HashMap::new());
        assert_eq!(adm.kept.len(), 1);
        assert_eq!(adm.kept[0].meta.record, 2);
        let reasons: Vec<String> = adm.rejected.iter().map(|(_, r)| r.to_string()).collect();
        assert!(reasons[0].contains("another tenant"));
        assert!(
            !reasons[0].contains(&u.to_string()),
            "must not leak the owner's user"
        );
        assert!(reasons[1].contains(&other_u.to_string()));
    }

    #[test]
    fn in_a_new_conversation_the_first_reply_decides_the_owner() {
        let (t, u, other_u) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let conv = Uuid::new_v4();
        let events = vec![reply(t, conv, u, 0), reply(t, conv, other_u, 1)];
        let c = completed(&events);
        let adm = admit(&c, &HashMap::new(), &HashMap::new());
        assert_eq!(adm.kept.len(), 1);
        assert_eq!(adm.rejected[0].0.record, 1);
    }

    #[test]
    fn a_second_reply_with_the_same_message_id_is_dropped_not_rejected() {
        let (t, u, conv) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let first = reply(t, conv, u, 0);
        let mut again = reply(t, conv, u, 1);
        if let (AiEvent::Completed(a), AiEvent::Completed(b)) = (&first.event, &mut again.event) {
            b.message_id = a.message_id;
        }
        let events = vec![first, again];
        let c = completed(&events);
        let adm = admit(&c, &HashMap::new(), &HashMap::new());
        assert_eq!(adm.kept.len(), 1);
        assert_eq!(adm.kept[0].meta.record, 0);
        assert!(adm.rejected.is_empty());
    }

    #[test]
    fn a_reply_reusing_another_tenants_stored_message_id_is_rejected_without_naming_the_owner() {
        let (a, b, u) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let m = Uuid::new_v4();
        let with_message = |mut e: Accepted<AiEvent>| {
            if let AiEvent::Completed(r) = &mut e.event {
                r.message_id = m;
            }
            e
        };
        // A stored m; then B reuses it, and A's own retry comes again.
        let stored = HashMap::from([(m, a)]);
        let events = vec![
            with_message(reply(b, Uuid::new_v4(), u, 0)),
            with_message(reply(a, Uuid::new_v4(), u, 1)),
        ];
        let c = completed(&events);
        let adm = admit(&c, &HashMap::new(), &stored);
        assert_eq!(adm.rejected.len(), 1);
        assert_eq!(adm.rejected[0].0.tenant_id, b);
        let reason = adm.rejected[0].1.to_string();
        assert!(reason.contains("belongs to another tenant"), "{reason}");
        assert!(!reason.contains(&a.to_string()), "must not name the owner");
        // The owner's retry is kept (the store then finds it stored already).
        assert_eq!(adm.kept.len(), 1);
        assert_eq!(adm.kept[0].meta.tenant_id, a);
    }

    #[test]
    fn in_one_batch_the_first_tenant_to_use_a_message_id_owns_it() {
        let (a, b, u) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let first = reply(a, Uuid::new_v4(), u, 0);
        let mut second = reply(b, Uuid::new_v4(), u, 1);
        if let (AiEvent::Completed(x), AiEvent::Completed(y)) = (&first.event, &mut second.event) {
            y.message_id = x.message_id;
        }
        let events = vec![first, second];
        let c = completed(&events);
        let adm = admit(&c, &HashMap::new(), &HashMap::new());
        assert_eq!(adm.kept.len(), 1);
        assert_eq!(adm.kept[0].meta.tenant_id, a);
        assert_eq!(adm.rejected.len(), 1);
        assert_eq!(adm.rejected[0].0.tenant_id, b);
    }

    #[test]
    fn two_tenants_deltas_with_one_message_id_are_two_streams() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let m = Uuid::new_v4();
        let mut events = vec![delta(m, 0, 0), delta(m, 0, 1), delta(m, 1, 2)];
        events[0].meta.tenant_id = a;
        events[1].meta.tenant_id = b;
        events[2].meta.tenant_id = a;
        let taken = take_deltas(&mut events);
        let got: Vec<(Uuid, i32)> = taken.iter().map(|(m, d)| (m.tenant_id, d.seq)).collect();
        assert_eq!(got, [(a, 0), (a, 1), (b, 0)]);
    }

    #[test]
    fn new_conversations_are_sorted_and_dated_by_their_earliest_reply() {
        let (t, u) = (Uuid::new_v4(), Uuid::new_v4());
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let events = vec![reply(t, b, u, 3), reply(t, a, u, 1), reply(t, b, u, 2)];
        let c = completed(&events);
        let rows = new_conversations(&c);
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        assert_eq!(ids, [a.min(b), a.max(b)]);
        let row_b = rows.iter().find(|r| r.id == b).unwrap();
        assert_eq!(row_b.created_at, at(2));
    }

    #[test]
    fn bumps_count_replies_per_conversation_and_keep_the_latest_time() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let stored = |conv: Uuid, secs: i64| StoredReply {
            tenant_id: Uuid::nil(),
            created_at: at(secs),
            reply: ReplyCompleted {
                conversation_id: conv,
                message_id: Uuid::new_v4(),
                user_id: Uuid::nil(),
                content: String::new(),
                tokens_used: 0,
                model: None,
            },
        };
        let bumps = conversation_bumps(&[stored(a, 5), stored(b, 1), stored(a, 9), stored(a, 7)]);
        assert_eq!(bumps.len(), 2);
        let bump_a = bumps.iter().find(|x| x.id == a).unwrap();
        assert_eq!((bump_a.messages, bump_a.last_message_at), (3, at(9)));
        assert!(bumps[0].id < bumps[1].id);
    }
}
