//! Checkpoints: the log's Ed25519 key, and signed tree heads in the formats transparency logs
//! use, so standard tools verify them.
//!
//! A checkpoint is a [C2SP signed note](https://c2sp.org/signed-note) whose text is a
//! [C2SP tlog-checkpoint](https://c2sp.org/tlog-checkpoint) body:
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <base64 RFC 6962 root of the first `size` records>
//!
//! — <origin> <base64 of 4-byte key id || 64-byte Ed25519 signature>
//! ```
//!
//! The key is kept in the note format of Go's `golang.org/x/mod/sumdb/note` (what Go's checksum
//! database uses): the private key as `PRIVATE+KEY+<origin>+<key id>+<base64 0x01||seed>`, the
//! published verifier key as `<origin>+<key id>+<base64 0x01||public key>`, where the key id is
//! the first four bytes of `SHA-256(origin || "\n" || 0x01 || public key)`. Anyone holding the
//! verifier key checks a checkpoint with `note.Open` (Go), `signed_note` (Rust) or this module's
//! [`AuditVerifier`]. Signing and parsing are the `signed_note` and `tlog_tiles` crates (ports of
//! Go's `sumdb/note` and `sumdb/tlog` with Go's test vectors); this module only holds the key.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use signed_note::{Note, Signer as _, StandardSigner, StandardVerifier, VerifierList};

use super::Digest;
use crate::error::{Error, Result};

/// The signature algorithm byte of Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;

/// Longest origin (key name) accepted.
pub const ORIGIN_CHARS_MAX: usize = 128;

/// The log's signing key. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct AuditKey {
    origin: String,
    seed: [u8; 32],
    signer: StandardSigner,
    verifier_key: String,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey").field("verifier_key", &self.verifier_key).finish_non_exhaustive()
    }
}

/// Checks an origin: what C2SP allows in a key name (non-empty, no space, no `+`), printable
/// ASCII here, at most [`ORIGIN_CHARS_MAX`] characters.
pub fn check_origin(origin: &str) -> Result<()> {
    let printable = origin.bytes().all(|b| b.is_ascii_graphic());
    if !printable || origin.len() > ORIGIN_CHARS_MAX || !signed_note::is_key_name_valid(origin) {
        return Err(Error::invalid(format!(
            "an audit log origin is 1 to {ORIGIN_CHARS_MAX} printable ASCII characters without spaces or '+'"
        )));
    }
    Ok(())
}

impl AuditKey {
    /// The key of the log named `origin` whose Ed25519 secret is `seed` (32 random bytes).
    pub fn from_seed(origin: &str, seed: [u8; 32]) -> Result<AuditKey> {
        check_origin(origin)?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = [&[ALG_ED25519][..], signing.verifying_key().as_bytes()].concat();
        let id = signed_note::key_id(origin, &public);
        let private = [&[ALG_ED25519][..], &seed[..]].concat();
        let skey = format!("PRIVATE+KEY+{origin}+{id:08x}+{}", BASE64.encode(private));
        let signer = StandardSigner::new(&skey).map_err(|e| Error::invalid(format!("audit key: {e}")))?;
        let verifier_key = signed_note::new_ed25519_verifier_key(origin, &signing.verifying_key());
        Ok(AuditKey { origin: origin.to_owned(), seed, signer, verifier_key })
    }

    /// Parses a private key in the note format (`PRIVATE+KEY+<origin>+<id>+<base64>`), as
    /// [`AuditKey::private_key`] writes it.
    pub fn parse(private_key: &str) -> Result<AuditKey> {
        let refused = || Error::invalid("not an Ed25519 private key in the signed-note format");
        let rest = private_key.trim().strip_prefix("PRIVATE+KEY+").ok_or_else(refused)?;
        // The base64 key may itself hold '+': it is everything after the third field.
        let mut parts = rest.splitn(3, '+');
        let (Some(origin), Some(_id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(refused());
        };
        let bytes = BASE64.decode(key).map_err(|_| refused())?;
        let seed: [u8; 32] = match bytes.split_first() {
            Some((&ALG_ED25519, seed)) => seed.try_into().map_err(|_| refused())?,
            _ => return Err(refused()),
        };
        let key = AuditKey::from_seed(origin, seed)?;
        // The id written must be the one the key gives (StandardSigner checks it too).
        StandardSigner::new(private_key.trim()).map_err(|e| Error::invalid(format!("audit key: {e}")))?;
        Ok(key)
    }

    /// The private key in the note format. A secret: written only to the key file.
    pub fn private_key(&self) -> String {
        let private = [&[ALG_ED25519][..], &self.seed[..]].concat();
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.origin, self.signer.key_id(), BASE64.encode(private))
    }

