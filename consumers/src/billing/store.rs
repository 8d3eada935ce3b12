//! Billing SQL. Every function is one statement over the whole batch
//! (`UNNEST` arrays, or `COPY` for new rows), runs in the caller's
//! transaction, and touches hot rows (wallets, daily costs) in a fixed key
//! order so concurrent batches queue instead of deadlocking.

use super::apply::{
    CostDailyDelta, CostDailyKey, LedgerRow, PriceKey, PriceList, UsageEventRow, Wallet,
};
use crate::store_util::CopyBinary;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Active unit prices for `keys`. "Active" is what the catalog's unique
/// index calls active (`is_active AND deleted_at IS NULL`): at most one row
/// per key.
pub async fn load_prices(
    conn: &mut PgConnection,
    keys: &[PriceKey],
) -> Result<PriceList, sqlx::Error> {
    if keys.is_empty() {
        return Ok(PriceList::new());
    }
    let mut category = Vec::with_capacity(keys.len());
    let mut provider = Vec::with_capacity(keys.len());
    let mut model = Vec::with_capacity(keys.len());
    let mut unit = Vec::with_capacity(keys.len());
    for k in keys {
        category.push(k.category.as_str());
        provider.push(k.provider.as_str());
        model.push(k.model.as_str());
        unit.push(k.unit.as_str());
    }
    let rows: Vec<(String, String, String, String, Decimal)> = sqlx::query_as(
        "SELECT p.category, p.provider, p.model, p.unit, p.unit_price
         FROM billing_pricing_catalog p
         JOIN UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS k(category, provider, model, unit)
           USING (category, provider, model, unit)
         WHERE p.is_active AND p.deleted_at IS NULL",
    )
    .bind(&category)
    .bind(&provider)
    .bind(&model)
    .bind(&unit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(category, provider, model, unit, price)| {
            (
                PriceKey {
                    category,
                    provider,
                    model,
                    unit,
                },
                price,
            )
        })
        .collect())
}

type WalletRow = (Uuid, Uuid, Decimal, String, String, DateTime<Utc>);

fn wallet((id, tenant_id, current_balance, currency, status, updated_at): WalletRow) -> Wallet {
    Wallet {
        id,
        tenant_id,
        current_balance,
        currency,
        status,
        updated_at,
    }
}

/// Opens (balance 0) the missing tenant wallets, then locks every wallet of
/// `tenants` until the transaction ends, in tenant_id order. Every billing
/// write of a tenant happens under this lock, which is what makes the
/// balance and idempotency checks that follow it race-free.
pub async fn lock_wallets(
    conn: &mut PgConnection,
    tenants: &[Uuid],
) -> Result<HashMap<Uuid, Wallet>, sqlx::Error> {
    let mut sorted = tenants.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.is_empty() {
        return Ok(HashMap::new());
    }
    sqlx::query(
        "INSERT INTO billing_wallets (tenant_id)
         SELECT t FROM UNNEST($1::uuid[]) WITH ORDINALITY AS u(t, n) ORDER BY n
         ON CONFLICT (tenant_id) WHERE user_id IS NULL DO NOTHING",
    )
    .bind(&sorted)
    .execute(&mut *conn)
    .await?;
    let rows: Vec<WalletRow> = sqlx::query_as(
        "SELECT id, tenant_id, current_balance, currency, status, updated_at
         FROM billing_wallets
         WHERE tenant_id = ANY($1) AND user_id IS NULL
         ORDER BY tenant_id
         FOR UPDATE",
    )
    .bind(&sorted)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.1, wallet(r))).collect())
}

/// The tenant's wallet, for a channel snapshot; `None` before its first use.
pub async fn load_wallet(
    conn: &mut PgConnection,
    tenant_id: Uuid,
) -> Result<Option<Wallet>, sqlx::Error> {
    let row: Option<WalletRow> = sqlx::query_as(
        "SELECT id, tenant_id, current_balance, currency, status, updated_at
         FROM billing_wallets
         WHERE tenant_id = $1 AND user_id IS NULL AND deleted_at IS NULL",
    )
    .bind(tenant_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(wallet))
}

/// Which of the (tenant, idempotency_key) pairs the store already holds, as
/// a usage event or as a ledger row (credits have no usage event).
pub async fn used_keys(
    conn: &mut PgConnection,
    keys: &[(Uuid, &str)],
) -> Result<HashSet<(Uuid, String)>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let (tenants, idem): (Vec<Uuid>, Vec<&str>) = keys.iter().copied().unzip();
    // One probe of each unique index per key, whatever the statistics say.
    // Written as `EXISTS (..) OR EXISTS (..)`, the planner hashed both
    // tables whole whenever it took them for small beside the batch's keys:
    // 22 ms instead of 3 ms for 1,500 keys against a 43,000-row ledger
    // (issue #14), a cost that grows with the tables until it flips.
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT k.tenant_id, k.idempotency_key
         FROM UNNEST($1::uuid[], $2::text[]) AS k(tenant_id, idempotency_key)
         CROSS JOIN LATERAL (
            SELECT 1 FROM billing_usage_events u
            WHERE u.tenant_id = k.tenant_id AND u.idempotency_key = k.idempotency_key
            UNION ALL
            SELECT 1 FROM billing_ledger_transactions l
            WHERE l.tenant_id = k.tenant_id AND l.idempotency_key = k.idempotency_key
            LIMIT 1
         ) AS used",
    )
    .bind(&tenants)
    .bind(&idem)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// New usage events, by binary `COPY`: 29 % less of the backend's CPU than
