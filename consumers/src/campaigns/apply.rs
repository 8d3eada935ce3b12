//! Pure logic of a campaign batch: which activities are admitted, what each
//! enrollment's latest activity is, and the per-batch step statistics.

use super::event::{Activity, ActivityStatus, StepType};
use crate::envelope::Rejection;
use crate::pipeline::{Accepted, EventMeta};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Who an enrollment (`campaign_leads` row) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Enrollment {
    pub tenant_id: Uuid,
    pub campaign_id: Uuid,
    pub lead_id: Uuid,
}

/// The activities of a batch that may be written, and the ones rejected.
#[derive(Debug)]
pub struct Admission<'e> {
    pub kept: Vec<&'e Accepted<Activity>>,
    pub rejected: Vec<(EventMeta, Rejection)>,
}

/// The enrollments a batch touches, sorted (the order their rows are locked in).
pub fn enrollment_ids(events: &[Accepted<Activity>]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = events.iter().map(|a| a.event.campaign_lead_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Keeps the activities that agree with their enrollment's owner. The owner
/// is the stored row if there is one, else the batch's first activity of that
/// enrollment: so the outcome is the same whether the owning activity came
/// in an earlier batch or earlier in this one.
pub fn admit<'e>(
    events: &'e [Accepted<Activity>],
    existing: &HashMap<Uuid, Enrollment>,
) -> Admission<'e> {
    let mut owners = existing.clone();
    let mut kept = Vec::with_capacity(events.len());
    let mut rejected = Vec::new();
    for a in events {
        let claimed = Enrollment {
            tenant_id: a.meta.tenant_id,
            campaign_id: a.event.campaign_id,
            lead_id: a.event.lead_id,
        };
        let owner = *owners.entry(a.event.campaign_lead_id).or_insert(claimed);
        match conflict(a.event.campaign_lead_id, &owner, &claimed) {
            None => kept.push(a),
            Some(rejection) => rejected.push((a.meta, rejection)),
        }
    }
    Admission { kept, rejected }
}

fn conflict(id: Uuid, owner: &Enrollment, claimed: &Enrollment) -> Option<Rejection> {
    if owner.tenant_id != claimed.tenant_id {
        // Naming the owner's campaign or lead would leak another tenant's ids
        // into this tenant's dead letters.
        return Some(Rejection::RuleViolation(format!(
            "campaign_lead_id {id} belongs to another tenant"
        )));
    }
    if owner.campaign_id != claimed.campaign_id || owner.lead_id != claimed.lead_id {
        return Some(Rejection::RuleViolation(format!(
            "campaign_lead_id {id} enrolls lead {} in campaign {}, not lead {} in campaign {}",
            owner.lead_id, owner.campaign_id, claimed.lead_id, claimed.campaign_id
        )));
    }
    None
}

/// An activity as stored in `campaign_lead_activities`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredActivity {
    pub id: Uuid,
    pub event_id: Uuid,
    pub tenant_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub activity: Activity,
}

/// The enrollment `status` an activity leads to: the outcomes that end the
/// sequence for the lead (a reply, a bounce, a failure) show as such; every
/// other activity means the lead is still being worked, `active`.
///
/// Only the statuses in [`DERIVED_STATUSES`] are replaced this way: `paused`,
/// `completed` and `unsubscribed` are decisions of the campaign engine or the
/// user, which a step activity (often a late open or click) must not undo.
pub fn enrollment_status(status: ActivityStatus) -> &'static str {
    match status {
        ActivityStatus::Replied => "replied",
        ActivityStatus::Bounced => "bounced",
        ActivityStatus::Failed => "failed",
        ActivityStatus::Sent
        | ActivityStatus::Delivered
        | ActivityStatus::Opened
        | ActivityStatus::Clicked
        | ActivityStatus::Skipped => "active",
    }
}

/// The enrollment statuses that [`enrollment_status`] produces, and so may replace.
pub const DERIVED_STATUSES: [&str; 4] = ["active", "replied", "bounced", "failed"];

/// Whether activity `a` comes after activity `b` in an enrollment's history.
/// Ties of `occurred_at` are broken by `event_id`, an arbitrary but total
/// order, so every arrival order ends on the same latest activity.
pub fn is_later(a: (DateTime<Utc>, Uuid), b: (DateTime<Utc>, Uuid)) -> bool {
    a > b
}

/// What a batch says about one enrollment: its latest activity, and its
/// earliest (an enrollment began no later than its first activity).
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentHead {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub campaign_id: Uuid,
    pub lead_id: Uuid,
    pub step_id: Uuid,
    pub step_type: StepType,
    pub activity_status: ActivityStatus,
    pub status: &'static str,
    pub last_activity_at: DateTime<Utc>,
    pub last_activity_event_id: Uuid,
    pub first_activity_at: DateTime<Utc>,
}

