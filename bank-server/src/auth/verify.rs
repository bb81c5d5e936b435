//! [`TokenVerifier`]: turns a bearer token into a [`Principal`], for built-in tokens (the local
//! Ed25519 key) or external ones (AWS Cognito, RS256 keys from a JWKS URL).
//!
//! Every check is explicit: the key is chosen by `kid`, and the algorithm is pinned per key
//! (EdDSA for the built-in key, RS256 for Cognito keys), so `alg: none` and HS256 tokens (even
//! signed with the public key as the HMAC secret) are refused before any signature check. `iss`,
//! the audience, `exp` and `nbf` (with [`LEEWAY_SECS`]) are then checked against the injected
//! clock. Built-in tokens must carry `amr` with both `pwd` and `otp`.
//!
//! External keys are cached; an unknown `kid` refetches the set at most once per
//! [`JWKS_REFRESH_SECS`], and at most [`JWKS_KEYS_MAX`] keys are kept.
//!
//! **Verified tokens are remembered** (by their SHA-256, never the token itself, at most
//! [`VERIFIED_MAX`] of them, each for at most [`VERIFIED_TTL`]): a client presents the same access
//! token on every request until it expires, and checking an Ed25519 signature took about a third
//! of the server's CPU on account views. Everything a token's bytes decide (key, algorithm,
//! signature, issuer, audience, second factor, subject, roles) cannot change for the same bytes;
//! what time decides (`exp`) is checked again on every use against the injected clock. Only
//! successes are remembered, so a refused token is checked in full each time; a refetch of the
//! external key set forgets them all (a key gone from the set stops verifying at once).

use std::collections::HashMap;
use std::sync::Arc;

use bank_core::clock::Clock;
use bank_core::ids::CustomerId;
use bank_core::users::Role;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::keys::SigningKeys;
use super::{AuthError, LEEWAY_SECS, Principal};

/// Keys kept from an external key set.
pub const JWKS_KEYS_MAX: usize = 16;
/// Minimum seconds between two fetches of the external key set.
pub const JWKS_REFRESH_SECS: i64 = 30;
/// Largest key-set document accepted.
pub const JWKS_BODY_BYTES_MAX: usize = 64 * 1024;
/// Timeout of a key-set fetch.
pub const JWKS_FETCH_TIMEOUT_SECS: u64 = 5;
/// Largest token accepted (bounds parsing work).
pub const TOKEN_BYTES_MAX: usize = 8 * 1024;
/// The Cognito group that grants [`Role::Operator`].
pub const OPERATOR_GROUP: &str = "operator";
/// Verified tokens remembered (32-byte digests and their principals: a few MiB at most).
pub const VERIFIED_MAX: u64 = 50_000;
/// How long a verified token is remembered (its expiry is still checked on every use).
pub const VERIFIED_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether a token expiring at `exp` has expired at `now` (seconds), leeway included.
fn expired(exp: i64, now: i64) -> bool {
    now >= exp.saturating_add(LEEWAY_SECS)
}

/// Digests of verified tokens and whom they speak for.
type Verified = moka::sync::Cache<[u8; 32], Principal>;

fn verified_cache() -> Verified {
    moka::sync::Cache::builder().max_capacity(VERIFIED_MAX).time_to_live(VERIFIED_TTL).build()
}

/// Verifies access tokens.
#[derive(Debug)]
pub struct TokenVerifier {
    mode: Mode,
    issuer: String,
    audience: String,
    clock: Arc<dyn Clock>,
    verified: Verified,
}

#[derive(Debug)]
enum Mode {
    BuiltIn(Arc<SigningKeys>),
    External(External),
}

#[derive(Debug)]
struct External {
    jwks_url: String,
    client: reqwest::Client,
    keys: RwLock<HashMap<String, (DecodingKey, Algorithm)>>,
    /// When the set was last fetched; also serializes fetches.
    fetched_at: tokio::sync::Mutex<Option<DateTime<Utc>>>,
}

/// Claims read from any token; which are required depends on the mode.
#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    token_use: Option<String>,
    #[serde(default)]
    roles: Vec<Role>,
    #[serde(default)]
    amr: Vec<String>,
    #[serde(default, rename = "cognito:groups")]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

impl TokenVerifier {
    /// Verifies tokens of the built-in issuer.
    pub fn built_in(keys: Arc<SigningKeys>, issuer: &str, audience: &str, clock: Arc<dyn Clock>) -> Self {
        TokenVerifier {
            mode: Mode::BuiltIn(keys),
            issuer: issuer.into(),
            audience: audience.into(),
            clock,
            verified: verified_cache(),
        }
    }

