//! The pure part of the voice pipeline: how events merge into a call's row,
//! and how a row contributes to `voice_call_stats_daily`.
//!
//! Order independence comes from two choices. Each lifecycle step keeps the
//! event with the earliest `occurred_at` (so duplicates under new event ids
//! and late arrivals converge), and the status is *derived* from which steps
//! are present rather than overwritten by the last one applied. The daily
//! aggregate is then `contribution(new row) - contribution(old row)`, which
//! is right whatever order the steps came in and never counts a step twice.

use super::event::{Analysis, Ended, Started};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::AddAssign;
use uuid::Uuid;

/// A `voice_call_logs` row as the hub writes it (and pushes in `call.updated`).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct CallRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub agent_id: Option<Uuid>,
    pub lead_id: Option<Uuid>,
    pub batch_id: Option<Uuid>,
    pub initiated_by_user_id: Option<Uuid>,
    pub direction: Option<String>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub status: String,
    #[serde(with = "crate::instant::rfc3339_opt")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::instant::rfc3339_opt")]
    pub answered_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::instant::rfc3339_opt")]
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i32>,
    pub cost: Option<Decimal>,
    pub currency: String,
    pub recording_url: Option<String>,
    /// The partition key: the earliest instant any event of the call names.
    #[serde(with = "crate::instant::rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl CallRow {
    pub fn empty(id: Uuid, tenant_id: Uuid, first_seen: DateTime<Utc>) -> CallRow {
        CallRow {
            id,
            tenant_id,
            agent_id: None,
            lead_id: None,
            batch_id: None,
            initiated_by_user_id: None,
            direction: None,
            from_number: None,
            to_number: None,
            status: "initiated".to_owned(),
            started_at: None,
            answered_at: None,
            ended_at: None,
            duration_seconds: None,
            cost: None,
            currency: "USD".to_owned(),
            recording_url: None,
            created_at: first_seen,
        }
    }

    /// True when `at` should replace the step currently recorded at `current`.
    fn earlier(at: DateTime<Utc>, current: Option<DateTime<Utc>>) -> bool {
        current.is_none_or(|c| at < c)
    }

    fn touch(&mut self, at: DateTime<Utc>) {
        self.created_at = self.created_at.min(at);
    }

    pub fn apply_started(&mut self, s: &Started, at: DateTime<Utc>) {
        self.touch(at);
        if Self::earlier(at, self.started_at) {
            self.started_at = Some(at);
            self.agent_id = Some(s.agent_id);
            self.lead_id = s.lead_id;
            self.batch_id = s.batch_id;
            self.initiated_by_user_id = s.initiated_by_user_id;
            self.direction = Some(s.direction.to_owned());
            self.from_number = Some(s.from_number.clone());
            self.to_number = Some(s.to_number.clone());
        }
        self.derive_status();
    }

    pub fn apply_answered(&mut self, at: DateTime<Utc>) {
        self.touch(at);
        if Self::earlier(at, self.answered_at) {
            self.answered_at = Some(at);
        }
        self.derive_status();
    }

    pub fn apply_ended(&mut self, e: &Ended, at: DateTime<Utc>) {
        self.touch(at);
        if Self::earlier(at, self.ended_at) {
            self.ended_at = Some(at);
            self.status = e.status.to_owned();
            self.duration_seconds = Some(e.duration_seconds);
            self.cost = Some(e.cost);
            self.currency = e.currency.clone();
            self.recording_url = e.recording_url.clone();
        }
        self.derive_status();
    }

    /// The end status (kept from the ended event) wins; before it, whether
    /// the call was answered.
    fn derive_status(&mut self) {
        if self.ended_at.is_some() {
            return;
        }
        self.status = if self.answered_at.is_some() {
            "in_progress"
        } else {
            "initiated"
        }
        .to_owned();
    }

    /// What this row adds to the daily aggregate. Nothing until the agent is
    /// known: a `call.ended` before its `call.started` counts once both came.
    pub fn contribution(&self) -> BTreeMap<StatsKey, StatsDelta> {
        let mut out: BTreeMap<StatsKey, StatsDelta> = BTreeMap::new();
        let Some(agent_id) = self.agent_id else {
            return out;
        };
        let key = |at: DateTime<Utc>| StatsKey {
            tenant_id: self.tenant_id,
            day: at.date_naive(),
            agent_id,
        };
        if let Some(at) = self.started_at {
            out.entry(key(at)).or_default().calls_started += 1;
        }
        if let Some(at) = self.answered_at {
            out.entry(key(at)).or_default().calls_answered += 1;
        }
        if let Some(at) = self.ended_at {
            let d = out.entry(key(at)).or_default();
            if self.status == "completed" {
                d.calls_completed += 1;
            } else {
                d.calls_failed += 1;
            }
            d.total_duration_seconds += i64::from(self.duration_seconds.unwrap_or(0));
            d.total_cost += self.cost.unwrap_or_default();
        }
        out
    }
}

