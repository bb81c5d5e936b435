//! [`TokenIssuer`]: the built-in identity provider. Registers users, logs them in with password
//! and TOTP, issues EdDSA access tokens and rotating refresh tokens, and logs them out.
//!
//! Login answers one generic [`AuthError::InvalidCredentials`] for an unknown email, a wrong
//! password and a wrong or replayed TOTP code, and hashes a password even for an unknown email, so
//! the answer reveals nothing about which accounts exist.
//!
//! # Login throttling
//!
//! Only failures are counted, in 15-minute windows, under three keys:
//!
//! - per (client IP, account): [`PAIR_FAILURES_MAX`] — a guesser at one account from one address;
//! - per account, from every IP: [`ACCOUNT_FAILURES_MAX`] — a guesser spread over many addresses;
//! - per client IP: [`AuthConfig::login_failures_per_ip`] (default [`IP_FAILURES_PER_IP_DEFAULT`],
//!   far above what a household or an office behind one NAT fails) — a sprayer trying many
//!   accounts from one address. This cap is consulted **only for an account that has failures
//!   of its own** in the window: a correct password and TOTP code for an account that has not
//!   failed is never refused because other accounts failed from the same IP, so one attacker
//!   behind a shared NAT cannot lock everyone else out. Past the cap, a sprayer gets one guess per
//!   account (its first failure marks the account), and every guess needs both the password and
//!   the current TOTP code.
//!
//! A successful login clears its (IP, account) and account counters. Requests to the login and
//! register routes are also rate limited per IP by the HTTP layer (`BANK_LOGIN_RATE_PER_IP`), at
//! a rate meant for a shared address.

use std::net::IpAddr;
use std::sync::Arc;

use bank_core::clock::Clock;
use bank_core::ids::CustomerId;
use bank_core::users::{Email, RefreshToken, RefreshTokenHash, Role, Rotation, User, UserStore};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use jsonwebtoken::{Algorithm, Header};
use rand::RngCore;
use rand::rngs::OsRng;
use uuid::Uuid;

use super::keys::SigningKeys;
use super::throttle::FailureThrottle;
use super::verify::TokenVerifier;
use super::{AccessClaims, AuthConfig, AuthError, passwords, totp};

/// Failed logins per (client IP, account) per window.
pub const PAIR_FAILURES_MAX: u32 = 5;
/// Failed logins per account, from every IP, per window.
pub const ACCOUNT_FAILURES_MAX: u32 = 10;
/// Default failed logins per client IP per window before accounts that failed are refused from it.
pub const IP_FAILURES_PER_IP_DEFAULT: u32 = 100;
/// The throttling window.
pub const FAILURE_WINDOW_SECS: i64 = 15 * 60;
/// Random bytes in a refresh token (256 bits).
pub const REFRESH_TOKEN_BYTES: usize = 32;

/// What registration hands back: the TOTP secret is shown once, to enrol an authenticator.
#[derive(Clone, PartialEq, Eq)]
pub struct Registered {
    /// The new user (and customer) id.
    pub user_id: CustomerId,
    /// The TOTP secret, base32.
    pub totp_secret: String,
    /// The `otpauth://` URI to show as a QR code.
    pub otpauth_uri: String,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered").field("user_id", &self.user_id).finish_non_exhaustive()
    }
}

/// An access token and a refresh token.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The EdDSA JWT.
    pub access_token: String,
    /// The opaque refresh token (base64url, 256 bits).
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

/// A refused login, with what the audit log needs: the user if the email named one, and why
/// (`throttled`, `unknown_user`, `wrong_password`, `wrong_totp`, `error`).
#[derive(Debug)]
pub struct LoginRefused {
    /// What the client is answered.
    pub error: AuthError,
    /// The user the email named, if any.
    pub user: Option<CustomerId>,
    /// Why, for the audit record.
    pub reason: &'static str,
}

impl LoginRefused {
    fn new(error: AuthError, user: Option<CustomerId>, reason: &'static str) -> Self {
        LoginRefused { error, user, reason }
    }
}

/// The built-in issuer.
#[derive(Debug)]
pub struct TokenIssuer {
    config: AuthConfig,
    keys: Arc<SigningKeys>,
    store: Arc<dyn UserStore>,
    clock: Arc<dyn Clock>,
    per_pair: FailureThrottle,
    per_account: FailureThrottle,
    per_ip: FailureThrottle,
}

fn ttl(duration: std::time::Duration) -> Result<TimeDelta, AuthError> {
    TimeDelta::from_std(duration).map_err(|_| AuthError::KeyStore("lifetime out of range".into()))
}

