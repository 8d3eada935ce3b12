//! `campaign.activity` (contract §4): the one event type of
//! `lad.campaign.activities.v1`, and its pure decoding.

use crate::envelope::{Envelope, Rejection};
use std::borrow::Cow;
use uuid::Uuid;

pub const ACTIVITY: &str = "campaign.activity";

/// The kind of campaign step an activity belongs to. The spellings are the
/// contract's and the `step_type` CHECK of `campaign_lead_activities`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepType {
    Email,
    LinkedinConnect,
    LinkedinMessage,
    VoiceCall,
    Delay,
    Other,
}

impl StepType {
    pub const ALL: [&'static str; 6] = [
        "email",
        "linkedin_connect",
        "linkedin_message",
        "voice_call",
        "delay",
        "other",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepType::Email => "email",
            StepType::LinkedinConnect => "linkedin_connect",
            StepType::LinkedinMessage => "linkedin_message",
            StepType::VoiceCall => "voice_call",
            StepType::Delay => "delay",
            StepType::Other => "other",
        }
    }

    fn parse(s: &str) -> Option<StepType> {
        Some(match s {
            "email" => StepType::Email,
            "linkedin_connect" => StepType::LinkedinConnect,
            "linkedin_message" => StepType::LinkedinMessage,
            "voice_call" => StepType::VoiceCall,
            "delay" => StepType::Delay,
            "other" => StepType::Other,
            _ => return None,
        })
    }
}

/// What happened at the step. The spellings are the contract's and the
/// `status` CHECK of `campaign_lead_activities`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActivityStatus {
    Sent,
    Delivered,
    Opened,
    Clicked,
    Replied,
    Bounced,
    Failed,
    Skipped,
}

impl ActivityStatus {
    pub const ALL: [&'static str; 8] = [
        "sent",
        "delivered",
        "opened",
        "clicked",
        "replied",
        "bounced",
        "failed",
        "skipped",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActivityStatus::Sent => "sent",
            ActivityStatus::Delivered => "delivered",
            ActivityStatus::Opened => "opened",
            ActivityStatus::Clicked => "clicked",
            ActivityStatus::Replied => "replied",
            ActivityStatus::Bounced => "bounced",
            ActivityStatus::Failed => "failed",
            ActivityStatus::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Option<ActivityStatus> {
        Some(match s {
            "sent" => ActivityStatus::Sent,
            "delivered" => ActivityStatus::Delivered,
            "opened" => ActivityStatus::Opened,
            "clicked" => ActivityStatus::Clicked,
            "replied" => ActivityStatus::Replied,
            "bounced" => ActivityStatus::Bounced,
            "failed" => ActivityStatus::Failed,
            "skipped" => ActivityStatus::Skipped,
            _ => return None,
        })
    }
}

/// One step activity of one enrollment (`campaign_lead_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub campaign_id: Uuid,
    pub campaign_lead_id: Uuid,
    pub lead_id: Uuid,
    pub step_id: Uuid,
    pub step_type: StepType,
    pub status: ActivityStatus,
    pub error: Option<String>,
}

/// The activity of an envelope read from the campaign topic, or why it is rejected.
pub fn decode(envelope: &Envelope) -> Result<Activity, Rejection> {
    if envelope.event_type != ACTIVITY {
        return Err(Rejection::UnknownType(envelope.event_type.clone()));
    }
    let f = envelope.fields();
    let step_type = f.one_of("step_type", &StepType::ALL)?;
    let status = f.one_of("status", &ActivityStatus::ALL)?;
    Ok(Activity {
        campaign_id: f.uuid("campaign_id")?,
        campaign_lead_id: f.uuid("campaign_lead_id")?,
        lead_id: f.uuid("lead_id")?,
        step_id: f.uuid("step_id")?,
        step_type: StepType::parse(step_type).expect("one_of returned an allowed spelling"),
        status: ActivityStatus::parse(status).expect("one_of returned an allowed spelling"),
        error: f.opt_string("error")?.map(Cow::into_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::test_envelope as envelope;
    use serde_json::{json, Value};

    fn data() -> Value {
        json!({
            "campaign_id": Uuid::new_v4(),
            "campaign_lead_id": Uuid::new_v4(),
            "lead_id": Uuid::new_v4(),
            "step_id": Uuid::new_v4(),
            "step_type": "linkedin_connect",
            "status": "opened",
        })
    }

    #[test]
    fn a_valid_activity_decodes_with_its_enums() {
        let d = data();
        let a = decode(&envelope(ACTIVITY, d.clone())).unwrap();
        assert_eq!(a.step_type, StepType::LinkedinConnect);
        assert_eq!(a.status, ActivityStatus::Opened);
        assert_eq!(a.error, None);
        assert_eq!(a.campaign_lead_id.to_string(), d["campaign_lead_id"]);
    }

    #[test]
    fn the_error_is_optional_but_must_be_a_string() {
        let mut d = data();
        d["error"] = json!("mailbox full");
        assert_eq!(
            decode(&envelope(ACTIVITY, d.clone()))
                .unwrap()
                .error
                .as_deref(),
            Some("mailbox full")
        );
        d["error"] = json!(null);
        assert_eq!(decode(&envelope(ACTIVITY, d.clone())).unwrap().error, None);
        d["error"] = json!(42);
        assert_eq!(
            decode(&envelope(ACTIVITY, d)).unwrap_err().kind(),
            "invalid_data"
        );
    }

    #[test]
    fn every_spelling_of_the_enums_round_trips() {
        for s in StepType::ALL {
            assert_eq!(StepType::parse(s).unwrap().as_str(), s);
        }
        for s in ActivityStatus::ALL {
            assert_eq!(ActivityStatus::parse(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn unknown_enum_values_and_missing_ids_are_invalid_data() {
        for (field, value) in [
            ("step_type", json!("fax")),
            ("status", json!("SENT")),
            ("campaign_id", json!("nope")),
            ("step_id", Value::Null),
            ("lead_id", json!(7)),
        ] {
            let mut d = data();
            d[field] = value;
            let err = decode(&envelope(ACTIVITY, d)).unwrap_err();
            assert_eq!(err.kind(), "invalid_data", "{field}");
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn another_type_on_the_campaign_topic_is_unknown() {
        let err = decode(&envelope("call.ended", data())).unwrap_err();
        assert_eq!(err, Rejection::UnknownType("call.ended".into()));
    }
}