/// One head per enrollment, sorted by enrollment id.
pub fn latest_per_enrollment(stored: &[StoredActivity]) -> Vec<EnrollmentHead> {
    let mut heads: BTreeMap<Uuid, EnrollmentHead> = BTreeMap::new();
    for s in stored {
        let a = &s.activity;
        let head = heads
            .entry(a.campaign_lead_id)
            .or_insert_with(|| EnrollmentHead {
                id: a.campaign_lead_id,
                tenant_id: s.tenant_id,
                campaign_id: a.campaign_id,
                lead_id: a.lead_id,
                step_id: a.step_id,
                step_type: a.step_type,
                activity_status: a.status,
                status: enrollment_status(a.status),
                last_activity_at: s.occurred_at,
                last_activity_event_id: s.event_id,
                first_activity_at: s.occurred_at,
            });
        head.first_activity_at = head.first_activity_at.min(s.occurred_at);
        if is_later(
            (s.occurred_at, s.event_id),
            (head.last_activity_at, head.last_activity_event_id),
        ) {
            head.step_id = a.step_id;
            head.step_type = a.step_type;
            head.activity_status = a.status;
            head.status = enrollment_status(a.status);
            head.last_activity_at = s.occurred_at;
            head.last_activity_event_id = s.event_id;
        }
    }
    heads.into_values().collect()
}

/// A `campaign_step_stats` key. Ordered like the table's primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepStatKey {
    pub tenant_id: Uuid,
    pub campaign_id: Uuid,
    pub step_id: Uuid,
    pub status: &'static str,
}