impl TokenIssuer {
    /// An issuer over `store`, with `config.signing_key`, or else loading (or creating) the
    /// signing key under `config.data_dir`.
    pub fn new(config: AuthConfig, store: Arc<dyn UserStore>, clock: Arc<dyn Clock>) -> Result<Self, AuthError> {
        config.validate()?;
        let keys = Arc::new(match &config.signing_key {
            Some(key) => SigningKeys::from_pkcs8_base64(key.expose())?,
            None => SigningKeys::load_or_create(&config.data_dir)?,
        });
        let window = TimeDelta::seconds(FAILURE_WINDOW_SECS);
        Ok(TokenIssuer {
            per_pair: FailureThrottle::new(PAIR_FAILURES_MAX, window, Arc::clone(&clock)),
            per_account: FailureThrottle::new(ACCOUNT_FAILURES_MAX, window, Arc::clone(&clock)),
            per_ip: FailureThrottle::new(config.login_failures_per_ip.max(1), window, Arc::clone(&clock)),
            config,
            keys,
            store,
            clock,
        })
    }

    /// The signing keys (for the JWKS endpoint: [`SigningKeys::jwks`]).
    pub fn keys(&self) -> &Arc<SigningKeys> {
        &self.keys
    }

    /// A verifier of this issuer's tokens.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::built_in(
            Arc::clone(&self.keys),
            &self.config.issuer,
            &self.config.audience,
            Arc::clone(&self.clock),
        )
    }

    /// Registers a customer; answers the TOTP secret to enrol.
    #[tracing::instrument(skip_all)]
    pub async fn register(&self, email: &str, password: &str) -> Result<Registered, AuthError> {
        self.create_user(email, password, Role::Customer).await
    }

    /// Creates a user with `role` (e.g. bootstrapping an operator).
    #[tracing::instrument(skip(self, email, password))]
    pub async fn create_user(&self, email: &str, password: &str, role: Role) -> Result<Registered, AuthError> {
        let email = Email::parse(email)?;
        let password_hash = passwords::hash(password).await?;
        let totp_secret = totp::generate_secret();
        let otpauth_uri = totp::otpauth_uri(&totp_secret, email.as_str())?;
        let now = self.clock.now();
        let user = User {
            id: CustomerId::at(now),
            email,
            password_hash,
            totp_secret: totp_secret.clone(),
            roles: vec![role],
            created_at: now,
            last_totp_step: None,
        };
        let user = self.store.create(user).await.map_err(|e| match e {
            bank_core::Error::KeyReused(_) => AuthError::EmailTaken,
            other => AuthError::Storage(other),
        })?;
        tracing::info!(user = %user.id, "user registered");
        Ok(Registered { user_id: user.id, totp_secret, otpauth_uri })
    }

    /// Logs in with password and TOTP code; see the module docs for the failure rules.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        totp_code: &str,
        client_ip: IpAddr,
    ) -> Result<Tokens, AuthError> {
        self.login_detailed(email, password, totp_code, client_ip).await.map(|(tokens, _)| tokens).map_err(|r| r.error)
    }

    /// [`TokenIssuer::login`], saying who logged in, or why the login was refused (for the audit
    /// log only: the client still gets one generic answer).
    #[tracing::instrument(skip(self, email, password, totp_code))]
    pub async fn login_detailed(
        &self,
        email: &str,
        password: &str,
        totp_code: &str,
        client_ip: IpAddr,
    ) -> Result<(Tokens, CustomerId), LoginRefused> {
        let ip_key = client_ip.to_string();
        let account_key = email.trim().to_lowercase();
        let pair_key = format!("{ip_key} {account_key}");
        let throttled =
            |retry_after_secs| LoginRefused::new(AuthError::Throttled { retry_after_secs }, None, "throttled");
        self.per_pair.check(&pair_key).map_err(throttled)?;
        self.per_account.check(&account_key).map_err(throttled)?;
        // The per-IP cap never refuses an account without failures (see the module docs).
        if self.per_account.failures(&account_key) > 0 {
            self.per_ip.check(&ip_key).map_err(throttled)?;
        }
        let failed = |error: AuthError| LoginRefused::new(error, None, "error");
        let user = match Email::parse(email) {
            Ok(email) => self.store.by_email(&email).await.map_err(|e| failed(e.into()))?,
            Err(_) => None,
        };
        let password_ok =
            passwords::verify(password, user.as_ref().map(|u| u.password_hash.clone())).await.map_err(failed)?;
        let authenticated = match (&user, password_ok) {
            (Some(user), true) => self.claim_totp(user, totp_code).await.map_err(failed)?,
            _ => false,
        };
        let reason = match (&user, password_ok) {
            (None, _) => "unknown_user",
            (Some(_), false) => "wrong_password",
            (Some(_), true) => "wrong_totp",
        };
        let Some(user) = user.clone().filter(|_| authenticated) else {
            self.per_ip.fail(&ip_key);
            self.per_pair.fail(&pair_key);
            self.per_account.fail(&account_key);
            tracing::info!("login refused");
            return Err(LoginRefused::new(AuthError::InvalidCredentials, user.map(|u| u.id), reason));
        };
        self.per_pair.reset(&pair_key);
        self.per_account.reset(&account_key);
        let family = Uuid::now_v7();
        let refresh_token = new_refresh_token();
        let expires_at = self.clock.now() + ttl(self.config.refresh_ttl).map_err(failed)?;
        self.store
            .insert_refresh(RefreshToken::new(RefreshTokenHash::of(&refresh_token), family, user.id, expires_at))
            .await
            .map_err(|e| failed(e.into()))?;
        tracing::info!(user = %user.id, "login");
        self.tokens(&user, refresh_token).map(|tokens| (tokens, user.id)).map_err(failed)
    }

    async fn claim_totp(&self, user: &User, code: &str) -> Result<bool, AuthError> {
        let now = u64::try_from(self.clock.now().timestamp()).unwrap_or(0);
        match totp::verify(&user.totp_secret, code, now) {
            Some(step) => Ok(self.store.use_totp_step(user.id, step).await?),
            None => Ok(false),
        }
    }

    /// Exchanges a refresh token for new tokens. A token presented a second time revokes its
    /// whole session ([`AuthError::RefreshReused`]).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, AuthError> {
        self.refresh_detailed(refresh_token).await.map(|(tokens, _)| tokens).map_err(|(error, _)| error)
    }

    /// [`TokenIssuer::refresh`], saying whose session it was (when the token was known).
    #[tracing::instrument(skip_all)]
    pub async fn refresh_detailed(
        &self,
        refresh_token: &str,
    ) -> Result<(Tokens, CustomerId), (AuthError, Option<CustomerId>)> {
        let old = RefreshTokenHash::of(refresh_token);
        let next = new_refresh_token();
        let expires_at = self.clock.now() + ttl(self.config.refresh_ttl).map_err(|e| (e, None))?;
        match self
            .store
            .rotate_refresh(&old, &RefreshTokenHash::of(&next), expires_at)
            .await
            .map_err(|e| (e.into(), None))?
        {
            Rotation::Rotated { user, .. } => {
                let found = self.store.by_id(user).await.map_err(|e| (e.into(), Some(user)))?;
                let found = found.ok_or((AuthError::InvalidToken("unknown user"), Some(user)))?;
                self.tokens(&found, next).map(|tokens| (tokens, user)).map_err(|e| (e, Some(user)))
            }
            Rotation::Reused { user, family } => {
                tracing::warn!(user = %user, %family, "refresh token reused; session revoked");
                Err((AuthError::RefreshReused, Some(user)))
            }
            Rotation::Invalid => Err((AuthError::InvalidToken("refresh token unknown, expired or revoked"), None)),
        }
    }

    /// Ends the session of `refresh_token` (its whole family). Unknown tokens are ignored.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), AuthError> {
        self.logout_detailed(refresh_token).await.map(|_| ())
    }

    /// [`TokenIssuer::logout`], answering whose session ended (`None`: the token was unknown).
    #[tracing::instrument(skip_all)]
    pub async fn logout_detailed(&self, refresh_token: &str) -> Result<Option<CustomerId>, AuthError> {
        if let Some(token) = self.store.refresh_token(&RefreshTokenHash::of(refresh_token)).await? {
            self.store.revoke_family(token.family).await?;
            tracing::info!(user = %token.user, "logout");
            return Ok(Some(token.user));
        }
        Ok(None)
    }

    fn tokens(&self, user: &User, refresh_token: String) -> Result<Tokens, AuthError> {
        let now = self.clock.now();
        let access_ttl = ttl(self.config.access_ttl)?;
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            sub: user.id.to_string(),
            exp: (now + access_ttl).timestamp(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            jti: Uuid::new_v4().to_string(),
            roles: user.roles.clone(),
            amr: vec!["pwd".into(), "otp".into()],
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.keys.kid().to_owned());
        let access_token = jsonwebtoken::encode(&header, &claims, self.keys.encoding_key())
            .map_err(|e| AuthError::KeyStore(format!("cannot sign: {e}")))?;
        Ok(Tokens { access_token, refresh_token, expires_in: self.config.access_ttl.as_secs() })
    }
}

fn new_refresh_token() -> String {
    let mut bytes = [0u8; REFRESH_TOKEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}
