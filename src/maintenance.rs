//! Keeps the hub's own tables bounded: the daily partitions of
//! `hub_processed_events` (created ahead, dropped past the dedupe window)
//! and the rows of `hub_dead_letters` past their retention.

use lad_consumers::metrics as m;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub dedupe_window_days: i32,
    pub dead_letter_days: i32,
}

/// Dead letters are deleted in chunks, so one run never holds a long lock
/// or a huge transaction.
const DEAD_LETTER_CHUNK: i64 = 10_000;

/// Creates the dedupe partitions from the window's start to three days
/// ahead and drops those past the window. Run at start, before any batch:
/// a day without its partition would make every batch fail.
pub async fn dedupe_partitions(pool: &PgPool, window_days: i32) -> Result<i32, sqlx::Error> {
    let dropped: i32 = sqlx::query_scalar("SELECT lad_hub_dedupe_maintain($1, 3)")
        .bind(window_days)
        .fetch_one(pool)
        .await?;
    if dropped > 0 {
        metrics::counter!(m::DEDUPE_PARTITIONS_DROPPED).increment(dropped as u64);
        tracing::info!(
            dropped,
            window_days,
            "hub_processed_events partitions past the dedupe window dropped"
        );
    }
    Ok(dropped)
}

/// Deletes dead letters older than the retention; returns how many.
pub async fn expire_dead_letters(pool: &PgPool, days: i32) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM hub_dead_letters WHERE id IN (
                 SELECT id FROM hub_dead_letters
                 WHERE created_at < now() - make_interval(days => $1)
                 LIMIT $2)",
        )
        .bind(days)
        .bind(DEAD_LETTER_CHUNK)
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < DEAD_LETTER_CHUNK as u64 {
            break;
        }
    }
    if total > 0 {
        metrics::counter!(m::DEAD_LETTERS_EXPIRED).increment(total);
        tracing::info!(
            deleted = total,
            days,
            "dead letters past their retention deleted"
        );
    }
    Ok(total)
}

/// Runs both every `every` until `shutdown`. A failed run is logged and
/// tried again at the next one (three days of partitions are kept ahead).
pub async fn run(
    pool: PgPool,
    retention: Retention,
    every: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = dedupe_partitions(&pool, retention.dedupe_window_days).await {
            tracing::error!(error = %e, "could not maintain the dedupe partitions");
        }
        if let Err(e) = expire_dead_letters(&pool, retention.dead_letter_days).await {
            tracing::warn!(error = %e, "could not expire dead letters");
        }
    }
}
