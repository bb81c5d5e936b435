//! Encoding of ledger values in SQLite columns, and the queries both the writer and the readers
//! use. Money is exact decimal TEXT, ids are UUID BLOBs, times are INTEGER nanoseconds (UTC).
//! A value that does not decode is reported as a non-retryable storage failure (a damaged or
//! hand-edited database), never guessed at.

use std::str::FromStr;

use bank_core::Result;
use bank_core::account::{Account, AccountKind, AccountState, AccountStatus, OverdraftLimit};
use bank_core::ids::{AccountId, CustomerId, EntryId, HoldId, TransferId};
use bank_core::ledger::{EntryKey, Hold, HoldStatus, PostedEntry, PostedLine, Side};
use bank_core::money::{Currency, Money};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row};

pub(crate) use crate::db::rows::{RowOf, db_err, fetch_all, fetch_optional, is_unique_violation, nanos, time};
use rust_decimal::Decimal;
use uuid::Uuid;

/// Columns of an account row, in the order [`account_state`] reads them.
pub(super) const ACCOUNT_COLUMNS: &str =
    "id, owner, name, currency, kind, status, overdraft_limit, posted, held, sequence, created_at";

/// Rows of the ledger's tables.
pub(super) const ROW: RowOf = RowOf("ledger row");

pub(super) fn decimal(text: &str) -> Result<Decimal> {
    Decimal::from_str_exact(text).map_err(|_| ROW.corrupt(format!("decimal {text:?}")))
}

fn currency(code: &str) -> Result<Currency> {
    Currency::from_str(code).map_err(|_| ROW.corrupt(format!("currency {code:?}")))
}

fn money(amount: &str, code: &str) -> Result<Money> {
    Money::new(decimal(amount)?, currency(code)?).map_err(|e| ROW.corrupt(e))
}

pub(super) fn uuid_to<T>(uuid: Uuid, make: fn(Uuid) -> Result<T>) -> Result<T> {
    make(uuid).map_err(|e| ROW.corrupt(e))
}

fn leg(value: i64) -> Result<u16> {
    u16::try_from(value).map_err(|_| ROW.corrupt(format!("leg {value}")))
}

fn sequence(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| ROW.corrupt(format!("sequence {value}")))
}

