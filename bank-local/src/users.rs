//! [`SqliteUserStore`]: the durable [`UserStore`], in the `users` and `refresh_tokens` tables
//! (migration `0006_users.sql`).
//!
//! Semantics are exactly those of the reference `MemoryUserStore` (`bank_core::memory::users`).
//!
//! # Why it is safe
//!
//! - *Atomicity*: every change is one job of the database's single writer ([`WriterHandle::run`]):
//!   it reads, decides and writes with no other writer in between, so of concurrent claims of one
//!   TOTP step exactly one wins, and of concurrent rotations of one refresh token exactly one
//!   rotates (the others see reuse, which revokes the family: the safe side).
//! - *Durability*: a call answers only after its batch committed.
//! - *Time* comes only from the injected [`Clock`], read inside the writer job.
//! - Reads (`by_email`, `by_id`, `refresh_token`) run on read-only connections; WAL readers see every
//!   committed write.

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::clock::Clock;
use bank_core::ids::CustomerId;
use bank_core::users::{Email, RefreshToken, RefreshTokenHash, Role, Rotation, User, UserStore};
use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use crate::db::LocalDb;
use crate::db::rows::{RowOf, db_err, fetch_optional, nanos, time};
use crate::db::writer::WriterHandle;

/// Users and refresh tokens in SQLite. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteUserStore {
    writer: WriterHandle,
    db: LocalDb,
}

impl SqliteUserStore {
    /// A store over `db`, writing through the database's one writer ([`WriterHandle::for_db`]:
    /// started here if no store of `db` runs it yet). Time is read from the writer's clock
    /// (`clock` if this starts it).
    pub fn new(db: &LocalDb, clock: Arc<dyn Clock>) -> Self {
        let writer = WriterHandle::for_db(db, clock);
        SqliteUserStore { writer, db: db.clone() }
    }
}

/// Rows of this store's tables.
const ROW: RowOf = RowOf("user row");

fn roles_text(roles: &[Role]) -> String {
    roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(",")
}

fn step_to_db(step: u64) -> Result<i64> {
    i64::try_from(step).map_err(|_| Error::InvalidInput("TOTP step out of range".into()))
}

const USER_BY_EMAIL: &str =
    "SELECT id, email, password_hash, totp_secret, roles, created_at, last_totp_step FROM users WHERE email = ?1";
const USER_BY_ID: &str =
    "SELECT id, email, password_hash, totp_secret, roles, created_at, last_totp_step FROM users WHERE id = ?1";

fn user_of(row: &Row<'_>) -> Result<User> {
    let id = CustomerId::from_uuid(ROW.get::<Uuid>(row, "id")?).map_err(|e| ROW.corrupt(e))?;
    let email = Email::parse(&ROW.get::<String>(row, "email")?).map_err(|e| ROW.corrupt(e))?;
    let roles = ROW
        .get::<String>(row, "roles")?
        .split(',')
        .map(|name| name.parse::<Role>().map_err(|e| ROW.corrupt(e)))
        .collect::<Result<Vec<_>>>()?;
    let last_totp_step = ROW
        .get::<Option<i64>>(row, "last_totp_step")?
        .map(|step| u64::try_from(step).map_err(|_| ROW.corrupt("negative TOTP step")))
        .transpose()?;
    Ok(User {
        id,
        email,
        password_hash: ROW.get(row, "password_hash")?,
        totp_secret: ROW.get(row, "totp_secret")?,
        roles,
        created_at: time(ROW.get(row, "created_at")?),
        last_totp_step,
    })
}

const REFRESH_BY_HASH: &str =
    "SELECT id_hash, family, user_id, expires_at, used, revoked FROM refresh_tokens WHERE id_hash = ?1";

fn refresh_of(row: &Row<'_>) -> Result<RefreshToken> {
    let hash: Vec<u8> = ROW.get(row, "id_hash")?;
    let hash: [u8; 32] = hash.try_into().map_err(|_| ROW.corrupt("id_hash is not 32 bytes"))?;
    Ok(RefreshToken {
        id_hash: RefreshTokenHash(hash),
        family: ROW.get(row, "family")?,
        user: CustomerId::from_uuid(ROW.get::<Uuid>(row, "user_id")?).map_err(|e| ROW.corrupt(e))?,
        expires_at: time(ROW.get(row, "expires_at")?),
        used: ROW.get(row, "used")?,
        revoked: ROW.get(row, "revoked")?,
    })
}

fn insert_refresh_row(conn: &Connection, token: &RefreshToken) -> Result<()> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM refresh_tokens WHERE id_hash = ?1")
        .and_then(|mut s| s.query_row([&token.id_hash.0[..]], |_| Ok(())).optional())
        .map_err(db_err)?;
    if exists.is_some() {
        return Err(Error::KeyReused("the refresh token".into()));
    }
    let expires_at = nanos(token.expires_at)?;
    conn.prepare_cached(
        "INSERT INTO refresh_tokens (id_hash, family, user_id, expires_at, used, revoked) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            &token.id_hash.0[..],
            token.family,
            token.user.as_uuid(),
            expires_at,
            token.used,
            token.revoked
        ])
    })
    .map_err(db_err)?;
    Ok(())
}