    /// Verifies Cognito access tokens: keys from `jwks_url`, `iss` = `issuer`, and `client_id`
    /// (or `aud`) = `audience`.
    pub fn external(jwks_url: &str, issuer: &str, audience: &str, clock: Arc<dyn Clock>) -> Result<Self, AuthError> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(JWKS_FETCH_TIMEOUT_SECS))
            .build()
            .map_err(|e| AuthError::KeyStore(format!("cannot build the HTTP client: {e}")))?;
        let external = External {
            jwks_url: jwks_url.into(),
            client,
            keys: RwLock::new(HashMap::new()),
            fetched_at: tokio::sync::Mutex::new(None),
        };
        Ok(TokenVerifier {
            mode: Mode::External(external),
            issuer: issuer.into(),
            audience: audience.into(),
            clock,
            verified: verified_cache(),
        })
    }

    /// Verifies `token` and answers whom it speaks for.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(AuthError::InvalidToken("too large"));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(principal) = self.verified.get(&digest) {
            if expired(principal.expires_at.timestamp(), self.clock.now().timestamp()) {
                self.verified.invalidate(&digest);
                return Err(AuthError::InvalidToken("expired"));
            }
            return Ok(principal);
        }
        let principal = self.verify_signed(token).await?;
        self.verified.insert(digest, principal.clone());
        Ok(principal)
    }

    /// [`Self::verify`] in full: key, algorithm, signature, then the claims.
    async fn verify_signed(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken("malformed"))?;
        let kid = header.kid.ok_or(AuthError::InvalidToken("no key id"))?;
        let (key, alg) = match &self.mode {
            Mode::BuiltIn(keys) if keys.kid() == kid => (keys.decoding_key().clone(), Algorithm::EdDSA),
            Mode::BuiltIn(_) => return Err(AuthError::InvalidToken("unknown key")),
            Mode::External(external) => external.key(&kid, self.clock.now(), &self.verified).await?,
        };
        if header.alg != alg {
            return Err(AuthError::InvalidToken("algorithm not allowed"));
        }
        let mut validation = Validation::new(alg);
        // Time and audience are checked below, against the injected clock and per mode.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => AuthError::InvalidToken("bad signature"),
                _ => AuthError::InvalidToken("malformed"),
            })?
            .claims;
        self.check(claims)
    }

    fn check(&self, claims: Claims) -> Result<Principal, AuthError> {
        if claims.iss != self.issuer {
            return Err(AuthError::InvalidToken("wrong issuer"));
        }
        let now = self.clock.now().timestamp();
        if expired(claims.exp, now) {
            return Err(AuthError::InvalidToken("expired"));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS)) {
            return Err(AuthError::InvalidToken("not yet valid"));
        }
        let expires_at = DateTime::<Utc>::from_timestamp(claims.exp, 0).ok_or(AuthError::InvalidToken("bad exp"))?;
        let user: CustomerId = claims.sub.parse().map_err(|_| AuthError::InvalidToken("bad subject"))?;
        let jti = claims.jti.unwrap_or_default();
        match &self.mode {
            Mode::BuiltIn(_) => {
                if !claims.aud.as_ref().is_some_and(|aud| aud.contains(&self.audience)) {
                    return Err(AuthError::InvalidToken("wrong audience"));
                }
                if !(claims.amr.iter().any(|m| m == "pwd") && claims.amr.iter().any(|m| m == "otp")) {
                    return Err(AuthError::MfaMissing);
                }
                if jti.is_empty() || claims.roles.is_empty() {
                    return Err(AuthError::InvalidToken("missing claims"));
                }
                Ok(Principal { user, roles: claims.roles, jti, expires_at })
            }
            Mode::External(_) => {
                if claims.token_use.as_deref().is_some_and(|usage| usage != "access") {
                    return Err(AuthError::InvalidToken("not an access token"));
                }
                let by_client = claims.client_id.as_deref() == Some(self.audience.as_str());
                let by_aud = claims.aud.as_ref().is_some_and(|aud| aud.contains(&self.audience));
                if !(by_client || by_aud) {
                    return Err(AuthError::InvalidToken("wrong audience"));
                }
                let mut roles = vec![Role::Customer];
                if claims.groups.iter().any(|g| g == OPERATOR_GROUP) {
                    roles.push(Role::Operator);
                }
                Ok(Principal { user, roles, jti, expires_at })
            }
        }
    }
}

impl External {
    /// The key `kid`, refetching the set if it is unknown and the last fetch is old enough. A
    /// refetch forgets the `verified` tokens (their key may be gone from the new set).
    async fn key(
        &self,
        kid: &str,
        now: DateTime<Utc>,
        verified: &Verified,
    ) -> Result<(DecodingKey, Algorithm), AuthError> {
        if let Some(found) = self.keys.read().get(kid) {
            return Ok(found.clone());
        }
        let mut fetched_at = self.fetched_at.lock().await;
        // Another caller may have fetched while this one waited.
        if let Some(found) = self.keys.read().get(kid) {
            return Ok(found.clone());
        }
        if fetched_at.is_some_and(|at| now < at + TimeDelta::seconds(JWKS_REFRESH_SECS)) {
            return Err(AuthError::InvalidToken("unknown key"));
        }
        *fetched_at = Some(now);
        let keys = self.fetch().await?;
        tracing::info!(keys = keys.len(), "fetched the external key set");
        let found = keys.get(kid).cloned();
        *self.keys.write() = keys;
        verified.invalidate_all();
        found.ok_or(AuthError::InvalidToken("unknown key"))
    }

    async fn fetch(&self) -> Result<HashMap<String, (DecodingKey, Algorithm)>, AuthError> {
        let fail = |e: reqwest::Error| AuthError::KeyStore(format!("cannot fetch the key set: {e}"));
        let response = self.client.get(&self.jwks_url).send().await.map_err(fail)?.error_for_status().map_err(fail)?;
        if response.content_length().is_some_and(|len| len > JWKS_BODY_BYTES_MAX as u64) {
            return Err(AuthError::KeyStore("the key set is too large".into()));
        }
        let body = response.bytes().await.map_err(fail)?;
        if body.len() > JWKS_BODY_BYTES_MAX {
            return Err(AuthError::KeyStore("the key set is too large".into()));
        }
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| AuthError::KeyStore(format!("unreadable key set: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in set.keys.iter().take(JWKS_KEYS_MAX) {
            let Some(kid) = jwk.common.key_id.clone() else { continue };
            // Only RS256 RSA keys: the algorithm is pinned per key, whatever a token's header says.
            let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else { continue };
            if !matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256)) {
                continue;
            }
            let Ok(key) = DecodingKey::from_rsa_components(&rsa.n, &rsa.e) else { continue };
            keys.insert(kid, (key, Algorithm::RS256));
        }
        Ok(keys)
    }
}
