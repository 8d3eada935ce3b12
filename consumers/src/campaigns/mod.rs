//! Campaign step activity (contract §4), from `lad.campaign.activities.v1`.
//!
//! Per batch: lock the enrollments it touches, reject activities that
//! contradict their enrollment's owner, store each activity once, move each
//! enrollment (`campaign_leads`) to its latest activity, add the step counts
//! (`campaign_step_stats`), and push both on the campaign's channel.
//!
//! The enrollment's `status` follows its latest activity: `replied`,
//! `bounced` and `failed` show as such, every other activity as `active`;
//! `paused`, `completed` and `unsubscribed` (set by the campaign engine or a
//! user) are never overwritten by an activity. See [`apply::enrollment_status`].

pub mod apply;
pub mod event;
pub mod live;
pub mod store;

use crate::envelope::{Envelope, Rejection};
use crate::pipeline::{Accepted, Domain, Effects};
use event::Activity;
use sqlx::PgConnection;
use std::future::Future;

#[derive(Debug, Default, Clone, Copy)]
pub struct CampaignsDomain;

impl Domain for CampaignsDomain {
    type Event = Activity;

    fn decode(&self, envelope: &Envelope) -> Result<Activity, Rejection> {
        event::decode(envelope)
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [Accepted<Activity>],
        fx: &'a mut Effects,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'a {
        apply_batch(conn, events, fx)
    }

    /// An activity is stored once per `event_id`, and the enrollment, the
    /// step counts and the pushes follow only from the rows inserted.
    fn deduped_by_own_row(&self, _event: &Activity) -> bool {
        true
    }
}

async fn apply_batch(
    conn: &mut PgConnection,
    events: &[Accepted<Activity>],
    fx: &mut Effects,
) -> Result<(), sqlx::Error> {
    let owners = store::lock_enrollments(conn, &apply::enrollment_ids(events)).await?;
    let admission = apply::admit(events, &owners);
    for (meta, rejection) in admission.rejected {
        fx.reject(&meta, rejection);
    }
    let stored = store::insert_activities(conn, &admission.kept, fx.now).await?;
    fx.repeated(admission.kept.len() - stored.len());
    if stored.is_empty() {
        return Ok(());
    }
    let heads = apply::latest_per_enrollment(&stored);
    store::upsert_enrollments(conn, &heads, fx.now).await?;
    let stats = store::add_step_stats(conn, &apply::step_stat_deltas(&stored), fx.now).await?;
    for s in &stored {
        fx.push(live::activity(s));
    }
    for row in &stats {
        fx.push(live::stats(row));
    }
    Ok(())
}
