//! The messages the voice pipeline pushes (contract §7 channels `calls` and `call`).

use super::apply::{AnalysisRow, CallRow};
use super::store::StatsRow;
use crate::live::{Channel, LiveUpdate};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// `call.updated` on `tenant:{t}:calls`: the call's current row.
pub fn call_updated(row: &CallRow) -> LiveUpdate {
    let channel = Channel::Calls {
        tenant_id: row.tenant_id,
    };
    LiveUpdate::new(channel, "call.updated", row)
}

/// `call.stats` on `tenant:{t}:calls`: the aggregate row after the change.
pub fn call_stats(row: &StatsRow) -> LiveUpdate {
    let channel = Channel::Calls {
        tenant_id: row.tenant_id,
    };
    LiveUpdate::new(channel, "call.stats", row)
}

/// `call.transcript` on `tenant:{t}:call:{call_id}`.
pub fn call_transcript(
    tenant_id: Uuid,
    call_id: Uuid,
    seq: i32,
    speaker: &str,
    text: &str,
    occurred_at: DateTime<Utc>,
) -> LiveUpdate {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        call_id: Uuid,
        seq: i32,
        speaker: &'a str,
        text: &'a str,
        #[serde(with = "crate::instant::rfc3339")]
        occurred_at: DateTime<Utc>,
    }
    let channel = Channel::Call { tenant_id, call_id };
    let data = Line {
        call_id,
        seq,
        speaker,
        text,
        occurred_at,
    };
    LiveUpdate::new(channel, "call.transcript", data)
}

/// `call.analyzed` on `tenant:{t}:calls` (an addition to the contract).
pub fn call_analyzed(row: &AnalysisRow) -> LiveUpdate {
    let channel = Channel::Calls {
        tenant_id: row.tenant_id,
    };
    LiveUpdate::new(channel, "call.analyzed", row)
}