fn revoke_family_rows(conn: &Connection, family: Uuid) -> Result<u64> {
    let done = conn
        .prepare_cached("UPDATE refresh_tokens SET revoked = 1 WHERE family = ?1 AND revoked = 0")
        .and_then(|mut s| s.execute([family]))
        .map_err(db_err)?;
    Ok(done as u64)
}

/// The writer job of `create`.
fn create_job(conn: &Connection, user: User) -> Result<User> {
    let taken: Vec<bool> = conn
        .prepare_cached("SELECT email = ?1 AS same_email FROM users WHERE email = ?1 OR id = ?2")
        .and_then(|mut s| {
            s.query_map(params![user.email.as_str(), user.id.as_uuid()], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(db_err)?;
    if taken.iter().any(|same_email| *same_email) {
        return Err(Error::KeyReused("the email address".into()));
    }
    if !taken.is_empty() {
        return Err(Error::KeyReused("the user id".into()));
    }
    let last_totp_step = user.last_totp_step.map(step_to_db).transpose()?;
    let created_at = nanos(user.created_at)?;
    conn.prepare_cached(
        "INSERT INTO users (id, email, password_hash, totp_secret, roles, created_at, last_totp_step) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            user.id.as_uuid(),
            user.email.as_str(),
            &user.password_hash,
            &user.totp_secret,
            roles_text(&user.roles),
            created_at,
            last_totp_step
        ])
    })
    .map_err(db_err)?;
    Ok(user)
}

/// The writer job of `rotate_refresh`.
fn rotate_job(
    conn: &Connection,
    now: DateTime<Utc>,
    old: RefreshTokenHash,
    new: RefreshTokenHash,
    new_expires_at: DateTime<Utc>,
) -> Result<Rotation> {
    let current = fetch_optional(conn, REFRESH_BY_HASH, [&old.0[..]], refresh_of)?;
    let Some(current) = current.filter(|t| !t.revoked) else {
        return Ok(Rotation::Invalid);
    };
    if current.used {
        revoke_family_rows(conn, current.family)?;
        return Ok(Rotation::Reused { user: current.user, family: current.family });
    }
    if current.expires_at <= now {
        return Ok(Rotation::Invalid);
    }
    conn.prepare_cached("UPDATE refresh_tokens SET used = 1 WHERE id_hash = ?1")
        .and_then(|mut s| s.execute([&old.0[..]]))
        .map_err(db_err)?;
    insert_refresh_row(conn, &RefreshToken::new(new, current.family, current.user, new_expires_at))?;
    Ok(Rotation::Rotated { user: current.user, family: current.family })
}

#[async_trait]
impl UserStore for SqliteUserStore {
    async fn create(&self, user: User) -> Result<User> {
        self.writer.run(move |conn| create_job(conn, user)).await
    }

    async fn by_email(&self, email: &Email) -> Result<Option<User>> {
        self.db.read(|conn| fetch_optional(conn, USER_BY_EMAIL, [email.as_str()], user_of))
    }

    async fn by_id(&self, id: CustomerId) -> Result<Option<User>> {
        self.db.read(|conn| fetch_optional(conn, USER_BY_ID, [id.as_uuid()], user_of))
    }

    async fn use_totp_step(&self, user: CustomerId, step: u64) -> Result<bool> {
        let step = step_to_db(step)?;
        self.writer
            .run(move |conn| {
                // One conditional UPDATE: read, decide and write in a single statement.
                let done = conn
                    .prepare_cached(
                        "UPDATE users SET last_totp_step = ?1 \
                         WHERE id = ?2 AND (last_totp_step IS NULL OR last_totp_step < ?1)",
                    )
                    .and_then(|mut s| s.execute(params![step, user.as_uuid()]))
                    .map_err(db_err)?;
                Ok(done == 1)
            })
            .await
    }

    async fn insert_refresh(&self, token: RefreshToken) -> Result<()> {
        self.writer.run(move |conn| insert_refresh_row(conn, &token)).await
    }

    async fn rotate_refresh(
        &self,
        old: &RefreshTokenHash,
        new: &RefreshTokenHash,
        new_expires_at: DateTime<Utc>,
    ) -> Result<Rotation> {
        let (old, new) = (*old, *new);
        let clock = Arc::clone(self.writer.clock());
        self.writer.run(move |conn| rotate_job(conn, clock.now(), old, new, new_expires_at)).await
    }

    async fn refresh_token(&self, hash: &RefreshTokenHash) -> Result<Option<RefreshToken>> {
        self.db.read(|conn| fetch_optional(conn, REFRESH_BY_HASH, [&hash.0[..]], refresh_of))
    }

    async fn revoke_family(&self, family: Uuid) -> Result<u64> {
        self.writer.run(move |conn| revoke_family_rows(conn, family)).await
    }

    async fn purge_expired_refresh(&self) -> Result<u64> {
        let clock = Arc::clone(self.writer.clock());
        self.writer
            .run(move |conn| {
                let now = nanos(clock.now())?;
                let done = conn
                    .prepare_cached("DELETE FROM refresh_tokens WHERE expires_at <= ?1")
                    .and_then(|mut s| s.execute([now]))
                    .map_err(db_err)?;
                Ok(done as u64)
            })
            .await
    }
}
