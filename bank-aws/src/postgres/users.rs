//! [`PgUserStore`]: the [`UserStore`] on PostgreSQL, in the `users` and `refresh_tokens` tables
//! (migration `0004_users.sql`).
//!
//! Semantics are those of the reference `MemoryUserStore` (`bank_core::memory::users`), with one
//! visible difference: times are kept to the microsecond, and `create` answers the user as
//! stored (its `created_at` truncated), so what it returns is what every later read returns.
//!
//! # Why it is safe under concurrency
//! - `use_totp_step` is one conditional `UPDATE` (`… WHERE last_totp_step < $step`): concurrent
//!   claims of one step queue on the row lock, and each re-checks the condition against the row
//!   the winner left, so exactly one succeeds.
//! - `rotate_refresh` is one transaction that reads the old token `FOR UPDATE`: concurrent
//!   rotations of one token run one after the other; the first rotates, the others find it used
//!   and revoke the family (the safe side). A new hash already stored rolls everything back.
//! - `create` and `insert_refresh` report a taken email, id or hash (a unique index refuses the
//!   insert) as `KeyReused`, storing nothing.
//! - Every read goes to the writer: a login must see the user its registration just created.
//! - *Time* (expiry, purge) comes only from the injected [`Clock`].

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::clock::Clock;
use bank_core::ids::CustomerId;
use bank_core::users::{Email, RefreshToken, RefreshTokenHash, Role, Rotation, User, UserStore};
use bank_core::{Error, Result};
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{PgDb, RowOf, db_err, is_unique_violation};

/// Users and refresh tokens in PostgreSQL. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct PgUserStore {
    db: PgDb,
    clock: Arc<dyn Clock>,
}

impl PgUserStore {
    /// A store over `db`, reading time from `clock`.
    pub fn new(db: &PgDb, clock: Arc<dyn Clock>) -> Self {
        PgUserStore { db: db.clone(), clock }
    }
}

/// Decoding this store's rows.
const ROW: RowOf = RowOf("user row");

const USER_BY_EMAIL: &str =
    "SELECT id, email, password_hash, totp_secret, roles, created_at, last_totp_step FROM users WHERE email = $1";
const USER_BY_ID: &str =
    "SELECT id, email, password_hash, totp_secret, roles, created_at, last_totp_step FROM users WHERE id = $1";
const REFRESH_BY_HASH: &str =
    "SELECT id_hash, family, user_id, expires_at, used, revoked FROM refresh_tokens WHERE id_hash = $1";
const REFRESH_BY_HASH_FOR_UPDATE: &str =
    "SELECT id_hash, family, user_id, expires_at, used, revoked FROM refresh_tokens WHERE id_hash = $1 FOR UPDATE";

fn step_to_db(step: u64) -> Result<i64> {
    i64::try_from(step).map_err(|_| Error::InvalidInput("TOTP step out of range".into()))
}

fn user_of(row: &PgRow) -> Result<User> {
    let id = CustomerId::from_uuid(row.try_get("id").map_err(db_err)?).map_err(|e| ROW.corrupt(e))?;
    let email = Email::parse(row.try_get("email").map_err(db_err)?).map_err(|e| ROW.corrupt(e))?;
    let roles = row
        .try_get::<Vec<String>, _>("roles")
        .map_err(db_err)?
        .iter()
        .map(|name| name.parse::<Role>().map_err(|e| ROW.corrupt(e)))
        .collect::<Result<Vec<_>>>()?;
    let last_totp_step = row
        .try_get::<Option<i64>, _>("last_totp_step")
        .map_err(db_err)?
        .map(|step| u64::try_from(step).map_err(|_| ROW.corrupt("negative TOTP step")))
        .transpose()?;
    Ok(User {
        id,
        email,
        password_hash: row.try_get("password_hash").map_err(db_err)?,
        totp_secret: row.try_get("totp_secret").map_err(db_err)?,
        roles,
        created_at: row.try_get("created_at").map_err(db_err)?,
        last_totp_step,
    })
}

fn refresh_of(row: &PgRow) -> Result<RefreshToken> {
    let hash: Vec<u8> = row.try_get("id_hash").map_err(db_err)?;
    let hash: [u8; 32] = hash.try_into().map_err(|_| ROW.corrupt("id_hash is not 32 bytes"))?;
    Ok(RefreshToken {
        id_hash: RefreshTokenHash(hash),
        family: row.try_get("family").map_err(db_err)?,
        user: CustomerId::from_uuid(row.try_get("user_id").map_err(db_err)?).map_err(|e| ROW.corrupt(e))?,
        expires_at: row.try_get("expires_at").map_err(db_err)?,
        used: row.try_get("used").map_err(db_err)?,
        revoked: row.try_get("revoked").map_err(db_err)?,
    })
}

