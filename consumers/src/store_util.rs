//! SQL shapes the domains' stores share.

use sqlx::encode::IsNull;
use sqlx::postgres::{PgArgumentBuffer, PgRow};
use sqlx::{Encode, FromRow, PgConnection, Postgres, Row};
use std::collections::HashMap;
use uuid::Uuid;

/// Locks the stored rows of `table` whose `id` is among `ids` until the
/// transaction ends, and returns each (its `columns`, which name `id` among
/// them, read as `R`) by id. The rows are locked in id order, so two batches
/// that share rows take their locks in the same order and queue instead of
/// deadlocking.
pub(crate) async fn lock_by_id<R>(
    conn: &mut PgConnection,
    table: &str,
    columns: &str,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, R>, sqlx::Error>
where
    R: for<'r> FromRow<'r, PgRow>,
{
    lock_by_id_in(conn, &[table], columns, ids).await
}

/// As [`lock_by_id`], over several tables of the same `columns` (the
/// partitions of one table): each table's rows are locked in id order, the
/// tables in the order given.
pub(crate) async fn lock_by_id_in<R>(
    conn: &mut PgConnection,
    tables: &[impl AsRef<str>],
    columns: &str,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, R>, sqlx::Error>
where
    R: for<'r> FromRow<'r, PgRow>,
{
    if ids.is_empty() || tables.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = lock_sql(tables, columns);
    let rows = as_index_probes(conn, ids.len(), async |conn| {
        sqlx::query(&sql).bind(ids).fetch_all(conn).await
    })
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, R::from_row(row)?)))
        .collect()
}

/// The statement of [`lock_by_id_in`]. `FOR UPDATE` is not allowed beside
/// `UNION`, so each table's lock is a subquery of its own.
fn lock_sql(tables: &[impl AsRef<str>], columns: &str) -> String {
    let one =
        |t: &str| format!("SELECT {columns} FROM {t} WHERE id = ANY($1) ORDER BY id FOR UPDATE");
    match tables {
        [t] => one(t.as_ref()),
        _ => tables
            .iter()
            .enumerate()
            .map(|(i, t)| format!("SELECT * FROM ({}) AS t{i}", one(t.as_ref())))
            .collect::<Vec<_>>()
            .join(" UNION ALL "),
    }
}

/// The partitions of the partitioned table `parent` that hold rows, in a
/// fixed order, for lookups that cannot name the partition key: a lookup
/// by `id` alone probes every partition's index, the empty ones too, and
/// an empty partition's index costs about as much per key as one that
/// holds rows. `voice_call_logs` has 17 partitions from the start (12
/// months back, 3 ahead, the default), of which a young deployment fills
/// one or two and the months ahead are always empty. In psql, 2,000 ids
/// cost each of 16 empty partitions 0.9 ms, two thirds of the 22.5 ms the
/// call lock took (100,000 calls in this month's partition; issue #14).
///
/// A partition is left out only while its heap has no page: a row, even
/// one whose transaction has not committed, extends the heap before it is
/// written, so such a partition holds no row that any transaction could
/// see or be waiting to lock. A partition that is itself partitioned is
/// always kept (its own heap has no pages).
pub(crate) async fn partitions_with_rows(
    conn: &mut PgConnection,
    parent: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT c.oid::regclass::text
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = $1::text::regclass
           AND (c.relkind = 'p' OR pg_relation_size(c.oid) > 0)
         ORDER BY c.oid",
    )
    .bind(parent)
    .fetch_all(conn)
    .await
}

/// Fewer keys than this are probed as planned anyway, or else the table is
/// at most a few hundred pages, cheap to scan; the two statements that set
/// and reset the plan would cost a small batch more than they save (they
/// put 2.8 ms on the median commit-to-socket latency of `lad-bench fanout`,
/// whose batches are a handful of events).
const PROBES_FROM_KEYS: usize = 64;