/// an `INSERT … SELECT FROM UNNEST` of the same rows (18 % for ledger rows;
/// issue #14, BENCHMARKS.md). Their ids are new, and the idempotency keys were checked
/// by [`used_keys`] under the wallets' locks.
pub async fn insert_usage_events(
    conn: &mut PgConnection,
    rows: &[UsageEventRow<'_>],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut copy = CopyBinary::with_capacity(rows.len() * 400);
    for r in rows {
        copy.field(&r.id)?
            .field(&r.tenant_id)?
            .field(&r.user_id)?
            .field(&r.feature_key)?
            .jsonb(&r.usage_items)?
            .field(&r.total_cost)?
            .field(&r.currency)?
            .field(&r.status)?
            .field(&r.idempotency_key)?
            .field(&r.event_id)?
            .field(&r.ledger_transaction_id)?
            .field(&r.occurred_at)?
            .jsonb(r.metadata)?
            .field(&now)?
            .field(&now)?
            .end_row();
    }
    copy.send(
        conn,
        "billing_usage_events (id, tenant_id, user_id, feature_key, usage_items, total_cost, \
         currency, status, idempotency_key, event_id, ledger_transaction_id, occurred_at, \
         metadata, created_at, updated_at)",
    )
    .await?;
    Ok(())
}

/// New ledger rows, by binary `COPY` (see [`insert_usage_events`]).
pub async fn insert_ledger(
    conn: &mut PgConnection,
    rows: &[LedgerRow<'_>],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut copy = CopyBinary::with_capacity(rows.len() * 300);
    for r in rows {
        copy.field(&r.id)?
            .field(&r.tenant_id)?
            .field(&r.wallet_id)?
            .field(&r.transaction_type)?
            .field(&r.amount)?
            .field(&r.balance_after)?
            .field(&r.idempotency_key)?
            .field(&r.usage_event_id)?
            .field(&r.event_id)?
            .field(&r.reason)?
            .jsonb(r.metadata)?
            .field(&now)?
            .end_row();
    }
    copy.send(
        conn,
        "billing_ledger_transactions (id, tenant_id, wallet_id, transaction_type, amount, \
         balance_after, idempotency_key, usage_event_id, event_id, reason, metadata, created_at)",
    )
    .await?;
    Ok(())
}

/// Sets each wallet's balance once and returns its new `updated_at` (stamped
/// by the table's trigger). The wallets are already locked by [`lock_wallets`].
pub async fn update_balances(
    conn: &mut PgConnection,
    balances: &BTreeMap<Uuid, Decimal>,
) -> Result<HashMap<Uuid, DateTime<Utc>>, sqlx::Error> {
    if balances.is_empty() {
        return Ok(HashMap::new());
    }
    let (ids, amounts): (Vec<Uuid>, Vec<Decimal>) = balances.iter().map(|(k, v)| (*k, *v)).unzip();
    let rows: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
        "UPDATE billing_wallets w SET current_balance = u.balance
         FROM UNNEST($1::uuid[], $2::numeric[]) AS u(id, balance)
         WHERE w.id = u.id
         RETURNING w.id, w.updated_at",
    )
    .bind(&ids)
    .bind(&amounts)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Adds the batch's charged usage to `billing_cost_daily`, one upsert row
/// per key, in key order. `updated_at` is set here: the table comes from
/// the hub's migration, which attaches no updated_at trigger.
pub async fn add_cost_daily(
    conn: &mut PgConnection,
    deltas: &BTreeMap<CostDailyKey<'_>, CostDailyDelta>,
) -> Result<(), sqlx::Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let n = deltas.len();
    let mut tenant = Vec::with_capacity(n);
    let mut day: Vec<NaiveDate> = Vec::with_capacity(n);
    let mut feature = Vec::with_capacity(n);
    let mut count = Vec::with_capacity(n);
    let mut cost = Vec::with_capacity(n);
    for (k, v) in deltas {
        tenant.push(k.tenant_id);
        day.push(k.day);
        feature.push(k.feature_key);
        count.push(v.usage_count);
        cost.push(v.total_cost);
    }
    sqlx::query(
        "INSERT INTO billing_cost_daily AS c (tenant_id, day, feature_key, usage_count, total_cost)
         SELECT t, d, f, n, x
         FROM UNNEST($1::uuid[], $2::date[], $3::text[], $4::bigint[], $5::numeric[])
              WITH ORDINALITY AS u(t, d, f, n, x, o)
         ORDER BY o
         ON CONFLICT (tenant_id, day, feature_key) DO UPDATE
           SET usage_count = c.usage_count + EXCLUDED.usage_count,
               total_cost = c.total_cost + EXCLUDED.total_cost,
               updated_at = now()",
    )
    .bind(&tenant)
    .bind(&day)
    .bind(&feature)
    .bind(&count)
    .bind(&cost)
    .execute(conn)
    .await?;
    Ok(())
}
