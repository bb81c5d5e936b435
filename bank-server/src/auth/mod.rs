//! Authentication: passwords, TOTP, signing keys, the built-in token issuer and token
//! verification (built-in tokens or external Cognito tokens).
//!
//! - [`passwords`]: the password rule and argon2id hashing (on the blocking pool).
//! - [`totp`]: TOTP secrets, `otpauth://` URIs and code checking (the step is then claimed once
//!   through [`bank_core::users::UserStore::use_totp_step`]).
//! - [`keys`]: the Ed25519 signing key, persisted under `<data_dir>/keys/`, and its JWK Set.
//! - [`throttle`]: bounded counters of failed logins per account and per IP.
//! - [`issuer`]: [`issuer::TokenIssuer`], registration, login, refresh rotation, logout.
//! - [`verify`]: [`verify::TokenVerifier`], the one place a bearer token becomes a [`Principal`].
//!
//! No HTTP here. Nothing in this module logs a token, a password, a TOTP code or a secret.

use std::path::PathBuf;
use std::time::Duration;

use bank_core::ids::CustomerId;
use bank_core::users::Role;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub mod issuer;
pub mod keys;
pub mod passwords;
pub mod throttle;
pub mod totp;
pub mod verify;

/// Longest access-token lifetime the configuration accepts.
pub const ACCESS_TTL_MAX: Duration = Duration::from_secs(15 * 60);
/// Default refresh-token lifetime.
pub const REFRESH_TTL_DEFAULT: Duration = Duration::from_secs(30 * 24 * 3600);
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 30;

/// Every authentication failure. Messages never contain a token, password, code or secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Wrong email, password or TOTP code (deliberately indistinguishable).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The password breaks the password rule.
    #[error("weak password: {0}")]
    WeakPassword(String),
    /// The email address is already registered.
    #[error("the email address is already registered")]
    EmailTaken,
    /// Too many failed logins; retry after this many seconds.
    #[error("too many failed attempts; retry in {retry_after_secs} s")]
    Throttled {
        /// Seconds until a new attempt is accepted.
        retry_after_secs: u64,
    },
    /// The token is malformed, badly signed, expired or not meant for us.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// The token was not obtained with both a password and a second factor.
    #[error("the token lacks multi-factor authentication")]
    MfaMissing,
    /// A used refresh token was presented again: its whole session is revoked.
    #[error("refresh token reused; the session is revoked")]
    RefreshReused,
    /// The signing key could not be read, created or used, or the key set could not be fetched.
    #[error("key store: {0}")]
    KeyStore(String),
    /// The user store failed.
    #[error(transparent)]
    Storage(#[from] bank_core::Error),
}

/// Configuration of the built-in issuer.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `iss` of issued tokens.
    pub issuer: String,
    /// `aud` of issued tokens.
    pub audience: String,
    /// Access-token lifetime; at most [`ACCESS_TTL_MAX`].
    pub access_ttl: Duration,
    /// Refresh-token lifetime.
    pub refresh_ttl: Duration,
    /// The data directory; the signing key lives in `<data_dir>/keys/` unless `signing_key` is
    /// given.
    pub data_dir: PathBuf,
    /// The signing key itself (base64 of its PKCS#8 DER, `BANK_JWT_SIGNING_KEY`), shared by every
    /// process that issues tokens; `None`: the key file under `data_dir`.
    pub signing_key: Option<crate::config::Secret>,
    /// Failed logins per client IP per 15 minutes before accounts that failed are refused from
    /// that IP (accounts without failures never are; see [`issuer`]).
    pub login_failures_per_ip: u32,
}

impl AuthConfig {
    /// Safe local defaults over `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        AuthConfig {
            issuer: "http://127.0.0.1:8080".into(),
            audience: "bank-api".into(),
            access_ttl: ACCESS_TTL_MAX,
            refresh_ttl: REFRESH_TTL_DEFAULT,
            data_dir: data_dir.into(),
            signing_key: None,
            login_failures_per_ip: issuer::IP_FAILURES_PER_IP_DEFAULT,
        }
    }

    /// Refuses lifetimes that are zero, or an access lifetime over [`ACCESS_TTL_MAX`].
    pub fn validate(&self) -> Result<(), AuthError> {
        if self.access_ttl.is_zero() || self.access_ttl > ACCESS_TTL_MAX {
            return Err(AuthError::KeyStore("access_ttl must be between 1 s and 15 min".into()));
        }
        if self.refresh_ttl.is_zero() || self.refresh_ttl < self.access_ttl {
            return Err(AuthError::KeyStore("refresh_ttl must be at least access_ttl".into()));
        }
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Err(AuthError::KeyStore("issuer and audience must not be empty".into()));
        }
        Ok(())
    }
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user, which is the customer owning accounts.
    pub user: CustomerId,
    /// What the user may do.
    pub roles: Vec<Role>,
    /// The token's id (`jti`), for revocation lists and audit.
    pub jti: String,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
}

impl Principal {
    /// Whether the principal has `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The claims of a built-in access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id (UUID).
    pub jti: String,
    /// Roles, lowercase.
    pub roles: Vec<Role>,
    /// Authentication methods (`pwd`, `otp`).
    pub amr: Vec<String>,
}
