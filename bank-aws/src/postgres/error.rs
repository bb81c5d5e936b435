//! PostgreSQL failures: [`PgError`] for connecting and migrating (start-up, named so the server can
//! point at the variable), and [`db_err`], which turns a failed query into `bank-core`'s typed
//! error with the right retry advice.

/// Which pool a start-up failure concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The writer (`BANK_DATABASE_URL`).
    Writer,
    /// The reader (`BANK_DATABASE_READER_URL`).
    Reader,
}

/// Connecting to or migrating the database failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL is malformed, the server is unreachable, or it refused the credentials.
    #[error("cannot connect to the {role:?} database: {source}")]
    Connect {
        /// Which pool.
        role: Role,
        /// What sqlx reported (never contains the password).
        source: sqlx::Error,
    },
    /// The database holds something else.
    #[error("database {database:?} is not this bank's: it holds {found}")]
    NotThisBank {
        /// Its name.
        database: String,
        /// What was found instead.
        found: String,
    },
    /// A newer binary migrated the database.
    #[error(
        "database {database:?} is at schema version {applied}, newer than this binary's {binary}: run a newer binary"
    )]
    Newer {
        /// Its name.
        database: String,
        /// The version it is at.
        applied: i64,
        /// This binary's newest version.
        binary: i64,
    },
    /// The schema is older than the binary.
    #[error(
        "database {database:?} is at schema version {applied}, this binary needs {binary}: run `bank-server migrate`"
    )]
    NotMigrated {
        /// Its name.
        database: String,
        /// The version it is at.
        applied: i64,
        /// This binary's newest version.
        binary: i64,
    },
    /// A migration failed.
    #[error("migrating database {database:?} failed: {source}")]
    Migrate {
        /// Its name.
        database: String,
        /// What failed.
        source: sqlx::migrate::MigrateError,
    },
    /// A query of the schema check failed.
    #[error("reading the schema of database {database:?} failed: {source}")]
    Query {
        /// Its name.
        database: String,
        /// What failed.
        source: sqlx::Error,
    },
}

/// SQLSTATEs after which the same call may succeed: connection lost or refused (class 08),
/// serialization failure, deadlock, too many connections, shutdown or terminated backend
/// (`pg_terminate_backend`), the server in recovery (a standby or a failover in progress), and a
/// read-only transaction (a writer URL that now points at a standby).
const RETRYABLE_STATES: [&str; 9] = ["40001", "40P01", "53300", "57P01", "57P02", "57P03", "25006", "55P03", "57014"];

/// A query's failure as `bank-core`'s [`bank_core::Error::Storage`], retryable when the same call
/// may succeed later (see [`RETRYABLE_STATES`]; I/O, pool and TLS failures are retryable too).
pub(crate) fn db_err(err: sqlx::Error) -> bank_core::Error {
    let retryable = match &err {
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("08") || RETRYABLE_STATES.contains(&code.as_ref()))
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        _ => false,
    };
    bank_core::Error::storage(format!("postgresql: {err}"), retryable)
}

/// Whether a failure is a unique-constraint violation (SQLSTATE 23505).
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// Decoding the rows of one kind (named in its errors: "undecodable transfer row: seq: -1"): a
/// value that does not decode is a non-retryable storage failure naming what and where, never a
/// guess.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowOf(pub(crate) &'static str);

impl RowOf {
    /// A value of such a row that does not decode.
    pub(crate) fn corrupt(self, what: impl std::fmt::Display) -> bank_core::Error {
        bank_core::Error::storage(format!("undecodable {}: {what}", self.0), false)
    }
}
