//! [`TransferReads`]: concurrent [`TransferStore::get`](bank_core::ports::TransferStore::get)
//! reads grouped into one `WHERE id = ANY($1)` query on the writer (a read
//! [`Batcher`](crate::postgres::batch::Batcher) job): the worker reads every transfer it received
//! in one round trip instead of one each.

use async_trait::async_trait;
use bank_core::ids::TransferId;
use bank_core::transfer::Transfer;
use bank_core::{Error, Result};
use rustc_hash::FxHashMap;
use sqlx::PgConnection;
use uuid::Uuid;

use super::transfer_of;
use crate::postgres::batch::BatchJob;
use crate::postgres::db_err;

/// The transfer-read job: each operation a transfer id, each answer the transfer.
#[derive(Debug)]
pub(super) struct TransferReads;

#[async_trait]
impl BatchJob for TransferReads {
    type Op = TransferId;
    type Out = Result<Transfer>;
    const TRANSACTION: bool = false;

    async fn run(&self, conn: &mut PgConnection, ops: &[TransferId]) -> Result<Vec<Self::Out>> {
        let ids: Vec<Uuid> = ops.iter().map(|id| *id.as_uuid()).collect();
        let found = sqlx::query("SELECT seq, version, body::text AS body FROM transfers WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
        let mut transfers = FxHashMap::default();
        for row in &found {
            let transfer = transfer_of(row)?;
            transfers.insert(transfer.id, transfer);
        }
        Ok(ops.iter().map(|id| transfers.get(id).cloned().ok_or(Error::TransferNotFound(*id))).collect())
    }

    fn failed(&self, error: &Error) -> Self::Out {
        Err(Error::storage(error, error.is_retryable()))
    }
}