/// A row with the ids of the events merged into it so far. The row is what
/// dedupes the events that merge into it (a call's `call.started`,
/// `call.answered` and `call.ended`; its `call.analyzed`; migration 0005),
/// exactly and at any age: a repeat finds its id in the row the batch has
/// locked anyway, so no lookup elsewhere and no row of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged<R> {
    pub row: R,
    pub applied_event_ids: Vec<Uuid>,
}

impl<R> Merged<R> {
    pub fn new(row: R) -> Merged<R> {
        Merged {
            row,
            applied_event_ids: Vec::new(),
        }
    }

    /// Records `event_id` as merged; false when it already was (a repeat,
    /// which must change nothing). A row gets a handful of events, so a
    /// scan beats a set.
    pub fn admit(&mut self, event_id: Uuid) -> bool {
        if self.applied_event_ids.contains(&event_id) {
            return false;
        }
        self.applied_event_ids.push(event_id);
        true
    }

    /// Forgets an event whose effects were rejected after its merge (the
    /// charge of a `call.ended`), so that the same record, replayed once the
    /// cause is fixed, is applied rather than taken for a repeat.
    pub fn forget(&mut self, event_id: Uuid) {
        self.applied_event_ids.retain(|id| *id != event_id);
    }
}

impl<'r, R: sqlx::FromRow<'r, sqlx::postgres::PgRow>> sqlx::FromRow<'r, sqlx::postgres::PgRow>
    for Merged<R>
{
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(Merged {
            row: R::from_row(row)?,
            applied_event_ids: row.try_get("applied_event_ids")?,
        })
    }
}

/// A `voice_call_analysis` row, as pushed in `call.analyzed`.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AnalysisRow {
    pub call_log_id: Uuid,
    pub tenant_id: Uuid,
    pub sentiment: Option<String>,
    pub lead_category: Option<String>,
    pub summary: Option<String>,
    #[serde(with = "crate::instant::rfc3339_opt")]
    pub analyzed_at: Option<DateTime<Utc>>,
}

impl AnalysisRow {
    pub fn empty(call_id: Uuid, tenant_id: Uuid) -> AnalysisRow {
        AnalysisRow {
            call_log_id: call_id,
            tenant_id,
            sentiment: None,
            lead_category: None,
            summary: None,
            analyzed_at: None,
        }
    }