/// How many activities the batch adds to each step statistic, in key order.
pub fn step_stat_deltas(stored: &[StoredActivity]) -> BTreeMap<StepStatKey, i64> {
    let mut deltas = BTreeMap::new();
    for s in stored {
        let key = StepStatKey {
            tenant_id: s.tenant_id,
            campaign_id: s.activity.campaign_id,
            step_id: s.activity.step_id,
            status: s.activity.status.as_str(),
        };
        *deltas.entry(key).or_insert(0) += 1;
    }
    deltas
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + secs, 0).unwrap()
    }

    fn accepted(
        tenant: Uuid,
        enrollment: Enrollment,
        id: Uuid,
        record: usize,
    ) -> Accepted<Activity> {
        Accepted {
            meta: EventMeta {
                event_id: Uuid::new_v4(),
                tenant_id: tenant,
                occurred_at: at(0),
                record,
            },
            event: Activity {
                campaign_id: enrollment.campaign_id,
                campaign_lead_id: id,
                lead_id: enrollment.lead_id,
                step_id: Uuid::new_v4(),
                step_type: StepType::Email,
                status: ActivityStatus::Sent,
                error: None,
            },
        }
    }

    fn enrollment(tenant: Uuid) -> Enrollment {
        Enrollment {
            tenant_id: tenant,
            campaign_id: Uuid::new_v4(),
            lead_id: Uuid::new_v4(),
        }
    }

    fn stored(
        enrollment_id: Uuid,
        step: Uuid,
        status: ActivityStatus,
        occurred: i64,
        event_id: Uuid,
    ) -> StoredActivity {
        StoredActivity {
            id: Uuid::new_v4(),
            event_id,
            tenant_id: Uuid::nil(),
            occurred_at: at(occurred),
            created_at: at(1000),
            activity: Activity {
                campaign_id: Uuid::nil(),
                campaign_lead_id: enrollment_id,
                lead_id: Uuid::nil(),
                step_id: step,
                step_type: StepType::Email,
                status,
                error: None,
            },
        }
    }

    #[test]
    fn an_activity_for_another_tenants_enrollment_is_rejected_without_naming_its_ids() {
        let (mine, theirs) = (Uuid::new_v4(), Uuid::new_v4());
        let id = Uuid::new_v4();
        let owner = enrollment(theirs);
        let existing = HashMap::from([(id, owner)]);
        let events = [accepted(mine, owner, id, 0)];
        let adm = admit(&events, &existing);
        assert!(adm.kept.is_empty());
        let (_, rejection) = &adm.rejected[0];
        assert_eq!(rejection.kind(), "rule_violation");
        assert!(rejection.to_string().contains("another tenant"));
        assert!(!rejection
            .to_string()
            .contains(&owner.campaign_id.to_string()));
    }

    #[test]
    fn an_activity_naming_another_campaign_or_lead_of_the_enrollment_is_rejected() {
        let tenant = Uuid::new_v4();
        let id = Uuid::new_v4();
        let owner = enrollment(tenant);
        let existing = HashMap::from([(id, owner)]);
        let other_campaign = Enrollment {
            campaign_id: Uuid::new_v4(),
            ..owner
        };
        let other_lead = Enrollment {
            lead_id: Uuid::new_v4(),
            ..owner
        };
        let events = [
            accepted(tenant, owner, id, 0),
            accepted(tenant, other_campaign, id, 1),
            accepted(tenant, other_lead, id, 2),
        ];
        let adm = admit(&events, &existing);
        assert_eq!(adm.kept.len(), 1);
        assert_eq!(adm.kept[0].meta.record, 0);
        assert_eq!(adm.rejected.len(), 2);
    }

    #[test]
    fn within_a_batch_the_first_activity_of_a_new_enrollment_owns_it() {
        let id = Uuid::new_v4();
        let a = enrollment(Uuid::new_v4());
        let b = enrollment(Uuid::new_v4());
        let events = [
            accepted(a.tenant_id, a, id, 0),
            accepted(b.tenant_id, b, id, 1),
            accepted(a.tenant_id, a, id, 2),
        ];
        let adm = admit(&events, &HashMap::new());
        let kept: Vec<usize> = adm.kept.iter().map(|k| k.meta.record).collect();
        assert_eq!(kept, [0, 2]);
        assert_eq!(adm.rejected[0].0.record, 1);
    }

    #[test]
    fn enrollment_status_follows_terminal_outcomes_else_active() {
        assert_eq!(enrollment_status(ActivityStatus::Replied), "replied");
        assert_eq!(enrollment_status(ActivityStatus::Bounced), "bounced");
        assert_eq!(enrollment_status(ActivityStatus::Failed), "failed");
        for s in [
            ActivityStatus::Sent,
            ActivityStatus::Delivered,
            ActivityStatus::Opened,
            ActivityStatus::Clicked,
            ActivityStatus::Skipped,
        ] {
            assert_eq!(enrollment_status(s), "active");
        }
    }

    #[test]
    fn every_status_an_activity_leads_to_is_one_it_may_replace() {
        let all = [
            ActivityStatus::Sent,
            ActivityStatus::Delivered,
            ActivityStatus::Opened,
            ActivityStatus::Clicked,
            ActivityStatus::Replied,
            ActivityStatus::Bounced,
            ActivityStatus::Failed,
            ActivityStatus::Skipped,
        ];
        for s in all {
            assert!(DERIVED_STATUSES.contains(&enrollment_status(s)), "{s:?}");
        }
    }

    #[test]
    fn the_latest_activity_wins_whatever_the_order_with_ties_broken_by_event_id() {
        let id = Uuid::new_v4();
        let (s1, s2, s3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (lo, hi) = {
            let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
            (x.min(y), x.max(y))
        };
        let batch = vec![
            stored(id, s1, ActivityStatus::Sent, 10, Uuid::new_v4()),
            stored(id, s2, ActivityStatus::Replied, 30, lo),
            stored(id, s3, ActivityStatus::Opened, 30, hi),
            stored(id, s1, ActivityStatus::Delivered, 5, Uuid::new_v4()),
        ];
        let mut reversed = batch.clone();
        reversed.reverse();
        for b in [batch, reversed] {
            let heads = latest_per_enrollment(&b);
            assert_eq!(heads.len(), 1);
            let h = &heads[0];
            assert_eq!(h.step_id, s3);
            assert_eq!(h.activity_status, ActivityStatus::Opened);
            assert_eq!(h.status, "active");
            assert_eq!(h.last_activity_at, at(30));
            assert_eq!(h.last_activity_event_id, hi);
            assert_eq!(h.first_activity_at, at(5));
        }
    }

    #[test]
    fn heads_come_sorted_by_enrollment_id() {
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        let batch: Vec<StoredActivity> = ids
            .iter()
            .map(|id| stored(*id, Uuid::nil(), ActivityStatus::Sent, 0, Uuid::new_v4()))
            .collect();
        let heads: Vec<Uuid> = latest_per_enrollment(&batch).iter().map(|h| h.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(heads, sorted);
    }

    #[test]
    fn step_stats_are_summed_per_key_and_sorted() {
        let (e, step_a, step_b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let batch = vec![
            stored(e, step_b, ActivityStatus::Sent, 0, Uuid::new_v4()),
            stored(e, step_a, ActivityStatus::Sent, 0, Uuid::new_v4()),
            stored(e, step_a, ActivityStatus::Opened, 0, Uuid::new_v4()),
            stored(e, step_a, ActivityStatus::Sent, 0, Uuid::new_v4()),
        ];
        let deltas = step_stat_deltas(&batch);
        assert_eq!(deltas.len(), 3);
        let keys: Vec<&StepStatKey> = deltas.keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let sent_a = StepStatKey {
            tenant_id: Uuid::nil(),
            campaign_id: Uuid::nil(),
            step_id: step_a,
            status: "sent",
        };
        assert_eq!(deltas[&sent_a], 2);
        assert_eq!(deltas.values().sum::<i64>(), 4);
    }

    #[test]
    fn enrollment_ids_are_sorted_and_unique() {
        let t = Uuid::new_v4();
        let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
        let en = enrollment(t);
        let events = [
            accepted(t, en, y, 0),
            accepted(t, en, x, 1),
            accepted(t, en, y, 2),
        ];
        assert_eq!(enrollment_ids(&events), [x.min(y), x.max(y)]);
    }
}
