//! The ledger's values in PostgreSQL columns, and the reads the batch job and the port's read
//! methods share: accounts, entries with their lines, holds.
//!
//! Money is `NUMERIC` (exact), ids are `UUID`, times are `BIGINT` nanoseconds since the Unix epoch
//! (exact round trip; see the migration). A value that does not decode is a non-retryable storage
//! failure (a damaged or hand-edited row), never guessed at. Nothing here writes.

use std::str::FromStr;

use bank_core::account::{Account, AccountKind, AccountState, AccountStatus, OverdraftLimit};
use bank_core::ids::{AccountId, CustomerId, EntryId, HoldId, TransferId};
use bank_core::ledger::{EntryKey, HistoryItem, Hold, HoldStatus, PostedEntry, PostedLine, Side};
use bank_core::money::{Currency, Money};
use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

use crate::postgres::db_err;

/// Columns of an account row, in the order [`account_state`] reads them (by name).
pub(super) const ACCOUNT_COLUMNS: &str =
    "id, owner, name, currency, kind, status, overdraft_limit, posted, held, sequence, created_at_ns";

/// Columns of a hold row for [`hold`].
pub(super) const HOLD_COLUMNS: &str = "id, account_id, amount, currency, status, created_at_ns, expires_at_ns, \
                                       reference, posted_transfer_id, posted_leg";

/// A row that does not decode.
pub(super) fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::Storage { message: format!("postgresql: a ledger row does not decode: {what}"), retryable: false }
}

/// Column `name` of `row`.
pub(super) fn get<'r, T>(row: &'r PgRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name).map_err(|e| corrupt(format!("column {name}: {e}")))
}

/// A time as stored: nanoseconds since the Unix epoch (years 1677 to 2262).
pub(super) fn nanos(at: DateTime<Utc>) -> Result<i64> {
    at.timestamp_nanos_opt().ok_or_else(|| Error::InvalidInput(format!("time {at} is outside 1677..2262")))
}