    /// Keeps the analysis with the latest `analyzed_at` (the first of equal
    /// ones), so re-analyses converge in any order.
    pub fn apply(&mut self, a: &Analysis, at: DateTime<Utc>) {
        if self.analyzed_at.is_some_and(|current| at <= current) {
            return;
        }
        self.sentiment = Some(a.sentiment.to_owned());
        self.lead_category = Some(a.lead_category.clone());
        self.summary = a.summary.clone();
        self.analyzed_at = Some(at);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatsKey {
    pub tenant_id: Uuid,
    pub day: NaiveDate,
    pub agent_id: Uuid,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StatsDelta {
    pub calls_started: i64,
    pub calls_answered: i64,
    pub calls_completed: i64,
    pub calls_failed: i64,
    pub total_duration_seconds: i64,
    pub total_cost: Decimal,
}

impl StatsDelta {
    pub fn is_zero(&self) -> bool {
        *self == StatsDelta::default()
    }

    fn negate(self) -> StatsDelta {
        StatsDelta {
            calls_started: -self.calls_started,
            calls_answered: -self.calls_answered,
            calls_completed: -self.calls_completed,
            calls_failed: -self.calls_failed,
            total_duration_seconds: -self.total_duration_seconds,
            total_cost: -self.total_cost,
        }
    }
}

impl AddAssign for StatsDelta {
    fn add_assign(&mut self, o: StatsDelta) {
        self.calls_started += o.calls_started;
        self.calls_answered += o.calls_answered;
        self.calls_completed += o.calls_completed;
        self.calls_failed += o.calls_failed;
        self.total_duration_seconds += o.total_duration_seconds;
        self.total_cost += o.total_cost;
    }
}

/// Adds `new - old` into a batch's pre-summed deltas.
pub fn add_change(into: &mut BTreeMap<StatsKey, StatsDelta>, old: Option<&CallRow>, new: &CallRow) {
    for (k, d) in new.contribution() {
        *into.entry(k).or_default() += d;
    }
    if let Some(old) = old {
        for (k, d) in old.contribution() {
            *into.entry(k).or_default() += d.negate();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, h, 0, 0).unwrap()
    }

    fn started(agent: Uuid) -> Started {
        Started {
            call_id: Uuid::nil(),
            agent_id: agent,
            lead_id: None,
            direction: "outbound",
            from_number: "+1".into(),
            to_number: "+2".into(),
            batch_id: None,
            initiated_by_user_id: None,
        }
    }

    fn ended(status: &'static str, cost: &str) -> Ended {
        Ended {
            call_id: Uuid::nil(),
            status,
            duration_seconds: 30,
            cost: cost.parse().unwrap(),
            currency: "USD".into(),
            recording_url: None,
        }
    }

    enum Step {
        S,
        A,
        E,
    }

    fn run(order: &[Step], agent: Uuid) -> CallRow {
        let mut row: Option<CallRow> = None;
        for step in order {
            let (t, r) = match step {
                Step::S => (at(10), &mut row),
                Step::A => (at(11), &mut row),
                Step::E => (at(12), &mut row),
            };
            let call = r.get_or_insert_with(|| CallRow::empty(Uuid::nil(), Uuid::nil(), t));
            match step {
                Step::S => call.apply_started(&started(agent), t),
                Step::A => call.apply_answered(t),
                Step::E => call.apply_ended(&ended("completed", "1.50"), t),
            }
        }
        row.unwrap()
    }

    #[test]
    fn every_arrival_order_converges_to_the_same_row() {
        let agent = Uuid::new_v4();
        let reference = run(&[Step::S, Step::A, Step::E], agent);
        for order in [
            [Step::E, Step::A, Step::S],
            [Step::A, Step::E, Step::S],
            [Step::E, Step::S, Step::A],
        ] {
            assert_eq!(run(&order, agent), reference);
        }
        assert_eq!(reference.status, "completed");
        assert_eq!(reference.created_at, at(10));
    }

    #[test]
    fn status_is_derived_until_the_call_ends() {
        let mut row = CallRow::empty(Uuid::nil(), Uuid::nil(), at(10));
        row.apply_started(&started(Uuid::new_v4()), at(10));
        assert_eq!(row.status, "initiated");
        row.apply_answered(at(11));
        assert_eq!(row.status, "in_progress");
        row.apply_ended(&ended("busy", "0"), at(12));
        assert_eq!(row.status, "busy");
        row.apply_answered(at(9));
        assert_eq!(
            row.status, "busy",
            "a late answer does not reopen an ended call"
        );
    }

    #[test]
    fn ended_before_started_counts_only_once_the_agent_is_known() {
        let agent = Uuid::new_v4();
        let mut row = CallRow::empty(Uuid::nil(), Uuid::nil(), at(12));
        row.apply_ended(&ended("failed", "2.25"), at(12));
        assert!(row.contribution().is_empty());

        let before = row.clone();
        row.apply_started(&started(agent), at(10));
        let mut deltas = BTreeMap::new();
        add_change(&mut deltas, Some(&before), &row);
        let d = deltas.values().next().unwrap();
        assert_eq!(
            (d.calls_started, d.calls_failed, d.total_duration_seconds),
            (1, 1, 30)
        );
        assert_eq!(d.total_cost, "2.25".parse::<Decimal>().unwrap());
    }

    #[test]
    fn a_repeated_step_under_a_new_event_id_changes_nothing() {
        let mut row = CallRow::empty(Uuid::nil(), Uuid::nil(), at(10));
        row.apply_started(&started(Uuid::new_v4()), at(10));
        row.apply_ended(&ended("completed", "1"), at(12));
        let before = row.clone();
        row.apply_ended(&ended("completed", "1"), at(13));
        let mut deltas = BTreeMap::new();
        add_change(&mut deltas, Some(&before), &row);
        assert!(deltas.values().all(StatsDelta::is_zero));
    }

    #[test]
    fn a_row_admits_each_event_id_once() {
        let mut call = Merged::new(CallRow::empty(Uuid::nil(), Uuid::nil(), at(10)));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(call.admit(a));
        assert!(call.admit(b));
        assert!(!call.admit(a), "a repeat, however late");
        call.forget(a);
        assert!(
            call.admit(a),
            "forgotten after a rejection, applied on replay"
        );
        assert_eq!(call.applied_event_ids, vec![b, a]);
    }

    #[test]
    fn the_latest_analysis_wins_in_any_order() {
        let analysis = |sentiment: &'static str| Analysis {
            call_id: Uuid::nil(),
            sentiment,
            lead_category: "warm".into(),
            summary: None,
        };
        let mut forward = AnalysisRow::empty(Uuid::nil(), Uuid::nil());
        forward.apply(&analysis("negative"), at(10));
        forward.apply(&analysis("positive"), at(11));
        let mut backward = AnalysisRow::empty(Uuid::nil(), Uuid::nil());
        backward.apply(&analysis("positive"), at(11));
        backward.apply(&analysis("negative"), at(10));
        assert_eq!(forward, backward);
        assert_eq!(forward.sentiment.as_deref(), Some("positive"));
        assert_eq!(forward.analyzed_at, Some(at(11)));
    }

    #[test]
    fn steps_count_on_their_own_utc_days() {
        let agent = Uuid::new_v4();
        let mut row = CallRow::empty(Uuid::nil(), Uuid::nil(), at(23));
        row.apply_started(&started(agent), at(23));
        let next_day = at(23) + chrono::Duration::hours(2);
        row.apply_ended(&ended("completed", "1"), next_day);
        let c = row.contribution();
        assert_eq!(c.len(), 2);
        let days: Vec<NaiveDate> = c.keys().map(|k| k.day).collect();
        assert_eq!(days, vec![at(23).date_naive(), next_day.date_naive()]);
    }
}
