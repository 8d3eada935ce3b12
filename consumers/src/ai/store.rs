//! The SQL of an assistant batch: rows passed as `UNNEST` arrays, inside the
//! caller's transaction.

use super::apply::{Completed, Conversation, ConversationBump, NewConversation, StoredReply};
use crate::store_util::{as_index_probes, lock_by_id};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Locks the stored conversations among `ids` and returns who owns each;
/// the locks keep the ownership check true until commit.
pub async fn lock_conversations(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Conversation>, sqlx::Error> {
    lock_by_id(conn, "ai_conversations", "id, tenant_id, user_id", ids).await
}

/// The `lad.` class of the advisory locks on assistant message ids (the
/// two-key form: a key space apart from the relay's one-key lock).
const MESSAGE_LOCK_CLASS: i32 = 0x4c41_4431; // "LAD1"

/// Locks the batch's `message_id`s (stored or not: an advisory lock per id,
/// taken in id order) and returns the tenant of each one already stored.
/// Two batches of different partitions that carry the same new id then
/// take turns, and the second sees the first's row: whoever stored an id
/// first owns it, and the other is rejected instead of silently dropped.
pub async fn lock_message_owners(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Uuid>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    sqlx::query(
        "SELECT pg_advisory_xact_lock($2, hashtext(s.id::text))
         FROM (SELECT id FROM UNNEST($1::uuid[]) AS u(id) ORDER BY id) AS s",
    )
    .bind(ids)
    .bind(MESSAGE_LOCK_CLASS)
    .execute(&mut *conn)
    .await?;
    let rows: Vec<(Uuid, Uuid)> = as_index_probes(conn, ids.len(), async |conn| {
        sqlx::query_as("SELECT id, tenant_id FROM ai_messages WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(conn)
            .await
    })
    .await?;
    Ok(rows.into_iter().collect())
}

/// Creates the conversations that do not exist yet: a reply may be the
/// first the hub hears of its conversation, and `ai_messages` references it.
pub async fn create_conversations(
    conn: &mut PgConnection,
    rows: &[NewConversation],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let tenant_ids: Vec<Uuid> = rows.iter().map(|r| r.tenant_id).collect();
    let user_ids: Vec<Uuid> = rows.iter().map(|r| r.user_id).collect();
    let created: Vec<DateTime<Utc>> = rows.iter().map(|r| r.created_at).collect();
    sqlx::query(
        "INSERT INTO ai_conversations (id, tenant_id, user_id, created_at, updated_at)
         SELECT u.*, $5
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[]) AS u(id, t, usr, c)
         ORDER BY u.id
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&tenant_ids)
    .bind(&user_ids)
    .bind(&created)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores each reply once (`id = message_id`) as an `assistant` message and
/// returns the ones this call inserted, in input order: a reply whose
/// message is already stored (a retry under a new `event_id`) is not
/// counted or pushed again.
pub async fn insert_replies(
    conn: &mut PgConnection,
    kept: &[Completed<'_>],
    now: DateTime<Utc>,
) -> Result<Vec<StoredReply>, sqlx::Error> {
    if kept.is_empty() {
        return Ok(Vec::new());
    }
    let n = kept.len();
    let mut ids = Vec::with_capacity(n);
    let mut tenant_ids = Vec::with_capacity(n);
    let mut conversation_ids = Vec::with_capacity(n);
    let mut user_ids = Vec::with_capacity(n);
    let mut contents = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    let mut models = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    for c in kept {
        ids.push(c.reply.message_id);
        tenant_ids.push(c.meta.tenant_id);
        conversation_ids.push(c.reply.conversation_id);
        user_ids.push(c.reply.user_id);
        contents.push(c.reply.content.as_str());
        tokens.push(c.reply.tokens_used);
        models.push(c.reply.model.as_deref());
        created.push(c.meta.occurred_at);
    }
    let inserted: HashSet<Uuid> = sqlx::query_scalar(
        "INSERT INTO ai_messages
           (id, tenant_id, conversation_id, user_id, role, content, tokens_used, model,
            created_at, updated_at)
         SELECT u.id, u.t, u.conv, u.usr, 'assistant', u.content, u.tokens, u.model, u.c, $9
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::int[],
                     $7::text[], $8::timestamptz[])
              AS u(id, t, conv, usr, content, tokens, model, c)
         ON CONFLICT (id) DO NOTHING
         RETURNING id",
    )
    .bind(&ids)
    .bind(&tenant_ids)
    .bind(&conversation_ids)
    .bind(&user_ids)
    .bind(&contents)
    .bind(&tokens)
    .bind(&models)
    .bind(&created)
    .bind(now)
    .fetch_all(conn)
    .await?
    .into_iter()
    .collect();
    Ok(kept
        .iter()
        .filter(|c| inserted.contains(&c.reply.message_id))
        .map(|c| StoredReply {
            tenant_id: c.meta.tenant_id,
            created_at: c.meta.occurred_at,
            reply: c.reply.clone(),
        })
        .collect())
}

/// Adds the batch's messages to their conversations. Every row was locked
/// or created by this transaction already, so no new lock is taken here.
/// `last_message_at` only moves forward, whatever order replies arrive in.
pub async fn bump_conversations(
    conn: &mut PgConnection,
    bumps: &[ConversationBump],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if bumps.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = bumps.iter().map(|b| b.id).collect();
    let counts: Vec<i32> = bumps.iter().map(|b| b.messages).collect();
    let last: Vec<DateTime<Utc>> = bumps.iter().map(|b| b.last_message_at).collect();
    sqlx::query(
        "UPDATE ai_conversations AS c
         SET message_count = c.message_count + d.n,
             last_message_at = GREATEST(c.last_message_at, d.last),
             updated_at = $4
         FROM UNNEST($1::uuid[], $2::int[], $3::timestamptz[]) AS d(id, n, last)
         WHERE c.id = d.id",
    )
    .bind(&ids)
    .bind(&counts)
    .bind(&last)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
