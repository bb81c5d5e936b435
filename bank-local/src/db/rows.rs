//! Row helpers every store of the crate uses: SQLite errors as [`Error::Storage`] (retryable when
//! the database was busy or the disk full), cached-statement queries decoding each row, [`RowOf`] (a value that
//! does not decode is a non-retryable failure naming the row kind and column, never a guess),
//! times as INTEGER nanoseconds (UTC).

use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use rusqlite::types::FromSql;
use rusqlite::{Connection, Params, Row};

/// A storage failure from SQLite: retryable when the database was busy or locked, or the disk
/// was full (`SQLITE_FULL`: the statement or transaction failed whole, and the same write succeeds
/// once there is room — see [`crate::space`]).
pub(crate) fn db_err(err: rusqlite::Error) -> Error {
    let retryable = matches!(
        &err,
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked | rusqlite::ErrorCode::DiskFull
            )
    );
    Error::Storage { message: format!("sqlite: {err}"), retryable }
}

/// Runs the cached statement `sql` with `params` and decodes every row with `decode`.
pub(crate) fn fetch_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    mut decode: impl FnMut(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = statement.query(params).map_err(db_err)?;
    let mut all = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        all.push(decode(row)?);
    }
    Ok(all)
}

/// Runs the cached statement `sql` with `params` and decodes its first row, if any.
pub(crate) fn fetch_optional<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    decode: impl FnOnce(&Row<'_>) -> Result<T>,
) -> Result<Option<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = statement.query(params).map_err(db_err)?;
    rows.next().map_err(db_err)?.map(decode).transpose()
}

/// Whether `err` is a UNIQUE or PRIMARY KEY constraint failure.
pub(crate) fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Decoding the rows of one kind (named in its errors: "undecodable queue row: seq: ..."). Every
/// store's row decoding goes through one, so a damaged value always reads as a non-retryable
/// storage failure naming what and where.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowOf(pub(crate) &'static str);

impl RowOf {
    /// A value of such a row that does not decode.
    pub(crate) fn corrupt(self, what: impl std::fmt::Display) -> Error {
        Error::Storage { message: format!("undecodable {}: {what}", self.0), retryable: false }
    }

    /// Column `column` of `row`.
    pub(crate) fn get<T: FromSql>(self, row: &Row<'_>, column: &str) -> Result<T> {
        row.get(column).map_err(|e| self.corrupt(format!("{column}: {e}")))
    }

    /// Column `index` of `row`, which is named `column` (checked in debug builds).
    ///
    /// For decoders of many rows: [`RowOf::get`] finds a column by comparing its name with every
    /// column's name in turn, for every value — about half of the decoding of a page of ledger
    /// history or of audit records, whose queries select ten columns.
    pub(crate) fn at<T: FromSql>(self, row: &Row<'_>, index: usize, column: &str) -> Result<T> {
        debug_assert_eq!(row.as_ref().column_name(index).ok(), Some(column), "column {index} of a {}", self.0);
        row.get(index).map_err(|e| self.corrupt(format!("{column}: {e}")))
    }
}

/// `at` as INTEGER nanoseconds (UTC); a time outside SQLite's range is refused.
pub(crate) fn nanos(at: DateTime<Utc>) -> Result<i64> {
    at.timestamp_nanos_opt().ok_or_else(|| Error::InvalidInput("time outside the storable range".into()))
}

/// INTEGER nanoseconds back to a time.
pub(crate) fn time(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

/// A count as an SQL integer (`LIMIT ?`, offsets): saturates instead of wrapping.
pub(crate) fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SQLITE_FULL`, made by a page limit instead of a full disk: retryable, and the write
    /// succeeds once the limit is raised.
    #[test]
    fn a_full_database_is_a_retryable_failure() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (v BLOB); PRAGMA max_page_count = 3;").expect("setup");
        let full = conn.execute("INSERT INTO t VALUES (zeroblob(100000))", []).expect_err("over the page limit");
        let error = db_err(full);
        assert!(error.is_retryable(), "{error}");
        assert!(error.to_string().contains("full"), "{error}");
        conn.execute_batch("PRAGMA max_page_count = 1000;").expect("room");
        conn.execute("INSERT INTO t VALUES (zeroblob(100000))", []).expect("taken once there is room");
    }

    #[test]
    fn a_constraint_failure_is_not_retryable() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);").expect("setup");
        let error = db_err(conn.execute("INSERT INTO t VALUES (1)", []).expect_err("duplicate"));
        assert!(!error.is_retryable(), "{error}");
    }
}
