//! The offset fence: each partition's next offset lives in Postgres and is
//! locked, checked and advanced inside the batch's own transaction, so a
//! batch is applied exactly once whatever Kafka redelivers (kafka-delta-ingest's design).

use sqlx::PgConnection;
use std::collections::HashMap;

/// What to do with one partition's records in a batch, given the stored offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceDecision {
    /// Apply the records from this index on (the ones before were applied already).
    Apply { from: usize },
    /// Every record was applied already (a redelivery after a crash or rebalance).
    Skip,
    /// The records start after the stored offset: the consumer is ahead of
    /// what was committed. Seek back and apply nothing from this partition now.
    Reseek(i64),
}

/// Pure decision for one partition. `offsets` are ascending. `tried_seek`
/// is the offset this consumer already sought to: if the broker still
/// cannot serve it (retention, or a transaction marker occupies it) the
/// gap is accepted rather than looping forever.
pub fn decide(stored: Option<i64>, offsets: &[i64], tried_seek: Option<i64>) -> FenceDecision {
    let Some(next) = stored else {
        return FenceDecision::Apply { from: 0 };
    };
    match offsets.iter().position(|o| *o >= next) {
        None => FenceDecision::Skip,
        Some(i) if offsets[i] == next || tried_seek == Some(next) => {
            FenceDecision::Apply { from: i }
        }
        Some(_) => FenceDecision::Reseek(next),
    }
}

/// Locks the offset rows of `partitions` for this transaction (creating the
/// missing ones) and returns the stored next offsets (`None`: never stored).
/// The row lock serializes two consumers that both believe they own a
/// partition during a rebalance: the second sees the first's progress.
pub async fn lock(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<HashMap<i32, Option<i64>>, sqlx::Error> {
    let mut sorted = partitions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sqlx::query(
        "INSERT INTO hub_consumer_offsets (consumer_group, topic, kafka_partition, next_offset)
         SELECT $1, $2, p, NULL FROM UNNEST($3::int[]) AS p
         ON CONFLICT DO NOTHING",
    )
    .bind(group)
    .bind(topic)
    .bind(&sorted)
    .execute(&mut *conn)
    .await?;
    let rows: Vec<(i32, Option<i64>)> = sqlx::query_as(
        "SELECT kafka_partition, next_offset FROM hub_consumer_offsets
         WHERE consumer_group = $1 AND topic = $2 AND kafka_partition = ANY($3)
         ORDER BY kafka_partition
         FOR UPDATE",
    )
    .bind(group)
    .bind(topic)
    .bind(&sorted)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

pub async fn store(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    next: &[(i32, i64)],
) -> Result<(), sqlx::Error> {
    if next.is_empty() {
        return Ok(());
    }
    let (partitions, offsets): (Vec<i32>, Vec<i64>) = next.iter().copied().unzip();
    sqlx::query(
        "UPDATE hub_consumer_offsets o SET next_offset = n.next_offset, updated_at = now()
         FROM UNNEST($3::int[], $4::bigint[]) AS n(kafka_partition, next_offset)
         WHERE o.consumer_group = $1 AND o.topic = $2 AND o.kafka_partition = n.kafka_partition",
    )
    .bind(group)
    .bind(topic)
    .bind(partitions)
    .bind(offsets)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use FenceDecision::*;

    #[test]
    fn a_partition_never_stored_applies_everything() {
        assert_eq!(decide(None, &[5, 6, 7], None), Apply { from: 0 });
    }

    #[test]
    fn records_below_the_stored_offset_are_dropped() {
        assert_eq!(decide(Some(6), &[4, 5, 6, 7], None), Apply { from: 2 });
        assert_eq!(decide(Some(8), &[4, 5, 6, 7], None), Skip);
    }

    #[test]
    fn a_batch_that_starts_past_the_stored_offset_reseeks_once() {
        assert_eq!(decide(Some(3), &[5, 6], None), Reseek(3));
        assert_eq!(decide(Some(3), &[5, 6], Some(3)), Apply { from: 0 });
        assert_eq!(decide(Some(3), &[1, 2, 5, 6], None), Reseek(3));
    }
}
