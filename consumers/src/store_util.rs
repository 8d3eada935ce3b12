//! SQL shapes the domains' stores share.

use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};
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
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!("SELECT {columns} FROM {table} WHERE id = ANY($1) ORDER BY id FOR UPDATE");
    let rows = as_index_probes(conn, async |conn| {
        sqlx::query(&sql).bind(ids).fetch_all(conn).await
    })
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, R::from_row(row)?)))
        .collect()
}

/// Runs `statements` in the caller's transaction as index probes, planned
/// once. For a batch's `key = ANY($1)` lookup Postgres otherwise plans
/// for the values: each of the batch's thousands of keys counts as a
/// match, so once the table is small beside that it scans it whole (in
/// parallel, starting workers for each batch), and every batch costs more
/// as the table grows (issue #14: at 120,000 calls the call lock took 12
/// ms to plan and 16 to run, against 2 and 3 here). A plan made without
/// the values alone is no cure: the first one is made while the tables are
/// empty, a scan, and kept. So the sequential scan is ruled out as well.
/// Only for lookups that have an index to probe.
pub(crate) async fn as_index_probes<T>(
    conn: &mut PgConnection,
    statements: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    sqlx::query(
        "SELECT set_config(name, value, true)
         FROM (VALUES ('plan_cache_mode', 'force_generic_plan'), ('enable_seqscan', 'off'))
              AS s(name, value)",
    )
    .execute(&mut *conn)
    .await?;
    let out = statements(&mut *conn).await?;
    sqlx::query(
        "SELECT set_config(name, reset_val, true) FROM pg_settings
         WHERE name IN ('plan_cache_mode', 'enable_seqscan')",
    )
    .execute(&mut *conn)
    .await?;
    Ok(out)
}

/// Rows in `COPY … FROM STDIN` text format, built column by column.
/// `COPY` wrote a batch of new calls in about half the time of an
/// `INSERT … SELECT FROM UNNEST` of the same rows (it fills heap pages
/// several rows at a time). Not every table gains: for the ledger and
/// usage events, whose indexes are the cost, it measured no faster
/// (BENCHMARKS.md, issue #14), so only new calls use it.
pub(crate) struct CopyText {
    data: String,
    first_in_row: bool,
}

impl CopyText {
    pub(crate) fn with_capacity(bytes: usize) -> CopyText {
        CopyText {
            data: String::with_capacity(bytes),
            first_in_row: true,
        }
    }

    fn sep(&mut self) {
        if !std::mem::replace(&mut self.first_in_row, false) {
            self.data.push('\t');
        }
    }

    /// A value written by its `Display` form, which must need no escaping
    /// (numbers, ids, instants, array literals of ids).
    pub(crate) fn plain(&mut self, value: impl std::fmt::Display) -> &mut Self {
        use std::fmt::Write;
        self.sep();
        write!(self.data, "{value}").expect("writing to a String cannot fail");
        self
    }

    pub(crate) fn opt_plain(&mut self, value: Option<impl std::fmt::Display>) -> &mut Self {
        match value {
            Some(v) => self.plain(v),
            None => self.null(),
        }
    }

    /// Text, with the characters the format reserves escaped.
    pub(crate) fn text(&mut self, value: &str) -> &mut Self {
        self.sep();
        for c in value.chars() {
            match c {
                '\\' => self.data.push_str("\\\\"),
                '\t' => self.data.push_str("\\t"),
                '\n' => self.data.push_str("\\n"),
                '\r' => self.data.push_str("\\r"),
                c => self.data.push(c),
            }
        }
        self
    }

    pub(crate) fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    pub(crate) fn null(&mut self) -> &mut Self {
        self.sep();
        self.data.push_str("\\N");
        self
    }

    pub(crate) fn end_row(&mut self) {
        self.data.push('\n');
        self.first_in_row = true;
    }

    /// Sends the rows with `COPY {target} FROM STDIN` on `conn`.
    pub(crate) async fn send(
        self,
        conn: &mut PgConnection,
        target: &str,
    ) -> Result<u64, sqlx::Error> {
        let mut copy = conn
            .copy_in_raw(&format!("COPY {target} FROM STDIN"))
            .await?;
        if let Err(e) = copy.send(self.data.into_bytes()).await {
            // The connection must leave the copy state before its next use.
            let _ = copy.abort("the hub could not send the rows").await;
            return Err(e);
        }
        copy.finish().await
    }
}

#[cfg(test)]
mod tests {
    use super::CopyText;

    #[test]
    fn copy_text_escapes_what_the_format_reserves_and_marks_nulls() {
        let mut rows = CopyText::with_capacity(64);
        rows.plain(7)
            .text("a\tb\\c\nd\re")
            .null()
            .opt_plain(None::<i32>);
        rows.end_row();
        rows.opt_text(Some("x")).opt_plain(Some(1.5));
        rows.end_row();
        assert_eq!(rows.data, "7\ta\\tb\\\\c\\nd\\re\t\\N\t\\N\nx\t1.5\n");
    }
}