    /// The log's name (the key name and the checkpoints' first line).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The public verifier key, `<origin>+<key id>+<base64 key>`: what `/.well-known/audit-key`
    /// publishes.
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// A verifier of this key's checkpoints.
    pub fn verifier(&self) -> AuditVerifier {
        // The verifier key was made from this key just above: it always parses.
        AuditVerifier::new(&self.verifier_key).unwrap_or_else(|_| unreachable!("own verifier key parses"))
    }

    /// The signed checkpoint of a tree of `size` records whose root is `root`.
    pub fn sign(&self, size: u64, root: Digest) -> Result<String> {
        let body = tlog_tiles::Checkpoint::new(&self.origin, size, tlog_tiles::Hash(root), "")
            .map_err(|e| Error::invalid(format!("checkpoint: {e}")))?
            .to_bytes();
        let mut note = Note::new(&body, &[]).map_err(|e| Error::invalid(format!("checkpoint note: {e}")))?;
        note.add_sigs(&[&self.signer]).map_err(|e| Error::storage(format!("signing a checkpoint: {e}"), false))?;
        String::from_utf8(note.to_bytes()).map_err(|e| Error::storage(e, false))
    }
}

/// What a verified checkpoint says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Records committed to.
    pub size: u64,
    /// RFC 6962 root of those records.
    pub root: Digest,
}

/// Why a checkpoint was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointRefused {
    /// Not a well-formed signed note.
    #[error("not a well-formed signed note")]
    MalformedNote,
    /// No signature by the verifier's key (name and key id).
    #[error("not signed by the audit key")]
    NotSigned,
    /// A signature by the verifier's key that does not verify (altered text or signature).
    #[error("the audit key's signature does not verify")]
    BadSignature,
    /// The text is not a tlog-checkpoint body, or names another origin.
    #[error("not a checkpoint of this log")]
    NotACheckpoint,
}

/// Verifies checkpoints with a published verifier key.
#[derive(Clone)]
pub struct AuditVerifier {
    origin: String,
    verifier: StandardVerifier,
    verifier_key: String,
}

impl fmt::Debug for AuditVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditVerifier").field("verifier_key", &self.verifier_key).finish()
    }
}

