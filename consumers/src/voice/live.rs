//! The messages the voice pipeline pushes (contract §7 channels `calls` and `call`).

use super::apply::{AnalysisRow, CallRow};
use super::store::StatsRow;
use crate::live::{Channel, LiveUpdate};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

fn to_value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("rows serialize to JSON")
}

/// `call.updated` on `tenant:{t}:calls`: the call's current row.
pub fn call_updated(row: &CallRow) -> LiveUpdate {
    let channel = Channel::Calls {
        tenant_id: row.tenant_id,
    };
    LiveUpdate::new(channel, "call.updated", to_value(row))
}

/// `call.stats` on `tenant:{t}:calls`: the aggregate row after the change.
pub fn call_stats(row: &StatsRow) -> LiveUpdate {
    let channel = Channel::Calls {
        tenant_id: row.tenant_id,
    };
    LiveUpdate::new(channel, "call.stats", to_value(row))
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
    let channel = Channel::Call { tenant_id, call_id };
    let data = json!({
        "call_id": call_id, "seq": seq, "speaker": speaker, "text": text, "occurred_at": occurred_at,
    });
    LiveUpdate::new(channel, "call.transcript", data)
}

/// `call.analyzed` on `tenant:{t}:calls` (an addition to the contract).
pub fn call_analyzed(row: &AnalysisRow) -> LiveUpdate {
    let channel = Channel::Calls {
        tenant_id: row.tenant_id,
    };
    LiveUpdate::new(channel, "call.analyzed", to_value(row))
}
