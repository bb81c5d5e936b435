//! Writing the ledger's tables directly, as a buggy or hostile writer would (and as another
//! process racing the store does), to show what the database itself refuses.

use bank_core::ids::{AccountId, TransferId};
use bank_core::ledger::EntryKey;
use sqlx::PgConnection;

/// One line as written by hand.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawLine {
    pub(crate) account: AccountId,
    pub(crate) side: &'static str,
    pub(crate) amount: &'static str,
    pub(crate) currency: &'static str,
    pub(crate) sequence: i64,
    pub(crate) balance_after: &'static str,
}

impl RawLine {
    pub(crate) fn debit(account: AccountId, amount: &'static str, sequence: i64, balance_after: &'static str) -> Self {
        RawLine { account, side: "debit", amount, currency: "USD", sequence, balance_after }
    }

    pub(crate) fn credit(account: AccountId, amount: &'static str, sequence: i64, balance_after: &'static str) -> Self {
        RawLine { account, side: "credit", amount, currency: "USD", sequence, balance_after }
    }
}

/// A fresh key.
pub(crate) fn key() -> EntryKey {
    EntryKey::new(TransferId::new(), 0)
}

/// Inserts an entry row claiming `line_count` lines, and `lines` as lines 0, 1, …
pub(crate) async fn insert_entry(
    conn: &mut PgConnection,
    key: EntryKey,
    line_count: i16,
    lines: &[RawLine],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO entries (transfer_id, leg, entry_id, line_count, reference, posted_at_ns) \
         VALUES ($1, $2, gen_random_uuid(), $3, 'by hand', 0)",
    )
    .bind(key.transfer_id.as_uuid())
    .bind(i32::from(key.leg))
    .bind(line_count)
    .execute(&mut *conn)
    .await?;
    for (line_no, line) in (0i16..).zip(lines) {
        insert_line(conn, key, line_no, line_count, line).await?;
    }
    Ok(())
}

/// Inserts one line of entry `key` in slot `line_no`.
pub(crate) async fn insert_line(
    conn: &mut PgConnection,
    key: EntryKey,
    line_no: i16,
    line_count: i16,
    line: &RawLine,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO entry_lines (transfer_id, leg, line_no, line_count, account_id, side, amount, currency, \
                                  sequence, balance_after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7::numeric, $8, $9, $10::numeric)",
    )
    .bind(key.transfer_id.as_uuid())
    .bind(i32::from(key.leg))
    .bind(line_no)
    .bind(line_count)
    .bind(line.account.as_uuid())
    .bind(line.side)
    .bind(line.amount)
    .bind(line.currency)
    .bind(line.sequence)
    .bind(line.balance_after)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sets an account's stored posted balance and sequence.
pub(crate) async fn set_balance(
    conn: &mut PgConnection,
    account: AccountId,
    posted: &str,
    sequence: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET posted = $2::numeric, sequence = $3 WHERE id = $1")
        .bind(account.as_uuid())
        .bind(posted)
        .bind(sequence)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A complete, correct posting of `amount` from `from` to `to` written by hand, each account at
/// the given (sequence, balance) after it.
pub(crate) async fn post_by_hand(
    conn: &mut PgConnection,
    key: EntryKey,
    from: (AccountId, i64, &'static str),
    to: (AccountId, i64, &'static str),
    amount: &'static str,
) -> Result<(), sqlx::Error> {
    let lines = [RawLine::debit(from.0, amount, from.1, from.2), RawLine::credit(to.0, amount, to.1, to.2)];
    insert_entry(conn, key, 2, &lines).await?;
    set_balance(conn, from.0, from.2, from.1).await?;
    set_balance(conn, to.0, to.2, to.1).await
}

/// The message (and SQLSTATE) of a database error.
pub(crate) fn message(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => format!("{} ({})", db.message(), db.code().unwrap_or_default()),
        other => other.to_string(),
    }
}
