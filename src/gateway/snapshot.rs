//! The `snapshot` of a `subscribed` frame: the channel's current state as
//! committed in Postgres (contract §7). Rows are serialized from Rust types
//! so money is a decimal string and times are RFC 3339, as in live messages.
//! Assistant channels are answered from memory by the registry instead.

use chrono::{DateTime, NaiveDate, Utc};
use lad_consumers::campaigns::store::{StepStatRow, STEP_STAT_COLUMNS};
use lad_consumers::live::Channel;
use lad_consumers::voice;
use lad_consumers::voice::store::{StatsRow, CALL_COLUMNS, STATS_COLUMNS};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// Calls in progress listed in a `calls` snapshot, newest first.
pub const IN_PROGRESS_LIMIT: i64 = 500;
/// Transcript lines in a `call` snapshot: far beyond a real call, it only
/// keeps a corrupt stream from building a frame of unbounded size.
pub const TRANSCRIPT_LIMIT: i64 = 20_000;

/// A `voice_call_stats_daily` row as `call.stats` pushes it, and when it last changed.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct CallStatsRow {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub stats: StatsRow,
    pub updated_at: DateTime<Utc>,
}

/// A `voice_call_logs` row as `call.updated` pushes it, and when it last changed.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct CallRow {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub call: voice::apply::CallRow,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct TranscriptLine {
    pub call_id: Uuid,
    pub seq: i32,
    pub speaker: String,
    pub text: String,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Wallet {
    pub wallet_id: Option<Uuid>,
    pub tenant_id: Uuid,
    pub current_balance: Decimal,
    pub currency: String,
    pub status: String,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Wallet {
    /// A tenant's wallet before its first use (contract §5: created with 0).
    pub fn empty(tenant_id: Uuid) -> Wallet {
        Wallet {
            wallet_id: None,
            tenant_id,
            // Six places, like every amount the hub shows.
            current_balance: Decimal::new(0, 6),
            currency: "USD".into(),
            status: "active".into(),
            updated_at: None,
        }
    }
}

pub async fn load(pool: &PgPool, channel: &Channel) -> Result<Value, sqlx::Error> {
    match *channel {
        Channel::Calls { tenant_id } => calls(pool, tenant_id, Utc::now().date_naive()).await,
        Channel::Call { tenant_id, call_id } => call(pool, tenant_id, call_id).await,
        Channel::Campaign {
            tenant_id,
            campaign_id,
        } => campaign(pool, tenant_id, campaign_id).await,
        Channel::Billing { tenant_id } => billing(pool, tenant_id).await,
        // Replies in progress are never in Postgres; the registry answers
        // these itself. From the database's view none is in progress.
        Channel::UserAi { .. } => Ok(json!({ "replies": [] })),
    }
}

async fn calls(pool: &PgPool, tenant_id: Uuid, day: NaiveDate) -> Result<Value, sqlx::Error> {
    let stats: Vec<CallStatsRow> = sqlx::query_as(&format!(
        "SELECT {STATS_COLUMNS}, updated_at
         FROM voice_call_stats_daily
         WHERE tenant_id = $1 AND day = $2
         ORDER BY agent_id"
    ))
    .bind(tenant_id)
    .bind(day)
    .fetch_all(pool)
    .await?;
    let in_progress: Vec<CallRow> = sqlx::query_as(&format!(
        "SELECT {CALL_COLUMNS}, updated_at FROM voice_call_logs
         WHERE tenant_id = $1 AND ended_at IS NULL AND deleted_at IS NULL
         ORDER BY created_at DESC
         LIMIT $2"
    ))
    .bind(tenant_id)
    .bind(IN_PROGRESS_LIMIT)
    .fetch_all(pool)
    .await?;
    Ok(json!({ "day": day, "stats": stats, "calls_in_progress": in_progress }))
}

async fn call(pool: &PgPool, tenant_id: Uuid, call_id: Uuid) -> Result<Value, sqlx::Error> {
    let row: Option<CallRow> = sqlx::query_as(&format!(
        "SELECT {CALL_COLUMNS}, updated_at FROM voice_call_logs
         WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL
         ORDER BY created_at DESC
         LIMIT 1"
    ))
    .bind(call_id)
    .bind(tenant_id)
    .fetch_optional(pool)
    .await?;
    let transcript: Vec<TranscriptLine> = sqlx::query_as(
        "SELECT call_id, seq, speaker, text, occurred_at
         FROM voice_call_transcripts
         WHERE call_id = $1 AND tenant_id = $2
         ORDER BY seq
         LIMIT $3",
    )
    .bind(call_id)
    .bind(tenant_id)
    .bind(TRANSCRIPT_LIMIT)
    .fetch_all(pool)
    .await?;
    Ok(json!({ "call": row, "transcript": transcript }))
}

async fn campaign(pool: &PgPool, tenant_id: Uuid, campaign_id: Uuid) -> Result<Value, sqlx::Error> {
    let stats: Vec<StepStatRow> = sqlx::query_as(&format!(
        "SELECT {STEP_STAT_COLUMNS}
         FROM campaign_step_stats
         WHERE tenant_id = $1 AND campaign_id = $2
         ORDER BY step_id, status"
    ))
    .bind(tenant_id)
    .bind(campaign_id)
    .fetch_all(pool)
    .await?;
    Ok(json!({ "stats": stats }))
}

async fn billing(pool: &PgPool, tenant_id: Uuid) -> Result<Value, sqlx::Error> {
    let wallet: Option<Wallet> = sqlx::query_as(
        "SELECT id AS wallet_id, tenant_id, current_balance, currency, status, updated_at
         FROM billing_wallets
         WHERE tenant_id = $1 AND user_id IS NULL AND deleted_at IS NULL",
    )
    .bind(tenant_id)
    .fetch_optional(pool)
    .await?;
    Ok(json!({ "wallet": wallet.unwrap_or_else(|| Wallet::empty(tenant_id)) }))
}