/// Runs `statements` in the caller's transaction as index probes, planned
/// once. For a batch's `key = ANY($1)` lookup Postgres otherwise plans
/// for the values: each of the batch's thousands of keys counts as a
/// match, so while the table is small beside that it scans it whole (the
/// transcripts in parallel, starting workers for each batch), and every
/// batch costs more as the table grows. At 120,000 calls, 80,000 analyses
/// and 240,000 transcript lines, a 2,000-call batch's call lock, side
/// tenants and analyses lock took 12 + 16, 3 + 38 and 2 + 13 ms to plan and
/// run; as probes 2-4 + 11-21 (every monthly partition probed, empty
/// ones too), 2 + 6-10 and 2 + 2-4 (issue #14). A plan made without the
/// values alone is no cure: the first one is made on the empty tables of a
/// fresh start, a scan with an unhashed array filter, and kept. So the
/// sequential scan is ruled out as well. Only for lookups that have an
/// index to probe. `keys` is how many the lookup takes: below
/// [`PROBES_FROM_KEYS`] the statements run as planned.
pub(crate) async fn as_index_probes<T>(
    conn: &mut PgConnection,
    keys: usize,
    statements: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    if keys < PROBES_FROM_KEYS {
        return statements(conn).await;
    }
    sqlx::query(
        "SELECT set_config(name, value, true)
         FROM (VALUES ('plan_cache_mode', 'force_generic_plan'), ('enable_seqscan', 'off'))
              AS s(name, value)",
    )
    .execute(&mut *conn)
    .await?;
    let out = statements(&mut *conn).await?;
    // Two statements rather than one over `pg_settings`, which builds a
    // row for every setting: 0.7-0.9 ms of the backend's time (psql), up
    // to three times a batch, while the lane holds shared rows.
    for reset in [
        "SET LOCAL plan_cache_mode TO DEFAULT",
        "SET LOCAL enable_seqscan TO DEFAULT",
    ] {
        sqlx::query(reset).execute(&mut *conn).await?;
    }
    Ok(out)
}

/// Rows in `COPY … FROM STDIN (FORMAT binary)` form, built field by field
/// with sqlx's own encoders, so each value goes as the bytes it is bound
/// as. `COPY` wrote a batch of new calls in about half the time of an
/// `INSERT … SELECT FROM UNNEST` of the same rows (it fills heap pages
/// several rows at a time); binary, Postgres skips parsing each id,
/// instant and id array from text, and the hub skips printing them. Used
/// for every row a batch knows to be new: calls, transcript lines and
/// analyses (whose upserts cost the backend 60-75 % more CPU), usage
/// events and ledger rows (their `INSERT … UNNEST` about a fifth more;
/// BENCHMARKS.md, issue #14).
pub(crate) struct CopyBinary {
    data: Vec<u8>,
    /// Where the current row's field count goes.
    row_start: usize,
    fields: i16,
    scratch: PgArgumentBuffer,
}

impl CopyBinary {
    pub(crate) fn with_capacity(bytes: usize) -> CopyBinary {
        let mut data = Vec::with_capacity(bytes + 21);
        data.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        data.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        data.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        let mut copy = CopyBinary {
            data,
            row_start: 0,
            fields: 0,
            scratch: PgArgumentBuffer::default(),
        };
        copy.begin_row();
        copy
    }

    fn begin_row(&mut self) {
        self.row_start = self.data.len();
        self.data.extend_from_slice(&0i16.to_be_bytes());
        self.fields = 0;
    }

    /// The next field: `value` as sqlx binds it (`None` is NULL). Built-in
    /// types only: sqlx leaves the type id of a type it knows by name (an
    /// enum, a domain) to be filled in at bind time, which never comes here.
    pub(crate) fn field<'q, T>(&mut self, value: &T) -> Result<&mut Self, sqlx::Error>
    where
        T: Encode<'q, Postgres>,
    {
        self.scratch.clear();
        let null = value
            .encode_by_ref(&mut self.scratch)
            .map_err(sqlx::Error::Encode)?;
        match null {
            IsNull::Yes => self.data.extend_from_slice(&(-1i32).to_be_bytes()),
            IsNull::No => {
                let len = i32::try_from(self.scratch.len())
                    .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                self.data.extend_from_slice(&len.to_be_bytes());
                self.data.extend_from_slice(&self.scratch);
            }
        }
        self.fields += 1;
        Ok(self)
    }

