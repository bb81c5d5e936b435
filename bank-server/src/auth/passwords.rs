//! The password rule and argon2id hashing.
//!
//! Hashes are PHC strings with argon2id and the crate's default parameters (m = 19 MiB, t = 2,
//! p = 1: the OWASP recommendation). Hashing and verifying are CPU-bound, so they run on Tokio's
//! blocking pool.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::AuthError;

/// Shortest accepted password, in characters.
pub const PASSWORD_CHARS_MIN: usize = 12;
/// Longest accepted password, in characters (bounds hashing work per request).
pub const PASSWORD_CHARS_MAX: usize = 128;

/// Checks the password rule: 12 to 128 characters.
pub fn check_rule(password: &str) -> Result<(), AuthError> {
    let chars = password.chars().count();
    if chars < PASSWORD_CHARS_MIN {
        return Err(AuthError::WeakPassword(format!("at least {PASSWORD_CHARS_MIN} characters")));
    }
    if chars > PASSWORD_CHARS_MAX {
        return Err(AuthError::WeakPassword(format!("at most {PASSWORD_CHARS_MAX} characters")));
    }
    Ok(())
}

fn hash_now(password: &[u8]) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::KeyStore(format!("password hashing failed: {e}")))
}

/// Hashes `password` (after checking the rule) on the blocking pool.
pub async fn hash(password: &str) -> Result<String, AuthError> {
    check_rule(password)?;
    let password = password.as_bytes().to_vec();
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|_| AuthError::KeyStore("the hashing task failed".into()))?
}

/// A hash of a random password, verified against when the email is unknown so that an unknown
/// email costs as much as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_now(uuid::Uuid::new_v4().as_bytes()).unwrap_or_default())
}

/// Whether `password` matches `phc` (or, with `None`, runs the same work and answers false), on
/// the blocking pool. A malformed stored hash answers false.
pub async fn verify(password: &str, phc: Option<String>) -> Result<bool, AuthError> {
    if password.chars().count() > PASSWORD_CHARS_MAX {
        return Ok(false);
    }
    let password = password.as_bytes().to_vec();
    tokio::task::spawn_blocking(move || {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&phc) else { return false };
        Argon2::default().verify_password(&password, &parsed).is_ok() && known
    })
    .await
    .map_err(|_| AuthError::KeyStore("the hashing task failed".into()))
}
