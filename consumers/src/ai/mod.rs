//! ICP assistant replies (contract §6), from `lad.ai.icp-assistant.v1`.
//!
//! Deltas are never stored: [`AiDomain::take_ephemeral`] takes them out of
//! the batch before its transaction and they are published at once, in
//! `seq` order per message, each (message, seq) once. A completed reply is
//! stored once in `ai_messages` (creating its conversation if needed,
//! counting it there) and pushed with `"final": true` after commit.
//!
//! A conversation and a `message_id` each belong to one tenant: the first
//! to store it. Another tenant's reply that reuses either is dead-lettered
//! with the reason; the owner's row and stream are untouched.

pub mod apply;
pub mod event;
pub mod live;
pub mod store;

use crate::envelope::{Envelope, Rejection};
use crate::pipeline::{Accepted, Domain, Effects, Ephemeral};
use event::AiEvent;
use sqlx::PgConnection;
use std::future::Future;

#[derive(Debug, Default, Clone, Copy)]
pub struct AiDomain;

impl Domain for AiDomain {
    type Event = AiEvent;

    fn decode(&self, envelope: &Envelope) -> Result<AiEvent, Rejection> {
        event::decode(envelope)
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [Accepted<AiEvent>],
        fx: &'a mut Effects,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'a {
        apply_batch(conn, events, fx)
    }

    fn streams_ephemeral(&self) -> bool {
        true
    }

    fn take_ephemeral(&self, events: &mut Vec<Accepted<AiEvent>>) -> Vec<Ephemeral> {
        apply::take_deltas(events)
            .iter()
            .map(|(meta, d)| live::delta(meta, d))
            .collect()
    }
}

async fn apply_batch(
    conn: &mut PgConnection,
    events: &[Accepted<AiEvent>],
    fx: &mut Effects,
) -> Result<(), sqlx::Error> {
    let replies = apply::completed(events);
    if replies.is_empty() {
        return Ok(());
    }
    let owners = store::lock_conversations(conn, &apply::conversation_ids(&replies)).await?;
    let message_owners = store::lock_message_owners(conn, &apply::message_ids(&replies)).await?;
    let admission = apply::admit(&replies, &owners, &message_owners);
    for (meta, rejection) in admission.rejected {
        fx.reject(&meta, rejection);
    }
    if admission.kept.is_empty() {
        return Ok(());
    }
    store::create_conversations(conn, &apply::new_conversations(&admission.kept), fx.now).await?;
    let stored = store::insert_replies(conn, &admission.kept, fx.now).await?;
    store::bump_conversations(conn, &apply::conversation_bumps(&stored), fx.now).await?;
    for s in &stored {
        fx.push(live::completed(s));
    }
    Ok(())
}
