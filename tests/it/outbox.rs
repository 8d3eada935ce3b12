//! The relay against the real broker and Postgres: rows its pipelines
//! handed over and rows it has to read back are published together, in id
//! order, each once; and the table, not the hand-off, decides what exists.

use crate::support::*;
use lad_consumers::kafka::{ensure_topics, KafkaSettings};
use lad_consumers::outbox::{self, Drained, OutboxRecord, Relay, RelayProducer};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::PgPool;
use std::time::Duration;

fn settings() -> KafkaSettings {
    KafkaSettings {
        brokers: brokers(),
        ..KafkaSettings::default()
    }
}

fn records(topic: &str, row: &str, n: usize) -> Vec<OutboxRecord> {
    (0..n)
        .map(|i| OutboxRecord {
            topic: topic.to_owned(),
            key: Some(format!("k{i}")),
            value: RawValue::from_string(format!(r#"{{"row":"{row}","i":{i}}}"#)).unwrap(),
        })
        .collect()
}

/// Writes `records` as one committed row, as a batch does.
async fn commit_row(pool: &PgPool, records: &[OutboxRecord]) -> i64 {
    let mut tx = pool.begin().await.unwrap();
    let id = outbox::write(&mut tx, records).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    id
}

/// The next `n` values published to `topic`, in order.
async fn read(consumer: &StreamConsumer, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("the relay published within 30 s")
            .expect("a record");
        out.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
    }
    out
}

/// A topic of its own, and a relay over `pool`.
async fn relay_on_a_new_topic(pool: &PgPool) -> (String, Relay) {
    let topic = format!("{}.out", Topics::new().prefix);
    ensure_topics(&settings(), &[&topic], 1, 1).await.unwrap();
    let relay = Relay::new(
        pool.clone(),
        RelayProducer::new(&settings().producer_config()).unwrap(),
    );
    (topic, relay)
}

/// Has the relay publish `rows` rows and find the table empty after, then
/// reads what reached `topic`: each value's `(id, row, i)`, exactly
/// `records` of them and nothing more.
async fn drain_and_read(
    relay: &Relay,
    pool: &PgPool,
    topic: &str,
    rows: usize,
    records: usize,
) -> Vec<(String, String, i64)> {
    assert_eq!(relay.drain_once().await.unwrap(), Drained::Rows(rows));
    assert_eq!(relay.drain_once().await.unwrap(), Drained::Empty);
    assert_eq!(count(pool, "SELECT count(*) FROM hub_outbox").await, 0);

    let consumer: StreamConsumer = settings()
        .consumer_config(&format!("{topic}-reader"))
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let seen = read(&consumer, records)
        .await
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_owned(),
                v["row"].as_str().unwrap().to_owned(),
                v["i"].as_i64().unwrap(),
            )
        })
        .collect();
    let more = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await;
    assert!(more.is_err(), "published more than the table held");
    seen
}

#[sqlx::test(migrations = "./migrations")]
async fn handed_and_read_back_rows_are_published_together_in_id_order(pool: PgPool) {
    let (topic, relay) = relay_on_a_new_topic(&pool).await;
    let waker = relay.waker();

    // Rows another node (or this one before a restart) committed are only
    // in the table; this process's are also handed over.
    let a = commit_row(&pool, &records(&topic, "a", 2)).await;
    let b_records = records(&topic, "b", 3);
    let b = commit_row(&pool, &b_records).await;
    waker.committed(b, b_records);
    let c = commit_row(&pool, &records(&topic, "c", 1)).await;
    let d_records = records(&topic, "d", 2);
    let d = commit_row(&pool, &d_records).await;
    waker.committed(d, d_records);
    // Handed over, then gone from the table before the relay ran (another
    // relay published it): the table decides, so it is not published again.
    let e_records = records(&topic, "e", 1);
    let e = commit_row(&pool, &e_records).await;
    waker.committed(e, e_records);
    sqlx::query("DELETE FROM hub_outbox WHERE id = $1")
        .bind(e)
        .execute(&pool)
        .await
        .unwrap();

    let seen = drain_and_read(&relay, &pool, &topic, 4, 8).await;
    let want: Vec<(String, String, i64)> = [(a, "a", 2), (b, "b", 3), (c, "c", 1), (d, "d", 2)]
        .iter()
        .flat_map(|(id, row, n)| (0..*n).map(move |i| (format!("{id}.{i}"), row.to_string(), i)))
        .collect();
    // Row e is not among them.
    assert_eq!(seen, want);
}

/// A batch writes its row's bulk before it locks the rows every batch
/// shares, under a provisional id, and completes the row with the rest at
/// its commit (issue #14). The row is published once, its first records
/// then its tail, numbered as one row, under the id taken at the end:
/// whether it was handed over or read back. A row whose transaction rolled
/// back is never seen, and a relay of an older hub cannot read the row.
#[sqlx::test(migrations = "./migrations")]
async fn a_row_written_ahead_is_published_whole_under_the_id_taken_at_its_end(pool: PgPool) {
    let (topic, relay) = relay_on_a_new_topic(&pool).await;
    let waker = relay.waker();

    // Read back: written ahead, then another transaction commits a row,
    // then this one completes its row and commits.
    let mut tx = pool.begin().await.unwrap();
    let provisional = outbox::write_ahead(&mut tx, &records(&topic, "a", 2))
        .await
        .unwrap();
    assert!(provisional < 0, "provisional id {provisional}");
    let b = commit_row(&pool, &records(&topic, "b", 1)).await;
    let a = outbox::finish(&mut tx, provisional, &records(&topic, "a-tail", 2))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(a > b, "ids follow the commits: {a} after {b}");
    // A relay of an older hub reads `records` alone: for this row it gets
    // an error it retries, never the first part without the tail.
    let old_read =
        sqlx::query_as::<_, (i64, String)>("SELECT id, records FROM hub_outbox WHERE id = $1")
            .bind(a)
            .fetch_one(&pool)
            .await;
    assert!(old_read.is_err(), "an older relay read {old_read:?}");

    // Handed over whole, as a pipeline does.
    let mut tx = pool.begin().await.unwrap();
    let c_first = records(&topic, "c", 1);
    let c_tail = records(&topic, "c-tail", 1);
    let provisional = outbox::write_ahead(&mut tx, &c_first).await.unwrap();
    let c = outbox::finish(&mut tx, provisional, &c_tail).await.unwrap();
    tx.commit().await.unwrap();
    waker.committed(c, [c_first, c_tail].concat());

    // No tail: the row is its first records.
    let mut tx = pool.begin().await.unwrap();
    let provisional = outbox::write_ahead(&mut tx, &records(&topic, "d", 1))
        .await
        .unwrap();
    let d = outbox::finish(&mut tx, provisional, &[]).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    outbox::write_ahead(&mut tx, &records(&topic, "rolled-back", 1))
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let seen = drain_and_read(&relay, &pool, &topic, 4, 8).await;
    let want: Vec<(String, String, i64)> = [
        (format!("{b}.0"), "b", 0),
        (format!("{a}.0"), "a", 0),
        (format!("{a}.1"), "a", 1),
        (format!("{a}.2"), "a-tail", 0),
        (format!("{a}.3"), "a-tail", 1),
        (format!("{c}.0"), "c", 0),
        (format!("{c}.1"), "c-tail", 0),
        (format!("{d}.0"), "d", 0),
    ]
    .into_iter()
    .map(|(id, row, i)| (id, row.to_owned(), i))
    .collect();
    assert_eq!(seen, want);
}