pub(super) fn time(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

/// A sequence number as PostgreSQL's `BIGINT` (sequences never come near `i64::MAX`; a cursor
/// past it means "from the newest").
pub(super) fn sql_sequence(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn sequence(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| corrupt(format!("sequence {value}")))
}

fn leg(value: i32) -> Result<u16> {
    u16::try_from(value).map_err(|_| corrupt(format!("leg {value}")))
}

fn currency(code: &str) -> Result<Currency> {
    Currency::from_str(code).map_err(|_| corrupt(format!("currency {code:?}")))
}

fn money(amount: Decimal, code: &str) -> Result<Money> {
    Money::new(amount, currency(code)?).map_err(corrupt)
}

fn id<T>(uuid: Uuid, make: fn(Uuid) -> Result<T>) -> Result<T> {
    make(uuid).map_err(corrupt)
}

/// An entry key from its two columns.
fn key(transfer_id: Uuid, leg_value: i32) -> Result<EntryKey> {
    Ok(EntryKey::new(id(transfer_id, TransferId::from_uuid)?, leg(leg_value)?))
}

/// The key columns of an optional key (a reversal's original, a hold's posting).
fn optional_key(transfer_id: Option<Uuid>, leg_value: Option<i32>) -> Result<Option<EntryKey>> {
    match (transfer_id, leg_value) {
        (Some(transfer_id), Some(leg_value)) => Ok(Some(key(transfer_id, leg_value)?)),
        (None, None) => Ok(None),
        _ => Err(corrupt("half an entry key")),
    }
}

fn status(text: &str) -> Result<AccountStatus> {
    AccountStatus::parse(text).ok_or_else(|| corrupt(format!("account status {text:?}")))
}

fn kind(text: &str) -> Result<AccountKind> {
    AccountKind::parse(text).ok_or_else(|| corrupt(format!("account kind {text:?}")))
}

fn side(text: &str) -> Result<Side> {
    Side::parse(text).ok_or_else(|| corrupt(format!("side {text:?}")))
}

fn hold_status(text: &str) -> Result<HoldStatus> {
    HoldStatus::parse(text).ok_or_else(|| corrupt(format!("hold status {text:?}")))
}

/// The overdraft limit column: the limit, `NULL` for unlimited.
pub(super) fn limit_value(limit: OverdraftLimit) -> Option<Decimal> {
    match limit {
        OverdraftLimit::Limited(limit) => Some(limit),
        OverdraftLimit::Unlimited => None,
    }
}

/// An account row (selected with [`ACCOUNT_COLUMNS`]) as the state the rules work on.
pub(super) fn account_state(row: &PgRow) -> Result<AccountState> {
    let account = Account {
        id: id(get(row, "id")?, AccountId::from_uuid)?,
        owner: id(get(row, "owner")?, CustomerId::from_uuid)?,
        name: get(row, "name")?,
        currency: currency(get(row, "currency")?)?,
        kind: kind(get(row, "kind")?)?,
        status: status(get(row, "status")?)?,
        overdraft_limit: match get::<Option<Decimal>>(row, "overdraft_limit")? {
            Some(limit) => OverdraftLimit::Limited(limit),
            None => OverdraftLimit::Unlimited,
        },
        created_at: time(get(row, "created_at_ns")?),
    };
    Ok(AccountState {
        account,
        posted: get(row, "posted")?,
        held: get(row, "held")?,
        sequence: sequence(get(row, "sequence")?)?,
    })
}

/// One account as stored (its `held` may still count holds that lapsed since its last write).
pub(super) async fn load_account(db: impl PgExecutor<'_>, id: AccountId) -> Result<Option<AccountState>> {
    let row = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"))
        .bind(id.as_uuid())
        .fetch_optional(db)
        .await
        .map_err(db_err)?;
    row.as_ref().map(account_state).transpose()
}

/// A hold row (selected with [`HOLD_COLUMNS`]) as stored: a lapsed hold that no write marked yet
/// still reads `Active` (callers apply [`Hold::as_of`]).
pub(super) fn hold(row: &PgRow) -> Result<Hold> {
    Ok(Hold {
        id: id(get(row, "id")?, HoldId::from_uuid)?,
        account_id: id(get(row, "account_id")?, AccountId::from_uuid)?,
        money: money(get(row, "amount")?, get(row, "currency")?)?,
        status: hold_status(get(row, "status")?)?,
        created_at: time(get(row, "created_at_ns")?),
        expires_at: time(get(row, "expires_at_ns")?),
        reference: get(row, "reference")?,
        posted_entry: optional_key(get(row, "posted_transfer_id")?, get(row, "posted_leg")?)?,
    })
}

/// The holds among `ids` that exist, as stored.
pub(super) async fn load_holds(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<FxHashMap<HoldId, Hold>> {
    if ids.is_empty() {
        return Ok(FxHashMap::default());
    }
    let rows = sqlx::query(&format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ANY($1)"))
        .bind(ids)
        .fetch_all(db)
        .await
        .map_err(db_err)?;
    rows.iter().map(|row| hold(row).map(|h| (h.id, h))).collect()
}

/// The entries posted under `keys` that exist, each with its lines in order.
pub(super) async fn load_entries(
    db: impl PgExecutor<'_>,
    keys: impl IntoIterator<Item = EntryKey>,
) -> Result<FxHashMap<EntryKey, PostedEntry>> {
    let (transfer_ids, legs): (Vec<Uuid>, Vec<i32>) =
        keys.into_iter().map(|k| (*k.transfer_id.as_uuid(), i32::from(k.leg))).unzip();
    if transfer_ids.is_empty() {
        return Ok(FxHashMap::default());
    }
    let rows = sqlx::query(
        "SELECT e.transfer_id, e.leg, e.entry_id, e.reference, e.posted_at_ns, e.reverses_transfer_id, \
                e.reverses_leg, l.account_id, l.side, l.amount, l.currency, l.sequence, l.balance_after \
           FROM (SELECT DISTINCT * FROM UNNEST($1::uuid[], $2::int4[])) AS k (transfer_id, leg) \
           JOIN entries e ON e.transfer_id = k.transfer_id AND e.leg = k.leg \
           JOIN entry_lines l ON l.transfer_id = e.transfer_id AND l.leg = e.leg \
          ORDER BY e.transfer_id, e.leg, l.line_no",
    )
    .bind(&transfer_ids)
    .bind(&legs)
    .fetch_all(db)
    .await
    .map_err(db_err)?;
    let mut entries: FxHashMap<EntryKey, PostedEntry> = FxHashMap::default();
    for row in &rows {
        let key = key(get(row, "transfer_id")?, get(row, "leg")?)?;
        let line = PostedLine {
            account_id: id(get(row, "account_id")?, AccountId::from_uuid)?,
            side: side(get(row, "side")?)?,
            money: money(get(row, "amount")?, get(row, "currency")?)?,
            sequence: sequence(get(row, "sequence")?)?,
            balance_after: get(row, "balance_after")?,
        };
        match entries.get_mut(&key) {
            Some(entry) => entry.lines.push(line),
            None => {
                let entry = PostedEntry {
                    id: id(get(row, "entry_id")?, EntryId::from_uuid)?,
                    key,
                    lines: vec![line],
                    reference: get(row, "reference")?,
                    posted_at: time(get(row, "posted_at_ns")?),
                    reverses: optional_key(get(row, "reverses_transfer_id")?, get(row, "reverses_leg")?)?,
                };
                entries.insert(key, entry);
            }
        }
    }
    Ok(entries)
}

/// Which of `originals` a stored entry reverses already.
pub(super) async fn reversed(db: impl PgExecutor<'_>, originals: &[EntryKey]) -> Result<Vec<EntryKey>> {
    if originals.is_empty() {
        return Ok(Vec::new());
    }
    let (transfer_ids, legs): (Vec<Uuid>, Vec<i32>) =
        originals.iter().map(|k| (*k.transfer_id.as_uuid(), i32::from(k.leg))).unzip();
    let rows = sqlx::query(
        "SELECT e.reverses_transfer_id, e.reverses_leg FROM entries e \
           JOIN UNNEST($1::uuid[], $2::int4[]) AS k (transfer_id, leg) \
             ON e.reverses_transfer_id = k.transfer_id AND e.reverses_leg = k.leg",
    )
    .bind(&transfer_ids)
    .bind(&legs)
    .fetch_all(db)
    .await
    .map_err(db_err)?;
    rows.iter().map(|row| key(get(row, "reverses_transfer_id")?, get(row, "reverses_leg")?)).collect()
}

/// A history row: a line joined with its entry.
pub(super) fn history_item(row: &PgRow) -> Result<HistoryItem> {
    Ok(HistoryItem {
        entry_id: id(get(row, "entry_id")?, EntryId::from_uuid)?,
        key: key(get(row, "transfer_id")?, get(row, "leg")?)?,
        sequence: sequence(get(row, "sequence")?)?,
        direction: side(get(row, "side")?)?,
        money: money(get(row, "amount")?, get(row, "currency")?)?,
        balance_after: get(row, "balance_after")?,
        reference: get(row, "reference")?,
        posted_at: time(get(row, "posted_at_ns")?),
    })
}
