//! Users of the built-in token issuer and their refresh tokens: the types and the [`UserStore`]
//! port.
//!
//! A user's id *is* the [`CustomerId`] that owns accounts, so a verified token names the owner of
//! accounts directly. The store keeps only what authentication needs: a normalized [`Email`], the
//! PHC string of the password hash, the TOTP secret, roles, and the last TOTP step used (so a code
//! works once). Refresh tokens are kept as the SHA-256 of the token ([`RefreshTokenHash`]); the
//! token itself is never stored.
//!
//! This module owns no cryptography beyond that hash and no policy (password rules, throttling,
//! token lifetimes): those live in the server's `auth` module. Adapters must make
//! [`UserStore::use_totp_step`] and [`UserStore::rotate_refresh`] atomic.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids::CustomerId;

/// Longest accepted email address (RFC 5321 path limit).
pub const EMAIL_LEN_MAX: usize = 254;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Owns accounts and moves its own money.
    Customer,
    /// Bank staff: back-office operations.
    Operator,
}

impl Role {
    /// The lowercase name used in tokens and storage.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "customer" => Ok(Role::Customer),
            "operator" => Ok(Role::Operator),
            _ => Err(Error::InvalidInput("unknown role".into())),
        }
    }
}

/// An email address, trimmed and lowercased, so that one mailbox has one spelling and
/// `Alice@Example.com ` and `alice@example.com` are the same user.
///
/// Only the shape is checked (one `@` with text on both sides, no whitespace, at most
/// [`EMAIL_LEN_MAX`] bytes): whether the mailbox exists is not this type's business.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Email(String);

impl Email {
    /// Normalizes and checks `text`.
    pub fn parse(text: &str) -> Result<Email> {
        let normalized = text.trim().to_lowercase();
        let invalid = || Error::InvalidInput("not a valid email address".into());
        if normalized.len() > EMAIL_LEN_MAX || normalized.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = normalized.split_once('@').ok_or_else(invalid)?;
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return Err(invalid());
        }
        Ok(Email(normalized))
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Email::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A user of the built-in issuer.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The user's id, which is also the customer id owning its accounts.
    pub id: CustomerId,
    /// The normalized email address (unique).
    pub email: Email,
    /// The password hash as a PHC string (`$argon2id$…`).
    pub password_hash: String,
    /// The TOTP shared secret, base32.
    pub totp_secret: String,
    /// What the user may do; never empty.
    pub roles: Vec<Role>,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
    /// The last TOTP time step accepted (a code of this step or earlier is refused).
    pub last_totp_step: Option<u64>,
}

impl fmt::Debug for User {
    // The hash and the secret are redacted so that a logged user leaks nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("password_hash", &"<redacted>")
            .field("totp_secret", &"<redacted>")
            .field("roles", &self.roles)
            .field("created_at", &self.created_at)
            .field("last_totp_step", &self.last_totp_step)
            .finish()
    }
}

/// The SHA-256 of a refresh token: what the store keeps instead of the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefreshTokenHash(pub [u8; 32]);

impl RefreshTokenHash {
    /// The hash of the token as the client holds it.
    pub fn of(token: &str) -> RefreshTokenHash {
        RefreshTokenHash(Sha256::digest(token.as_bytes()).into())
    }
}

impl fmt::Debug for RefreshTokenHash {
    // A prefix is enough to correlate in logs; the hash is not a secret but need not be spelled out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RefreshTokenHash({}…)", hex::encode(&self.0[..4]))
    }
}

/// One refresh token of a family. A family starts at login; every rotation adds a token to it, and
/// presenting a used token again revokes the whole family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// SHA-256 of the token.
    pub id_hash: RefreshTokenHash,
    /// The login session this token belongs to.
    pub family: Uuid,
    /// Whose token it is.
    pub user: CustomerId,
    /// The token is refused from this instant on (`now >= expires_at`).
    pub expires_at: DateTime<Utc>,
    /// Already exchanged for a successor.
    pub used: bool,
    /// Revoked (logout, or reuse detected in its family).
    pub revoked: bool,
}

impl RefreshToken {
    /// A fresh, unused token of `family`.
    pub fn new(id_hash: RefreshTokenHash, family: Uuid, user: CustomerId, expires_at: DateTime<Utc>) -> Self {
        RefreshToken { id_hash, family, user, expires_at, used: false, revoked: false }
    }
}

/// The outcome of [`UserStore::rotate_refresh`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The old token was valid: it is now used and the new one is stored in its family.
    Rotated {
        /// The token's owner.
        user: CustomerId,
        /// The family, which the new token joined.
        family: Uuid,
    },
    /// The old token had been used already: someone replayed it, so the whole family (including
    /// the token it was exchanged for) is now revoked. Nothing new was stored.
    Reused {
        /// The token's owner.
        user: CustomerId,
        /// The revoked family.
        family: Uuid,
    },
    /// Unknown, expired or revoked. Nothing changed.
    Invalid,
}

/// Storage of users and refresh tokens.
///
/// Every method is atomic. Time (refresh expiry) comes from the store's clock.
#[async_trait]
pub trait UserStore: Send + Sync + fmt::Debug {
    /// Stores a new user. An email or id already taken is refused with [`Error::KeyReused`]
    /// (and nothing is stored).
    async fn create(&self, user: User) -> Result<User>;

    /// The user with this email, if any.
    async fn by_email(&self, email: &Email) -> Result<Option<User>>;

    /// The user with this id, if any.
    async fn by_id(&self, id: CustomerId) -> Result<Option<User>>;

    /// Claims TOTP step `step` for `user`: `true` only if it is later than every step claimed
    /// before (then it becomes the last one), so a code is accepted at most once, even by
    /// concurrent logins. An unknown user answers `false`.
    async fn use_totp_step(&self, user: CustomerId, step: u64) -> Result<bool>;

    /// Stores a new refresh token (the first of a family, at login). A hash already stored is
    /// refused with [`Error::KeyReused`].
    async fn insert_refresh(&self, token: RefreshToken) -> Result<()>;

    /// Exchanges the token hashed `old` for a new token hashed `new` in the same family, valid
    /// until `new_expires_at`; see [`Rotation`] for the outcomes. Checked in this order: unknown or
    /// revoked → `Invalid`; already used → revoke the family, `Reused`; expired → `Invalid`.
    async fn rotate_refresh(
        &self,
        old: &RefreshTokenHash,
        new: &RefreshTokenHash,
        new_expires_at: DateTime<Utc>,
    ) -> Result<Rotation>;

    /// The refresh token hashed `hash`, if stored (in any state).
    async fn refresh_token(&self, hash: &RefreshTokenHash) -> Result<Option<RefreshToken>>;

    /// Revokes every token of `family`; answers how many were not revoked before.
    async fn revoke_family(&self, family: Uuid) -> Result<u64>;

    /// Deletes refresh tokens past their expiry; answers how many. The owner calls it periodically
    /// to bound the store.
    async fn purge_expired_refresh(&self) -> Result<u64>;
}
