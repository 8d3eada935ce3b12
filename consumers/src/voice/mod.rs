//! `lad.voice.call-events.v1`: call lifecycle events into `voice_call_logs`,
//! `voice_call_analysis`, `voice_call_transcripts` and
//! `voice_call_stats_daily`, plus the billing chain of ended calls.

pub mod apply;
pub mod event;
pub mod live;
pub mod store;

use crate::billing::{self, UsageRequest};
use crate::envelope::{Envelope, Rejection};
use crate::pipeline::{Accepted, Domain, Effects};
use apply::{add_change, AnalysisRow, CallRow, Merged};
use event::VoiceEvent;
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgConnection;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

/// The feature key and idempotency key prefix of the billing chain (contract §3).
pub const VOICE_FEATURE_KEY: &str = "voice_calls";

pub fn billing_key(call_id: Uuid) -> String {
    format!("voice-call:{call_id}")
}

#[derive(Debug, Default, Clone, Copy)]
pub struct VoiceDomain;

impl Domain for VoiceDomain {
    type Event = VoiceEvent;

    fn decode(&self, envelope: &Envelope) -> Result<VoiceEvent, Rejection> {
        VoiceEvent::decode(envelope)
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [Accepted<VoiceEvent>],
        fx: &'a mut Effects,
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'a {
        apply_batch(conn, events, fx)
    }

    /// A line is stored once per `(call_id, seq)` and pushed only when
    /// stored; it changes no aggregate. Every other event is recorded in
    /// the row it merges into (its call's, or its call's analysis), which
    /// the batch locks before merging (see [`Merged::admit`]).
    fn deduped_by_own_row(&self, _event: &VoiceEvent) -> bool {
        true
    }
}