/// Inserts `token` unless its hash is stored (`false` then).
async fn insert_refresh_row<'c, E>(executor: E, token: &RefreshToken) -> Result<bool>
where
    E: sqlx::PgExecutor<'c>,
{
    let done = sqlx::query(
        "INSERT INTO refresh_tokens (id_hash, family, user_id, expires_at, used, revoked) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id_hash) DO NOTHING",
    )
    .bind(&token.id_hash.0[..])
    .bind(token.family)
    .bind(token.user.as_uuid())
    .bind(token.expires_at)
    .bind(token.used)
    .bind(token.revoked)
    .execute(executor)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

async fn revoke_family_rows<'c, E>(executor: E, family: Uuid) -> Result<u64>
where
    E: sqlx::PgExecutor<'c>,
{
    let done = sqlx::query("UPDATE refresh_tokens SET revoked = true WHERE family = $1 AND NOT revoked")
        .bind(family)
        .execute(executor)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected())
}

fn refresh_taken() -> Error {
    Error::KeyReused("the refresh token".into())
}

#[async_trait]
impl UserStore for PgUserStore {
    async fn create(&self, mut user: User) -> Result<User> {
        user.created_at = user.created_at.trunc_subsecs(6);
        let roles: Vec<&str> = user.roles.iter().map(|role| role.as_str()).collect();
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, password_hash, totp_secret, roles, created_at, last_totp_step) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(user.id.as_uuid())
        .bind(user.email.as_str())
        .bind(&user.password_hash)
        .bind(&user.totp_secret)
        .bind(roles)
        .bind(user.created_at)
        .bind(user.last_totp_step.map(step_to_db).transpose()?)
        .execute(self.db.writer())
        .await;
        match inserted {
            Ok(_) => return Ok(user),
            Err(err) if !is_unique_violation(&err) => return Err(db_err(err)),
            Err(_) => {}
        }
        // Taken: say which, the email first (users are never deleted, so it is still there).
        let email_taken: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)")
            .bind(user.email.as_str())
            .fetch_one(self.db.writer())
            .await
            .map_err(db_err)?;
        Err(Error::KeyReused(if email_taken { "the email address" } else { "the user id" }.into()))
    }

    async fn by_email(&self, email: &Email) -> Result<Option<User>> {
        let row =
            sqlx::query(USER_BY_EMAIL).bind(email.as_str()).fetch_optional(self.db.writer()).await.map_err(db_err)?;
        row.as_ref().map(user_of).transpose()
    }

    async fn by_id(&self, id: CustomerId) -> Result<Option<User>> {
        let row = sqlx::query(USER_BY_ID).bind(id.as_uuid()).fetch_optional(self.db.writer()).await.map_err(db_err)?;
        row.as_ref().map(user_of).transpose()
    }

    async fn use_totp_step(&self, user: CustomerId, step: u64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE users SET last_totp_step = $1 \
             WHERE id = $2 AND (last_totp_step IS NULL OR last_totp_step < $1)",
        )
        .bind(step_to_db(step)?)
        .bind(user.as_uuid())
        .execute(self.db.writer())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_refresh(&self, token: RefreshToken) -> Result<()> {
        if insert_refresh_row(self.db.writer(), &token).await? { Ok(()) } else { Err(refresh_taken()) }
    }

    async fn rotate_refresh(
        &self,
        old: &RefreshTokenHash,
        new: &RefreshTokenHash,
        new_expires_at: DateTime<Utc>,
    ) -> Result<Rotation> {
        let now = self.clock.now();
        let mut tx = self.db.writer().begin().await.map_err(db_err)?;
        let row =
            sqlx::query(REFRESH_BY_HASH_FOR_UPDATE).bind(&old.0[..]).fetch_optional(&mut *tx).await.map_err(db_err)?;
        let Some(current) = row.as_ref().map(refresh_of).transpose()?.filter(|t| !t.revoked) else {
            return Ok(Rotation::Invalid);
        };
        if current.used {
            revoke_family_rows(&mut *tx, current.family).await?;
            tx.commit().await.map_err(db_err)?;
            return Ok(Rotation::Reused { user: current.user, family: current.family });
        }
        if current.expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        let successor = RefreshToken::new(*new, current.family, current.user, new_expires_at);
        if !insert_refresh_row(&mut *tx, &successor).await? {
            // Dropping the transaction rolls it back: the old token stays unused.
            return Err(refresh_taken());
        }
        sqlx::query("UPDATE refresh_tokens SET used = true WHERE id_hash = $1")
            .bind(&old.0[..])
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Rotation::Rotated { user: current.user, family: current.family })
    }

    async fn refresh_token(&self, hash: &RefreshTokenHash) -> Result<Option<RefreshToken>> {
        let row =
            sqlx::query(REFRESH_BY_HASH).bind(&hash.0[..]).fetch_optional(self.db.writer()).await.map_err(db_err)?;
        row.as_ref().map(refresh_of).transpose()
    }

    async fn revoke_family(&self, family: Uuid) -> Result<u64> {
        revoke_family_rows(self.db.writer(), family).await
    }

    async fn purge_expired_refresh(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at <= $1")
            .bind(self.clock.now())
            .execute(self.db.writer())
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}
