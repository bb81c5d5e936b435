//! TOTP (RFC 6238): SHA-1, 6 digits, 30 s steps, one step of skew either way.
//!
//! [`verify`] answers the time step a code matches; the caller then claims it with
//! `UserStore::use_totp_step`, so each code logs in at most once.

use rand::RngCore;
use rand::rngs::OsRng;
use totp_rs::{Algorithm, Secret, TOTP};

use super::AuthError;

/// Seconds per step.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Steps accepted before and after the current one.
pub const SKEW_STEPS: u64 = 1;
/// Secret length: 160 bits.
pub const SECRET_BYTES: usize = 20;
/// The issuer shown by authenticator apps.
pub const ISSUER: &str = "Bank";

/// A new random 160-bit secret, base32 (no padding).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    OsRng.fill_bytes(&mut bytes);
    match Secret::Raw(bytes.to_vec()).to_encoded() {
        Secret::Encoded(text) => text,
        // `to_encoded` of a raw secret is always encoded.
        Secret::Raw(_) => String::new(),
    }
}

fn totp(secret: &str, account: &str) -> Result<TOTP, AuthError> {
    let bytes = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .map_err(|_| AuthError::KeyStore("undecodable TOTP secret".into()))?;
    TOTP::new(Algorithm::SHA1, DIGITS, 1, STEP_SECS, bytes, Some(ISSUER.into()), account.into())
        .map_err(|_| AuthError::KeyStore("unusable TOTP secret".into()))
}

/// The `otpauth://totp/...` URI an authenticator app scans. A `:` separates issuer and account
/// in the URI's label, so one inside the account (a valid email may hold one) is shown as `_`:
/// the label is only what the app displays. (Found by schemathesis: such an email answered 500.)
pub fn otpauth_uri(secret: &str, account: &str) -> Result<String, AuthError> {
    Ok(totp(secret, &account.replace(':', "_"))?.get_url())
}

/// The code for `unix_secs` (tests and enrolment checks).
pub fn code_at(secret: &str, unix_secs: u64) -> Result<String, AuthError> {
    Ok(totp(secret, "")?.generate(unix_secs))
}

/// The step `code` matches at `unix_secs` (current step ± [`SKEW_STEPS`]), latest first, or
/// `None`. Comparison is constant-time per candidate.
pub fn verify(secret: &str, code: &str, unix_secs: u64) -> Option<u64> {
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret, "").ok()?;
    let current = unix_secs / STEP_SECS;
    let mut found = None;
    for step in current.saturating_sub(SKEW_STEPS)..=current + SKEW_STEPS {
        let expected = totp.generate(step * STEP_SECS);
        let same = expected.bytes().zip(code.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same {
            found = Some(step);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_with_a_colon_has_a_uri() {
        let secret = generate_secret();
        let uri = otpauth_uri(&secret, "a:b@example.com").expect("a colon in the email");
        assert!(uri.contains("a_b"), "{uri}");
    }
}