async fn apply_batch(
    conn: &mut PgConnection,
    events: &[Accepted<VoiceEvent>],
    fx: &mut Effects,
) -> Result<(), sqlx::Error> {
    let all_ids = sorted_unique(events.iter().map(|a| a.event.call_id()));
    let stored = store::lock_calls(conn, &all_ids).await?;
    let unknown: Vec<Uuid> = all_ids
        .iter()
        .filter(|id| !stored.contains_key(id))
        .copied()
        .collect();
    let side = store::side_rows(conn, &unknown).await?;
    let mut owner: HashMap<Uuid, Uuid> = side.tenants;
    owner.extend(stored.values().map(|c| (c.row.id, c.row.tenant_id)));
    // A call without a row has an analysis only if the side rows said so.
    let analyzed = sorted_unique(
        events
            .iter()
            .filter(|a| matches!(a.event, VoiceEvent::Analyzed(_)))
            .map(|a| a.event.call_id())
            .filter(|id| stored.contains_key(id) || side.analyzed.contains(id)),
    );
    let stored_analyses = store::lock_analyses(conn, &analyzed).await?;

    let mut working: BTreeMap<Uuid, Merged<CallRow>> = BTreeMap::new();
    let mut lines = Vec::new();
    let mut analyses: BTreeMap<Uuid, Merged<AnalysisRow>> = BTreeMap::new();
    let mut ended_in_batch: BTreeMap<Uuid, usize> = BTreeMap::new();

    for (i, a) in events.iter().enumerate() {
        let (meta, call_id) = (&a.meta, a.event.call_id());
        let tenant = *owner.entry(call_id).or_insert(meta.tenant_id);
        let analysis_tenant = match &a.event {
            VoiceEvent::Analyzed(_) => stored_analyses.get(&call_id).map(|m| m.row.tenant_id),
            _ => None,
        };
        if tenant != meta.tenant_id || analysis_tenant.is_some_and(|t| t != meta.tenant_id) {
            fx.reject(
                meta,
                Rejection::RuleViolation(format!("call {call_id} belongs to another tenant")),
            );
            continue;
        }
        let at = meta.occurred_at;
        if a.event.touches_call_log() {
            let call = working.entry(call_id).or_insert_with(|| {
                stored
                    .get(&call_id)
                    .cloned()
                    .unwrap_or_else(|| Merged::new(CallRow::empty(call_id, meta.tenant_id, at)))
            });
            if !call.admit(meta.event_id) {
                fx.repeated(1);
                continue;
            }
            let row = &mut call.row;
            match &a.event {
                VoiceEvent::Started(s) => row.apply_started(s, at),
                VoiceEvent::Answered { .. } => row.apply_answered(at),
                VoiceEvent::Ended(e) => {
                    row.apply_ended(e, at);
                    ended_in_batch.entry(call_id).or_insert(i);
                }
                _ => unreachable!("touches_call_log covers these"),
            }
        }
        match &a.event {
            VoiceEvent::Transcript(line) => lines.push(store::NewLine {
                tenant_id: meta.tenant_id,
                event_id: meta.event_id,
                occurred_at: at,
                line,
            }),
            VoiceEvent::Analyzed(an) => {
                let analysis = analyses.entry(call_id).or_insert_with(|| {
                    stored_analyses
                        .get(&call_id)
                        .cloned()
                        .unwrap_or_else(|| Merged::new(AnalysisRow::empty(call_id, meta.tenant_id)))
                });
                if analysis.admit(meta.event_id) {
                    analysis.row.apply(an, at);
                } else {
                    fx.repeated(1);
                }
            }
            _ => {}
        }
    }

    let mut deltas = BTreeMap::new();
    let mut inserts = Vec::new();
    let mut updates = Vec::new();
    let mut changed = Vec::new();
    for (id, call) in &working {
        let old = stored.get(id);
        if old == Some(call) {
            continue;
        }
        let old_row = old.map(|o| &o.row);
        // A new event that loses to an earlier one only adds its id.
        if old_row != Some(&call.row) {
            add_change(&mut deltas, old_row, &call.row);
            changed.push(&call.row);
        }
        match old {
            None => inserts.push(call),
            Some(o) => updates.push((call, o.row.created_at)),
        }
    }
    store::insert_calls(conn, &inserts).await?;
    store::update_calls(conn, &updates).await?;
    for row in changed {
        fx.push(live::call_updated(row));
    }

    // The stored lines of calls without a row came with the side rows.
    let probe = sorted_unique(
        lines
            .iter()
            .map(|l| l.line.call_id)
            .filter(|id| stored.contains_key(id)),
    );
    let stored_lines = store::insert_transcripts(conn, &lines, side.lines, &probe).await?;
    fx.repeated(lines.len() - stored_lines.len());
    for l in stored_lines {
        let t = l.line;
        fx.push(live::call_transcript(
            l.tenant_id,
            t.call_id,
            t.seq,
            t.speaker,
            &t.text,
            l.occurred_at,
        ));
    }

    let (mut new_analyses, mut rewritten) = (Vec::new(), Vec::new());
    for (id, analysis) in &analyses {
        let old = stored_analyses.get(id);
        if old == Some(analysis) {
            continue;
        }
        // A re-analysis older than the stored one only adds its id.
        if old.map(|o| &o.row) != Some(&analysis.row) {
            fx.push(live::call_analyzed(&analysis.row));
        }
        match old {
            None => new_analyses.push(analysis),
            Some(_) => rewritten.push(analysis),
        }
    }
    store::insert_analyses(conn, &new_analyses).await?;
    store::update_analyses(conn, &rewritten).await?;

    // The billing chain, in this same transaction: billing's idempotency key
    // makes a call charge once however many `call.ended` it receives.
    let charges: Vec<UsageRequest> = ended_in_batch
        .iter()
        .filter_map(|(call_id, i)| {
            let row = &working[call_id].row;
            let cost = row.cost.unwrap_or(Decimal::ZERO);
            (cost > Decimal::ZERO).then(|| UsageRequest {
                meta: events[*i].meta,
                idempotency_key: billing_key(*call_id),
                feature_key: VOICE_FEATURE_KEY.to_owned(),
                user_id: None,
                items: Vec::new(),
                total_cost: Some(cost),
                metadata: json!({
                    "call_id": call_id,
                    "duration_seconds": row.duration_seconds,
                    "currency": row.currency,
                }),
            })
        })
        .collect();

    // The rows every batch shares (an agent's day, a tenant's wallet) are
    // locked last: from the first of those locks to the commit, the
    // pipeline's other lanes wait for this batch. So everything that needs
    // none of them is done before, the outbox row's bulk included.
    fx.write_outbox_ahead(conn).await?;
    for stats in store::add_stats(conn, &deltas).await? {
        fx.push(live::call_stats(&stats));
    }
    let rejected_before = fx.rejected().len();
    billing::charge(conn, &charges, fx).await?;

    // A `call.ended` whose charge was rejected is dead-lettered: take it
    // back out of its call's row, so its replay is not taken for a repeat.
    let ended_calls: HashMap<Uuid, Uuid> = ended_in_batch
        .iter()
        .map(|(call_id, i)| (events[*i].meta.event_id, *call_id))
        .collect();
    let mut unmerged = Vec::new();
    for (meta, _) in &fx.rejected()[rejected_before..] {
        if let Some(call) = ended_calls
            .get(&meta.event_id)
            .and_then(|id| working.get_mut(id))
        {
            call.forget(meta.event_id);
            unmerged.push(call.row.id);
        }
    }
    let unmerged: Vec<(&Merged<CallRow>, chrono::DateTime<chrono::Utc>)> = unmerged
        .iter()
        .map(|id| (&working[id], working[id].row.created_at))
        .collect();
    store::update_calls(conn, &unmerged).await
}

/// The distinct ids, in order: the order the batch locks their rows in.
fn sorted_unique(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    ids.collect::<BTreeSet<_>>().into_iter().collect()
}
