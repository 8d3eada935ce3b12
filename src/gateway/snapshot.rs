//! The `snapshot` of a `subscribed` frame: the channel's current state as
//! committed in Postgres (contract §7), read with each domain's own store
//! functions and shaped like the live messages that update it, so a client
//! treats both alike. Assistant channels are answered from memory by the
//! registry instead.
//!
//! Subscribes to one channel that wait for a snapshot at the same time share
//! one read ([`SnapshotReads`]): a tenant's dashboards reconnecting together
//! after a restart, or a subscribe flood, cost one query per channel and
//! pool slot instead of one per socket.

use chrono::Utc;
use lad_consumers::live::Channel;
use lad_consumers::{billing, campaigns, voice};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Calls in progress listed in a `calls` snapshot, newest first.
pub const IN_PROGRESS_LIMIT: i64 = 500;
/// Transcript lines in a `call` snapshot: far beyond a real call, it only
/// keeps a corrupt stream from building a frame of unbounded size.
pub const TRANSCRIPT_LIMIT: i64 = 20_000;

/// A snapshot serialized once, for every subscribe that shares its read.
pub type Snapshot = Arc<RawValue>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot query failed: {0}")]
    Query(Arc<sqlx::Error>),
    #[error("snapshot read abandoned")]
    Abandoned,
}

type Outcome = Option<Result<Snapshot, SnapshotError>>;

/// Snapshot reads, shared while they wait for a connection.
///
/// A subscribe registers for live messages first and reads its snapshot
/// after, so nothing committed in between is lost. A shared read keeps that
/// order: a subscribe joins a read only until the read has its connection,
/// that is before its query starts; later subscribes get a read of their
/// own. Each read runs in its own task, so a subscribe that gives up (its
/// socket closes, its timeout fires) never strands the others.
#[derive(Clone)]
pub struct SnapshotReads {
    pool: PgPool,
    /// At most one read per channel still waiting for a connection; the
    /// reads under way are bounded by the pool's size.
    waiting: Arc<Mutex<HashMap<Channel, watch::Receiver<Outcome>>>>,
}

impl SnapshotReads {
    pub fn new(pool: PgPool) -> SnapshotReads {
        SnapshotReads {
            pool,
            waiting: Arc::default(),
        }
    }

    /// The channel's snapshot, read after this call began.
    pub async fn read(&self, channel: Channel) -> Result<Snapshot, SnapshotError> {
        let mut outcome = {
            let mut waiting = self.waiting.lock().expect("snapshot reads lock");
            match waiting.get(&channel) {
                Some(read) => {
                    metrics::counter!("lad_snapshot_reads_shared_total").increment(1);
                    read.clone()
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    waiting.insert(channel, rx.clone());
                    tokio::spawn(self.clone().run(channel, tx));
                    rx
                }
            }
        };
        let done = outcome.wait_for(Option::is_some).await.map(|d| d.clone());
        match done {
            Ok(done) => done.expect("waited for an outcome"),
            Err(_) => Err(SnapshotError::Abandoned),
        }
    }

    async fn run(self, channel: Channel, tx: watch::Sender<Outcome>) {
        let conn = self.pool.acquire().await;
        // From here on the query may begin at any moment: a subscribe that
        // registers now must not share it.
        self.waiting
            .lock()
            .expect("snapshot reads lock")
            .remove(&channel);
        metrics::counter!("lad_snapshot_queries_total").increment(1);
        let read = match conn {
            Ok(mut conn) => load(&mut conn, &channel).await,
            Err(e) => Err(e),
        };
        let outcome = read
            .map(|snapshot| {
                let raw = serde_json::value::to_raw_value(&snapshot)
                    .expect("a JSON value with string keys always serializes");
                Arc::from(raw)
            })
            .map_err(|e| SnapshotError::Query(Arc::new(e)));
        // Every subscriber may have given up already; then nobody listens.
        let _ = tx.send(Some(outcome));
    }
}

async fn load(conn: &mut PgConnection, channel: &Channel) -> Result<Value, sqlx::Error> {
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
        // Replies in progress are never in Postgres; the registry answers
        // these itself. From the database's view none is in progress.
        Channel::UserAi { .. } => json!({ "replies": [] }),
    })
}
