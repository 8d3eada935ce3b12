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
    let rows = sqlx::query(&sql).bind(ids).fetch_all(conn).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, R::from_row(row)?)))
        .collect()
}
