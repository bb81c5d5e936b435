//! [`AccountReads`]: concurrent [`LedgerStore::account`](bank_core::ports::LedgerStore::account)
//! reads grouped into one `WHERE id = ANY($1)` query on the writer (a read
//! [`Batcher`](crate::postgres::batch::Batcher) job). Under load, accepting a transfer reads its
//! two accounts: one round trip per batch instead of two per transfer.

use async_trait::async_trait;
use bank_core::account::Account;
use bank_core::ids::AccountId;
use bank_core::{Error, Result};
use rustc_hash::FxHashMap;
use sqlx::PgConnection;
use uuid::Uuid;

use super::batch::copy_error;
use super::rows::{self, ACCOUNT_COLUMNS};
use crate::postgres::batch::BatchJob;
use crate::postgres::db_err;

/// The account-read job: each operation an account id, each answer the account (`None`: no such
/// account).
#[derive(Debug)]
pub(super) struct AccountReads;

#[async_trait]
impl BatchJob for AccountReads {
    type Op = AccountId;
    type Out = Result<Option<Account>>;
    const TRANSACTION: bool = false;

    async fn run(&self, conn: &mut PgConnection, ops: &[AccountId]) -> Result<Vec<Self::Out>> {
        let ids: Vec<Uuid> = ops.iter().map(|id| *id.as_uuid()).collect();
        let found = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY($1)"))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
        let mut accounts = FxHashMap::default();
        for row in &found {
            let account = rows::account_state(row)?.account;
            accounts.insert(account.id, account);
        }
        Ok(ops.iter().map(|id| Ok(accounts.get(id).cloned())).collect())
    }

    fn failed(&self, error: &Error) -> Self::Out {
        Err(copy_error(error))
    }
}