impl AuditVerifier {
    /// A verifier from a verifier key `<origin>+<key id>+<base64 key>`.
    pub fn new(verifier_key: &str) -> Result<AuditVerifier> {
        let verifier_key = verifier_key.trim();
        let verifier = StandardVerifier::new(verifier_key)
            .map_err(|e| Error::invalid(format!("not an Ed25519 verifier key in the signed-note format: {e}")))?;
        let origin = verifier_key.split('+').next().unwrap_or_default().to_owned();
        Ok(AuditVerifier { origin, verifier, verifier_key: verifier_key.to_owned() })
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Opens a signed checkpoint: the note must carry a valid signature of this key, and its text
    /// must be a checkpoint of this origin.
    pub fn open(&self, note: &str) -> std::result::Result<TreeHead, CheckpointRefused> {
        let note = Note::from_bytes(note.as_bytes()).map_err(|_| CheckpointRefused::MalformedNote)?;
        let known = VerifierList::new(vec![Box::new(self.verifier.clone())]);
        note.verify(&known).map_err(|e| match e {
            signed_note::NoteError::UnverifiedNote => CheckpointRefused::NotSigned,
            _ => CheckpointRefused::BadSignature,
        })?;
        let checkpoint =
            tlog_tiles::Checkpoint::from_bytes(note.text()).map_err(|_| CheckpointRefused::NotACheckpoint)?;
        if checkpoint.origin() != self.origin || !checkpoint.extension().is_empty() {
            return Err(CheckpointRefused::NotACheckpoint);
        }
        Ok(TreeHead { size: checkpoint.size(), root: checkpoint.hash().0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "bank.example/audit";

    fn key(byte: u8) -> AuditKey {
        AuditKey::from_seed(ORIGIN, [byte; 32]).expect("key")
    }

    /// Go's `sumdb/note` example key (its package documentation) parses and gives Go's verifier
    /// key: the key format is the standard one, not a look-alike.
    #[test]
    fn go_note_example_key_round_trips() {
        let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let key = AuditKey::parse(skey).expect("Go's example key");
        assert_eq!(key.verifier_key(), "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
        assert_eq!(key.private_key(), skey);
        // And Go's signed example note verifies with Go's verifier key.
        let note = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n\n\
                    — PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let verifier = AuditVerifier::new(key.verifier_key()).expect("verifier");
        // Not a checkpoint body, but the signature checks first.
        assert_eq!(verifier.open(note), Err(CheckpointRefused::NotACheckpoint));
        let altered = note.replace("cryptography", "cryptographie");
        assert_eq!(verifier.open(&altered), Err(CheckpointRefused::BadSignature));
    }

    /// A checkpoint verifies with the published key and says what was signed; the body is the
    /// tlog-checkpoint text.
    #[test]
    fn a_checkpoint_verifies_with_the_published_key() {
        let key = key(1);
        let note = key.sign(42, [9; 32]).expect("sign");
        let body = format!("{ORIGIN}\n42\n{}\n\n— {ORIGIN} ", BASE64.encode([9_u8; 32]));
        assert!(note.starts_with(&body), "{note}");
        let published = AuditVerifier::new(key.verifier_key()).expect("verifier");
        assert_eq!(published.open(&note), Ok(TreeHead { size: 42, root: [9; 32] }));
        assert_eq!(key.sign(42, [9; 32]).expect("sign"), note, "Ed25519 signatures are deterministic");
    }

    /// Another key's verifier, an altered body or an altered signature refuse the checkpoint.
    #[test]
    fn another_key_or_an_altered_note_is_refused() {
        let note = key(1).sign(42, [9; 32]).expect("sign");
        let other = AuditVerifier::new(key(2).verifier_key()).expect("verifier");
        assert_eq!(other.open(&note), Err(CheckpointRefused::NotSigned), "same name, other key: its id differs");
        let stranger = AuditKey::from_seed("other.example/log", [1; 32]).expect("key").verifier();
        assert_eq!(stranger.open(&note), Err(CheckpointRefused::NotSigned));
        let own = key(1).verifier();
        let bigger = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(own.open(&bigger), Err(CheckpointRefused::BadSignature));
        // A character near the end of the signature (past the key id), before the padding.
        let at = note.len() - 6;
        let mut forged = note.clone().into_bytes();
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("utf-8");
        assert_eq!(own.open(&forged), Err(CheckpointRefused::BadSignature));
        assert_eq!(own.open("garbage"), Err(CheckpointRefused::MalformedNote));
    }

    #[test]
    fn bad_origins_and_keys_are_refused() {
        for origin in ["", "a b", "a+b", "é"] {
            assert!(AuditKey::from_seed(origin, [1; 32]).is_err(), "{origin:?}");
        }
        assert!(AuditKey::parse("PRIVATE+KEY+x+00000000+AQ==").is_err());
        let good = key(3).private_key();
        let mut parts: Vec<&str> = good.splitn(5, '+').collect();
        assert_ne!(parts[3], "00000000");
        parts[3] = "00000000";
        assert!(AuditKey::parse(&parts.join("+")).is_err(), "a key id that is not the key's");
        assert!(AuditVerifier::new("nonsense").is_err());
        assert_eq!(AuditKey::parse(&good).expect("parse").verifier_key(), key(3).verifier_key());
        assert!(!format!("{:?}", key(3)).contains(&good[good.len() - 20..]), "Debug hides the secret");
    }
}
