//! The `snapshot` of a `subscribed` frame: the channel's current state as
//! committed in Postgres (contract §7), read with each domain's own store
//! functions and shaped like the live messages that update it, so a client
//! treats both alike. Assistant channels are answered from memory by the
//! registry instead.

use chrono::Utc;
use lad_consumers::live::Channel;
use lad_consumers::{billing, campaigns, voice};
use serde_json::{json, Value};
use sqlx::PgPool;

/// Calls in progress listed in a `calls` snapshot, newest first.
pub const IN_PROGRESS_LIMIT: i64 = 500;
/// Transcript lines in a `call` snapshot: far beyond a real call, it only
/// keeps a corrupt stream from building a frame of unbounded size.
pub const TRANSCRIPT_LIMIT: i64 = 20_000;

pub async fn load(pool: &PgPool, channel: &Channel) -> Result<Value, sqlx::Error> {
    // Replies in progress are never in Postgres; the registry answers
    // these itself. From the database's view none is in progress.
    if let Channel::UserAi { .. } = channel {
        return Ok(json!({ "replies": [] }));
    }
    let mut conn = pool.acquire().await?;
    let conn = &mut *conn;
    Ok(match *channel {
        Channel::Calls { tenant_id } => {
            let day = Utc::now().date_naive();
            let stats = voice::store::day_stats(conn, tenant_id, day).await?;
            let in_progress =
                voice::store::calls_in_progress(conn, tenant_id, IN_PROGRESS_LIMIT).await?;
            json!({ "day": day, "stats": stats, "calls_in_progress": in_progress })
        }
        Channel::Call { tenant_id, call_id } => {
            let call = voice::store::load_call(conn, tenant_id, call_id).await?;
            let transcript =
                voice::store::transcript(conn, tenant_id, call_id, TRANSCRIPT_LIMIT).await?;
            json!({ "call": call, "transcript": transcript })
        }
        Channel::Campaign {
            tenant_id,
            campaign_id,
        } => {
            let stats = campaigns::store::step_stats(conn, tenant_id, campaign_id).await?;
            json!({ "stats": stats })
        }
        Channel::Billing { tenant_id } => {
            let wallet = billing::store::load_wallet(conn, tenant_id).await?;
            billing::live::wallet_snapshot(tenant_id, wallet.as_ref())
        }
        Channel::UserAi { .. } => unreachable!("answered from memory above"),
    })
}