/// A sequence number as SQLite's signed integer (sequences never come near `i64::MAX`).
pub(super) fn sql_sequence(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn status(text: &str) -> Result<AccountStatus> {
    AccountStatus::parse(text).ok_or_else(|| ROW.corrupt(format!("account status {text:?}")))
}

fn kind(text: &str) -> Result<AccountKind> {
    AccountKind::parse(text).ok_or_else(|| ROW.corrupt(format!("account kind {text:?}")))
}

fn side(text: &str) -> Result<Side> {
    Side::parse(text).ok_or_else(|| ROW.corrupt(format!("side {text:?}")))
}

fn hold_status(text: &str) -> Result<HoldStatus> {
    HoldStatus::parse(text).ok_or_else(|| ROW.corrupt(format!("hold status {text:?}")))
}

/// The overdraft limit column: the limit as text, `NULL` for unlimited.
pub(super) fn limit_text(limit: OverdraftLimit) -> Option<String> {
    match limit {
        OverdraftLimit::Limited(limit) => Some(limit.to_string()),
        OverdraftLimit::Unlimited => None,
    }
}

/// An account row (selected with [`ACCOUNT_COLUMNS`]) as the state the rules work on.
pub(super) fn account_state(row: &Row<'_>) -> Result<AccountState> {
    let limit: Option<String> = ROW.get(row, "overdraft_limit")?;
    let account = Account {
        id: uuid_to(ROW.get(row, "id")?, AccountId::from_uuid)?,
        owner: uuid_to(ROW.get(row, "owner")?, CustomerId::from_uuid)?,
        name: ROW.get(row, "name")?,
        currency: currency(&ROW.get::<String>(row, "currency")?)?,
        kind: kind(&ROW.get::<String>(row, "kind")?)?,
        status: status(&ROW.get::<String>(row, "status")?)?,
        overdraft_limit: match limit {
            Some(text) => OverdraftLimit::Limited(decimal(&text)?),
            None => OverdraftLimit::Unlimited,
        },
        created_at: time(ROW.get(row, "created_at")?),
    };
    Ok(AccountState {
        account,
        posted: decimal(&ROW.get::<String>(row, "posted")?)?,
        held: decimal(&ROW.get::<String>(row, "held")?)?,
        sequence: sequence(ROW.get(row, "sequence")?)?,
    })
}

/// One account's row, if it exists.
pub(crate) fn load_account(conn: &Connection, id: AccountId) -> Result<Option<AccountState>> {
    fetch_optional(conn, ACCOUNT_BY_ID, [id.as_uuid()], account_state)
}

/// Selects one account by id (`?1`).
const ACCOUNT_BY_ID: &str = "SELECT id, owner, name, currency, kind, status, overdraft_limit, posted, held, sequence, \
                             created_at FROM accounts WHERE id = ?1";

/// The entry posted under `key`, with its lines in order.
pub(crate) fn load_entry(conn: &Connection, key: EntryKey) -> Result<Option<PostedEntry>> {
    let head = conn
        .prepare_cached(
            "SELECT id, entry_id, reference, posted_at, reverses_transfer_id, reverses_leg \
             FROM entries WHERE transfer_id = ?1 AND leg = ?2",
        )
        .map_err(db_err)?
        .query_row(rusqlite::params![key.transfer_id.as_uuid(), i64::from(key.leg)], |row| {
            Ok((
                row.get::<_, i64>("id"),
                row.get::<_, Uuid>("entry_id"),
                row.get::<_, String>("reference"),
                row.get::<_, i64>("posted_at"),
                row.get::<_, Option<Uuid>>("reverses_transfer_id"),
                row.get::<_, Option<i64>>("reverses_leg"),
            ))
        })
        .optional()
        .map_err(db_err)?;
    let Some((rowid, entry_id, reference, posted_at, reverses_transfer, reverses_leg)) = head else {
        return Ok(None);
    };
    let decoded = |e: rusqlite::Error| ROW.corrupt(format!("entry: {e}"));
    let (rowid, reverses_transfer, reverses_leg) =
        (rowid.map_err(decoded)?, reverses_transfer.map_err(decoded)?, reverses_leg.map_err(decoded)?);
    let reverses = match (reverses_transfer, reverses_leg) {
        (Some(transfer), Some(l)) => Some(EntryKey::new(uuid_to(transfer, TransferId::from_uuid)?, leg(l)?)),
        _ => None,
    };
    let lines = fetch_all(
        conn,
        "SELECT account_id, side, amount, currency, sequence, balance_after \
         FROM entry_lines WHERE entry = ?1 ORDER BY line_no",
        [rowid],
        |line| {
            Ok(PostedLine {
                account_id: uuid_to(ROW.get(line, "account_id")?, AccountId::from_uuid)?,
                side: side(&ROW.get::<String>(line, "side")?)?,
                money: money(&ROW.get::<String>(line, "amount")?, &ROW.get::<String>(line, "currency")?)?,
                sequence: sequence(ROW.get(line, "sequence")?)?,
                balance_after: decimal(&ROW.get::<String>(line, "balance_after")?)?,
            })
        },
    )?;
    Ok(Some(PostedEntry {
        id: uuid_to(entry_id.map_err(decoded)?, EntryId::from_uuid)?,
        key,
        lines,
        reference: reference.map_err(decoded)?,
        posted_at: time(posted_at.map_err(decoded)?),
        reverses,
    }))
}

/// A hold as stored (an expired-but-unmarked hold still reads `Active`; callers apply
/// [`Hold::as_of`]).
pub(crate) fn load_hold(conn: &Connection, id: HoldId) -> Result<Option<Hold>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT account_id, amount, currency, status, created_at, expires_at, reference, posted_transfer_id, \
             posted_leg FROM holds WHERE id = ?1",
        )
        .map_err(db_err)?;
    let mut rows = statement.query([id.as_uuid()]).map_err(db_err)?;
    let Some(row) = rows.next().map_err(db_err)? else { return Ok(None) };
    let posted_transfer: Option<Uuid> = ROW.get(row, "posted_transfer_id")?;
    let posted_leg: Option<i64> = ROW.get(row, "posted_leg")?;
    let posted_entry = match (posted_transfer, posted_leg) {
        (Some(transfer), Some(l)) => Some(EntryKey::new(uuid_to(transfer, TransferId::from_uuid)?, leg(l)?)),
        _ => None,
    };
    Ok(Some(Hold {
        id,
        account_id: uuid_to(ROW.get(row, "account_id")?, AccountId::from_uuid)?,
        money: money(&ROW.get::<String>(row, "amount")?, &ROW.get::<String>(row, "currency")?)?,
        status: hold_status(&ROW.get::<String>(row, "status")?)?,
        created_at: time(ROW.get(row, "created_at")?),
        expires_at: time(ROW.get(row, "expires_at")?),
        reference: ROW.get(row, "reference")?,
        posted_entry,
    }))
}

