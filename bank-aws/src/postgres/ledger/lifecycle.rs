//! The ledger's writes that run in a transaction of their own, outside the group commit (rare
//! next to postings): opening an account (with the per-owner cap), changing its status, and the
//! sweep that marks lapsed holds expired. They take account locks exactly as batches do
//! (`FOR NO KEY UPDATE`, in id order, before writing), so they cannot deadlock with them.

use bank_core::account::{Account, AccountState, AccountStatus, NewAccount};
use bank_core::ids::{AccountId, CustomerId};
use bank_core::ledger::rules;
use bank_core::ports::ACCOUNTS_PER_OWNER_MAX;
use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::locks::{lock_accounts, release_lapsed};
use super::rows::{self, nanos};
use crate::postgres::{db_err, is_unique_violation};

/// The class of the advisory locks serializing the openings of one owner's accounts (the first
/// key of `pg_advisory_xact_lock(int, int)`; the owner's hash is the second). "LEDG" in ASCII.
const OWNER_LOCK_CLASS: i32 = 0x4c45_4447;

/// Accounts whose lapsed holds one transaction of the sweep releases.
pub(super) const SWEEP_ACCOUNTS_PER_TRANSACTION: i64 = 1_000;

/// Opens `new` (validated), or returns the account already opened under its id by the same
/// request. The owner's advisory lock makes the count of their accounts and the insert one step
/// against every other opening for them, in every process: the cap cannot be overrun.
pub(super) async fn open_account(pool: &PgPool, new: NewAccount, now: DateTime<Utc>) -> Result<Account> {
    let kind = new.kind.as_str();
    let created_at = nanos(now)?;
    let mut tx = pool.begin().await.map_err(db_err)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(OWNER_LOCK_CLASS)
        .bind(owner_lock_key(new.owner))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    if let Some(existing) = rows::load_account(&mut *tx, new.id).await? {
        return same_request(existing.account, &new);
    }
    let owned: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts WHERE owner = $1")
        .bind(new.owner.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    if usize::try_from(owned).unwrap_or(usize::MAX) >= ACCOUNTS_PER_OWNER_MAX {
        return Err(Error::TooManyAccounts { max: ACCOUNTS_PER_OWNER_MAX });
    }
    let account = Account::from_new(new.clone(), now);
    let inserted = sqlx::query(
        "INSERT INTO accounts (id, owner, name, currency, kind, status, overdraft_limit, created_at_ns) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(account.id.as_uuid())
    .bind(account.owner.as_uuid())
    .bind(&account.name)
    .bind(account.currency.code())
    .bind(kind)
    .bind(account.status.as_str())
    .bind(rows::limit_value(account.overdraft_limit))
    .bind(created_at)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {
            tx.commit().await.map_err(db_err)?;
            Ok(account)
        }
        // The same id opened at the same moment for another owner (whose lock this is not).
        Err(err) if is_unique_violation(&err) => {
            drop(tx);
            let existing = rows::load_account(pool, new.id).await?.ok_or_else(|| db_err(err))?;
            same_request(existing.account, &new)
        }
        Err(err) => Err(db_err(err)),
    }
}

/// An opening under a used id: a replay if it is the same request.
fn same_request(existing: Account, new: &NewAccount) -> Result<Account> {
    if existing.matches(new) { Ok(existing) } else { Err(Error::KeyReused(format!("account id {}", new.id))) }
}

/// The second key of an owner's advisory lock: 32 bits of its UUID (two owners sharing it only
/// wait for each other).
fn owner_lock_key(owner: CustomerId) -> i32 {
    let bytes = owner.as_uuid().as_bytes();
    // The last bytes: random in a UUID v7 (the first are its timestamp).
    i32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]])
}

/// Freezes, reopens or closes an account ([`rules::check_status_change`], on its state once its
/// lapsed holds are released).
pub(super) async fn set_status(
    pool: &PgPool,
    id: AccountId,
    status: AccountStatus,
    now: DateTime<Utc>,
) -> Result<Account> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let mut states = lock_accounts(&mut tx, &[*id.as_uuid()]).await?;
    let released = release_lapsed(&mut tx, &mut states, now).await?;
    let state = states.get_mut(&id).ok_or(Error::AccountNotFound(id))?;
    rules::check_status_change(state, status)?;
    if state.account.status == status && released.is_empty() {
        return Ok(state.account.clone());
    }
    sqlx::query("UPDATE accounts SET status = $2, held = $3 WHERE id = $1")
        .bind(id.as_uuid())
        .bind(status.as_str())
        .bind(state.held)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    state.account.status = status;
    Ok(state.account.clone())
}

/// Marks every hold lapsed by `now` expired, a bounded number of accounts per transaction;
/// returns how many.
pub(super) async fn expire_holds(pool: &PgPool, now: DateTime<Utc>) -> Result<u64> {
    let at = nanos(now)?;
    let mut expired = 0;
    loop {
        let accounts: Vec<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT account_id FROM holds WHERE status = 'active' AND expires_at_ns <= $1 \
             ORDER BY account_id LIMIT $2",
        )
        .bind(at)
        .bind(SWEEP_ACCOUNTS_PER_TRANSACTION)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
        if accounts.is_empty() {
            return Ok(expired);
        }
        let mut tx = pool.begin().await.map_err(db_err)?;
        let mut states = lock_accounts(&mut tx, &accounts).await?;
        let released = release_lapsed(&mut tx, &mut states, now).await?;
        expired += u64::try_from(released.len()).unwrap_or(u64::MAX);
        states.retain(|id, _| released.contains(id));
        write_held(&mut tx, &states).await?;
        tx.commit().await.map_err(db_err)?;
        if i64::try_from(accounts.len()).unwrap_or(i64::MAX) < SWEEP_ACCOUNTS_PER_TRANSACTION {
            return Ok(expired);
        }
    }
}

/// Stores the held amounts of `states`.
async fn write_held(conn: &mut PgConnection, states: &FxHashMap<AccountId, AccountState>) -> Result<()> {
    let (ids, held): (Vec<Uuid>, Vec<Decimal>) = states.values().map(|s| (*s.account.id.as_uuid(), s.held)).unzip();
    sqlx::query(
        "UPDATE accounts a SET held = u.held FROM UNNEST($1::uuid[], $2::numeric[]) AS u (id, held) WHERE a.id = u.id",
    )
    .bind(&ids)
    .bind(&held)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}