    /// The next field: `value` as `jsonb`, whose binary form is a version
    /// byte and the text. Written straight into the rows, where
    /// [`CopyBinary::field`] would go through sqlx's encoder, which also
    /// queues a patch for the case the column turns out to be `json`.
    pub(crate) fn jsonb(&mut self, value: &serde_json::Value) -> Result<&mut Self, sqlx::Error> {
        let start = self.data.len();
        self.data.extend_from_slice(&0i32.to_be_bytes());
        self.data.push(1);
        serde_json::to_writer(&mut self.data, value).map_err(|e| sqlx::Error::Encode(e.into()))?;
        let len = i32::try_from(self.data.len() - start - 4)
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        self.data[start..start + 4].copy_from_slice(&len.to_be_bytes());
        self.fields += 1;
        Ok(self)
    }

    pub(crate) fn end_row(&mut self) {
        let count = self.fields.to_be_bytes();
        self.data[self.row_start..self.row_start + 2].copy_from_slice(&count);
        self.begin_row();
    }

    /// Sends the rows with `COPY {target} FROM STDIN (FORMAT binary)` on
    /// `conn`.
    pub(crate) async fn send(
        mut self,
        conn: &mut PgConnection,
        target: &str,
    ) -> Result<u64, sqlx::Error> {
        // The row begun after the last one becomes the trailer (-1 fields).
        self.data.truncate(self.row_start);
        self.data.extend_from_slice(&(-1i16).to_be_bytes());
        let mut copy = conn
            .copy_in_raw(&format!("COPY {target} FROM STDIN (FORMAT binary)"))
            .await?;
        if let Err(e) = copy.send(self.data).await {
            // The connection must leave the copy state before its next use.
            let _ = copy.abort("the hub could not send the rows").await;
            return Err(e);
        }
        copy.finish().await
    }
}

#[cfg(test)]
mod tests {
    use super::{lock_sql, CopyBinary};
    use uuid::Uuid;

    #[test]
    fn one_table_is_locked_in_one_select_several_in_one_subquery_each() {
        assert_eq!(
            lock_sql(&["t"], "id, a"),
            "SELECT id, a FROM t WHERE id = ANY($1) ORDER BY id FOR UPDATE"
        );
        assert_eq!(
            lock_sql(&["p1", "p2"], "id"),
            "SELECT * FROM (SELECT id FROM p1 WHERE id = ANY($1) ORDER BY id FOR UPDATE) AS t0 \
             UNION ALL SELECT * FROM (SELECT id FROM p2 WHERE id = ANY($1) ORDER BY id FOR UPDATE) AS t1"
        );
    }

    #[test]
    fn copy_binary_frames_rows_fields_and_nulls() {
        let id = Uuid::from_u128(7);
        let mut rows = CopyBinary::with_capacity(64);
        rows.field(&id).unwrap().field(&None::<i32>).unwrap();
        rows.end_row();
        rows.field(&"ab").unwrap();
        rows.end_row();
        let mut expected: Vec<u8> = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        expected.extend_from_slice(&[0, 2, 0, 0, 0, 16]);
        expected.extend_from_slice(id.as_bytes());
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0, 1, 0, 0, 0, 2, b'a', b'b']);
        rows.data.truncate(rows.row_start);
        assert_eq!(rows.data, expected);
    }

    #[test]
    fn jsonb_is_its_version_byte_and_text() {
        let mut rows = CopyBinary::with_capacity(64);
        rows.jsonb(&serde_json::json!({"a": [1, "b"]})).unwrap();
        rows.end_row();
        let text = br#"{"a":[1,"b"]}"#;
        let mut expected: Vec<u8> = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        expected.extend_from_slice(&[0, 1]);
        expected.extend_from_slice(&(text.len() as i32 + 1).to_be_bytes());
        expected.push(1);
        expected.extend_from_slice(text);
        rows.data.truncate(rows.row_start);
        assert_eq!(rows.data, expected);
    }
}
