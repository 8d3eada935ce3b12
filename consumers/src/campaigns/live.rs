//! The messages a campaign batch pushes on `tenant:{tenant_id}:campaign:{campaign_id}`.

use super::apply::StoredActivity;
use super::store::StepStatRow;
use crate::live::{Channel, LiveUpdate};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

pub const ACTIVITY: &str = "campaign.activity";
pub const STATS: &str = "campaign.stats";

// Members in name order, as the maps these structs replaced wrote them
// (see `LiveUpdate::new`).

/// The stored activity, as its `campaign_lead_activities` row reads.
pub fn activity(s: &StoredActivity) -> LiveUpdate {
    #[derive(Serialize)]
    struct Row<'a> {
        campaign_id: Uuid,
        campaign_lead_id: Uuid,
        #[serde(with = "crate::instant::rfc3339")]
        created_at: DateTime<Utc>,
        error: Option<&'a str>,
        event_id: Uuid,
        id: Uuid,
        lead_id: Uuid,
        #[serde(with = "crate::instant::rfc3339")]
        occurred_at: DateTime<Utc>,
        status: &'static str,
        step_id: Uuid,
        step_type: &'static str,
        tenant_id: Uuid,
    }
    let a = &s.activity;
    let data = Row {
        campaign_id: a.campaign_id,
        campaign_lead_id: a.campaign_lead_id,
        created_at: s.created_at,
        error: a.error.as_deref(),
        event_id: s.event_id,
        id: s.id,
        lead_id: a.lead_id,
        occurred_at: s.occurred_at,
        status: a.status.as_str(),
        step_id: a.step_id,
        step_type: a.step_type.as_str(),
        tenant_id: s.tenant_id,
    };
    let channel = Channel::Campaign {
        tenant_id: s.tenant_id,
        campaign_id: a.campaign_id,
    };
    LiveUpdate::new(channel, ACTIVITY, data)
}

/// The step statistic as it stands after the batch (not the batch's delta),
/// so a client that missed messages is right again with the next one.
pub fn stats(r: &StepStatRow) -> LiveUpdate {
    #[derive(Serialize)]
    struct Stat<'a> {
        campaign_id: Uuid,
        count: i64,
        status: &'a str,
        step_id: Uuid,
        tenant_id: Uuid,
        #[serde(with = "crate::instant::rfc3339")]
        updated_at: DateTime<Utc>,
    }
    let data = Stat {
        campaign_id: r.campaign_id,
        count: r.count,
        status: &r.status,
        step_id: r.step_id,
        tenant_id: r.tenant_id,
        updated_at: r.updated_at,
    };
    let channel = Channel::Campaign {
        tenant_id: r.tenant_id,
        campaign_id: r.campaign_id,
    };
    LiveUpdate::new(channel, STATS, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaigns::event::{Activity, ActivityStatus, StepType};
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn an_activity_goes_to_its_campaigns_channel_with_the_stored_row() {
        let (tenant, campaign) = (Uuid::new_v4(), Uuid::new_v4());
        let s = StoredActivity {
            id: Uuid::new_v4(),
            event_id: Uuid::new_v4(),
            tenant_id: tenant,
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap(),
            created_at: Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 1).unwrap(),
            activity: Activity {
                campaign_id: campaign,
                campaign_lead_id: Uuid::new_v4(),
                lead_id: Uuid::new_v4(),
                step_id: Uuid::new_v4(),
                step_type: StepType::VoiceCall,
                status: ActivityStatus::Bounced,
                error: Some("no route".into()),
            },
        };
        let u = activity(&s);
        assert_eq!(u.channel, format!("tenant:{tenant}:campaign:{campaign}"));
        assert_eq!(u.tenant_id, tenant);
        assert_eq!(u.kind, "campaign.activity");
        let data = u.data_value();
        assert_eq!(data["step_type"], "voice_call");
        assert_eq!(data["status"], "bounced");
        assert_eq!(data["error"], "no route");
        assert_eq!(data["id"], s.id.to_string());
        assert_eq!(data["occurred_at"], "2026-11-25T10:00:00Z");
    }

    #[test]
    fn a_stats_row_goes_to_its_campaigns_channel_with_the_total_count() {
        let r = StepStatRow {
            tenant_id: Uuid::new_v4(),
            campaign_id: Uuid::new_v4(),
            step_id: Uuid::new_v4(),
            status: "sent".into(),
            count: 7,
            updated_at: Utc::now(),
        };
        let u = stats(&r);
        assert_eq!(u.kind, "campaign.stats");
        assert_eq!(
            u.channel,
            format!("tenant:{}:campaign:{}", r.tenant_id, r.campaign_id)
        );
        let data = u.data_value();
        assert_eq!(data["count"], 7);
        assert_eq!(data["status"], "sent");
        assert_eq!(data["step_id"], r.step_id.to_string());
    }

    #[test]
    fn messages_keep_the_text_their_maps_wrote() {
        let s = StoredActivity {
            id: Uuid::new_v4(),
            event_id: Uuid::new_v4(),
            tenant_id: Uuid::new_v4(),
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap(),
            created_at: Utc::now(),
            activity: Activity {
                campaign_id: Uuid::new_v4(),
                campaign_lead_id: Uuid::new_v4(),
                lead_id: Uuid::new_v4(),
                step_id: Uuid::new_v4(),
                step_type: StepType::LinkedinMessage,
                status: ActivityStatus::Failed,
                error: Some("\"quoted\" reason".into()),
            },
        };
        let a = &s.activity;
        let map = json!({
            "id": s.id,
            "event_id": s.event_id,
            "tenant_id": s.tenant_id,
            "campaign_id": a.campaign_id,
            "campaign_lead_id": a.campaign_lead_id,
            "lead_id": a.lead_id,
            "step_id": a.step_id,
            "step_type": a.step_type.as_str(),
            "status": a.status.as_str(),
            "error": a.error,
            "occurred_at": s.occurred_at,
            "created_at": s.created_at,
        });
        assert_eq!(activity(&s).data.get(), map.to_string());

        let r = StepStatRow {
            tenant_id: s.tenant_id,
            campaign_id: a.campaign_id,
            step_id: a.step_id,
            status: "failed".into(),
            count: 12,
            updated_at: Utc::now(),
        };
        let map = json!({
            "tenant_id": r.tenant_id,
            "campaign_id": r.campaign_id,
            "step_id": r.step_id,
            "status": r.status,
            "count": r.count,
            "updated_at": r.updated_at,
        });
        assert_eq!(stats(&r).data.get(), map.to_string());
        assert_eq!(serde_json::to_value(&r).unwrap(), map);
    }
}