/// The holds of `account` still marked active: (expires_at, id, amount).
pub(crate) fn active_holds(conn: &Connection, account: AccountId) -> Result<Vec<(DateTime<Utc>, HoldId, Decimal)>> {
    let holds = fetch_all(
        conn,
        "SELECT id, amount, expires_at FROM holds WHERE account_id = ?1 AND status = 'active'",
        [account.as_uuid()],
        |row| {
            Ok((
                time(ROW.get(row, "expires_at")?),
                uuid_to(ROW.get(row, "id")?, HoldId::from_uuid)?,
                decimal(&ROW.get::<String>(row, "amount")?)?,
            ))
        },
    )?;
    Ok(holds)
}

/// One page of an account's history, newest first: lines of account `?1` with a sequence below
/// `?2`, at most `?3`, in the columns [`history_item`] reads by position.
pub(super) const HISTORY_PAGE: &str = "SELECT l.sequence, l.side, l.amount, l.currency, l.balance_after, \
     e.entry_id, e.transfer_id, e.leg, e.reference, e.posted_at FROM entry_lines l JOIN entries e ON e.id = l.entry \
     WHERE l.account_id = ?1 AND l.sequence < ?2 ORDER BY l.sequence DESC LIMIT ?3";

/// One row of [`HISTORY_PAGE`] as an item, by position (a first page decodes fifty of them).
pub(super) fn history_item(row: &Row<'_>) -> Result<bank_core::ledger::HistoryItem> {
    Ok(bank_core::ledger::HistoryItem {
        entry_id: uuid_to(ROW.at(row, 5, "entry_id")?, EntryId::from_uuid)?,
        key: EntryKey::new(
            uuid_to(ROW.at(row, 6, "transfer_id")?, TransferId::from_uuid)?,
            leg(ROW.at(row, 7, "leg")?)?,
        ),
        sequence: sequence(ROW.at(row, 0, "sequence")?)?,
        direction: side(&ROW.at::<String>(row, 1, "side")?)?,
        money: money(&ROW.at::<String>(row, 2, "amount")?, &ROW.at::<String>(row, 3, "currency")?)?,
        balance_after: decimal(&ROW.at::<String>(row, 4, "balance_after")?)?,
        reference: ROW.at(row, 8, "reference")?,
        posted_at: time(ROW.at(row, 9, "posted_at")?),
    })
}

/// Parses a currency column (trial balance).
pub(super) fn currency_column(row: &Row<'_>) -> Result<Currency> {
    currency(&ROW.get::<String>(row, "currency")?)
}

/// Parses a `side` column.
pub(super) fn side_column(row: &Row<'_>) -> Result<Side> {
    side(&ROW.get::<String>(row, "side")?)
}

/// Parses a decimal column by name.
pub(super) fn decimal_column(row: &Row<'_>, column: &str) -> Result<Decimal> {
    decimal(&ROW.get::<String>(row, column)?)
}
