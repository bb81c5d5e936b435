//! The one place that locks account rows, and what every writer does right after: release the
//! locked accounts' lapsed holds.
//!
//! Every transaction that writes an account — a batch of [`super::batch`] (of any committer, in
//! any process) or a single operation of [`super::lifecycle`] — takes all its account locks in
//! one statement, `SELECT … WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE`, before it writes
//! anything. `ORDER BY` is applied before the rows are locked, so every transaction acquires
//! its locks in id order, and no two can wait on each other in a cycle: no deadlock.
//! `NO KEY UPDATE` is the lock an `UPDATE` of non-key columns takes: it excludes every other
//! writer of the row, but not the key-share locks that foreign-key checks on it take.

use bank_core::account::AccountState;
use bank_core::ids::AccountId;
use bank_core::money::checked_sub;
use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use sqlx::PgConnection;
use uuid::Uuid;

use super::rows::{self, ACCOUNT_COLUMNS, get, nanos};
use crate::postgres::db_err;

/// Locks `ids` (those that exist) in id order and returns their states.
pub(super) async fn lock_accounts(conn: &mut PgConnection, ids: &[Uuid]) -> Result<FxHashMap<AccountId, AccountState>> {
    let locked = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    let mut states = FxHashMap::default();
    for row in &locked {
        let state = rows::account_state(row)?;
        states.insert(state.account.id, state);
    }
    Ok(states)
}

/// Marks the lapsed holds of the locked `states` expired and takes them out of their `held`
/// (in memory; the caller writes it). The account of each released hold.
pub(super) async fn release_lapsed(
    conn: &mut PgConnection,
    states: &mut FxHashMap<AccountId, AccountState>,
    now: DateTime<Utc>,
) -> Result<Vec<AccountId>> {
    if states.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = states.keys().map(|id| *id.as_uuid()).collect();
    let lapsed = sqlx::query(
        "UPDATE holds SET status = 'expired' \
          WHERE account_id = ANY($1) AND status = 'active' AND expires_at_ns <= $2 \
         RETURNING account_id, amount",
    )
    .bind(&ids)
    .bind(nanos(now)?)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    let mut released = Vec::with_capacity(lapsed.len());
    for row in &lapsed {
        let account = AccountId::from_uuid(get(row, "account_id")?).map_err(rows::corrupt)?;
        let amount: Decimal = get(row, "amount")?;
        let state = states.get_mut(&account).ok_or(Error::AccountNotFound(account))?;
        state.held = checked_sub(state.held, amount)?;
        released.push(account);
    }
    Ok(released)
}
