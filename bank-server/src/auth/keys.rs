//! The Ed25519 key that signs built-in access tokens.
//!
//! Generated on first start and kept in `<data_dir>/keys/jwt-ed25519.pk8` (PKCS#8 DER, mode 0600
//! on unix), so tokens keep verifying across restarts — or, where several processes on several
//! machines issue tokens (the AWS backend), given to every process as `BANK_JWT_SIGNING_KEY`
//! (the same DER, base64; `bank-server keys` makes one). The key id (`kid`) is the RFC 7638 JWK
//! thumbprint (SHA-256, base64url) of the public key.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use super::AuthError;

/// File name of the signing key under `<data_dir>/keys/`.
pub const KEY_FILE_NAME: &str = "jwt-ed25519.pk8";

/// The signing key pair with its id. Debug output shows only the id.
pub struct SigningKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    x: String,
    kid: String,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").field("kid", &self.kid).finish_non_exhaustive()
    }
}

fn key_err(what: &str, err: impl std::fmt::Display) -> AuthError {
    AuthError::KeyStore(format!("{what}: {err}"))
}

impl SigningKeys {
    /// Loads the key from `<data_dir>/keys/`, creating it on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<SigningKeys, AuthError> {
        let dir = data_dir.join("keys");
        let path = dir.join(KEY_FILE_NAME);
        let key = match fs::read(&path) {
            Ok(der) => SigningKey::from_pkcs8_der(&der).map_err(|e| key_err("unreadable signing key", e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&dir, &path)?,
            Err(e) => return Err(key_err("cannot read the signing key", e)),
        };
        SigningKeys::from_key(&key)
    }

    /// The key given as base64 (standard alphabet) of its PKCS#8 DER, as `BANK_JWT_SIGNING_KEY`
    /// carries it. The error never repeats the text.
    pub fn from_pkcs8_base64(text: &str) -> Result<SigningKeys, AuthError> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| AuthError::KeyStore("the signing key is not base64".into()))?;
        let key = SigningKey::from_pkcs8_der(&der)
            .map_err(|_| AuthError::KeyStore("the signing key is not an Ed25519 PKCS#8 key".into()))?;
        SigningKeys::from_key(&key)
    }

    /// A new random key as [`SigningKeys::from_pkcs8_base64`] reads it.
    pub fn generate_pkcs8_base64() -> Result<String, AuthError> {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        let der =
            SigningKey::from_bytes(&seed).to_pkcs8_der().map_err(|e| key_err("cannot encode the signing key", e))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(der.as_bytes()))
    }

    fn from_key(key: &SigningKey) -> Result<SigningKeys, AuthError> {
        let der = key.to_pkcs8_der().map_err(|e| key_err("cannot encode the signing key", e))?;
        let public = key.verifying_key().to_bytes();
        let x = URL_SAFE_NO_PAD.encode(public);
        // RFC 7638: members in lexicographic order, no whitespace.
        let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));
        Ok(SigningKeys {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_der(&public),
            x,
            kid,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key, for signing.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The public key, for verifying.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The raw public key, base64url (the JWK's `x`).
    pub fn public_x(&self) -> &str {
        &self.x
    }

    /// The JWK Set to publish at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": self.x,
                "kid": self.kid,
                "alg": "EdDSA",
                "use": "sig",
            }]
        })
    }
}

/// Generates a key and writes it with mode 0600 (written to a temporary file, synced, then
/// renamed, so a crash never leaves a half-written key).
fn create(dir: &Path, path: &Path) -> Result<SigningKey, AuthError> {
    fs::create_dir_all(dir).map_err(|e| key_err("cannot create the key directory", e))?;
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let der = key.to_pkcs8_der().map_err(|e| key_err("cannot encode the signing key", e))?;
    let tmp: PathBuf = dir.join(format!("{KEY_FILE_NAME}.tmp"));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| key_err("cannot write the signing key", e))?;
    file.write_all(der.as_bytes()).map_err(|e| key_err("cannot write the signing key", e))?;
    file.sync_all().map_err(|e| key_err("cannot sync the signing key", e))?;
    fs::rename(&tmp, path).map_err(|e| key_err("cannot store the signing key", e))?;
    tracing::info!(path = %path.display(), "generated a new token signing key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_key_is_read_back_and_bad_ones_are_refused_without_echo() {
        let text = SigningKeys::generate_pkcs8_base64().expect("generate");
        let a = SigningKeys::from_pkcs8_base64(&text).expect("read");
        let b = SigningKeys::from_pkcs8_base64(&format!("{text}\n")).expect("surrounding space is trimmed");
        assert_eq!(a.kid(), b.kid(), "the same key in every process");
        assert_ne!(
            a.kid(),
            SigningKeys::from_pkcs8_base64(&SigningKeys::generate_pkcs8_base64().expect("2")).expect("2").kid()
        );
        for bad in ["", "not base64!", "aGVsbG8="] {
            let err = SigningKeys::from_pkcs8_base64(bad).expect_err(bad).to_string();
            assert!(!bad.is_empty() && !err.contains(bad) || bad.is_empty(), "{err}");
        }
    }
}
