//! The canonical byte encoding of an audit record, version 1: what the hash chain hashes and
//! what the Merkle tree takes as its leaves. It is the one definition an outside verifier needs
//! besides the public key, so it is small, fixed and versioned.
//!
//! ```text
//! version      u8        0x01
//! seq          u64       big-endian
//! at_seconds   i64       big-endian, seconds since 1970-01-01T00:00:00Z
//! at_nanos     u32       big-endian, nanoseconds within that second
//! subject      string    u32 big-endian byte length, then UTF-8 bytes
//! action       string
//! target       string
//! outcome      string    "done" | "refused"
//! request_id   option    0x00 (absent) | 0x01 then a string
//! client_ip    option
//! prev_hash    32 bytes  the previous record's hash (all zeros before record 1)
//! ```
//!
//! The record's **hash** is `SHA-256(bytes)`; its **Merkle leaf hash** is RFC 6962's
//! `SHA-256(0x00 || bytes)`. Every field has a length or a fixed size, so no two records encode
//! to the same bytes. A future layout gets a new version byte; a verifier refuses versions it
//! does not know (version 1 is the only one so far).

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use super::NewAuditRecord;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// The version byte this module writes.
pub const ENCODING_VERSION: u8 = 1;

/// `prev_hash` of record 1.
pub const GENESIS_HASH: Digest = [0; 32];

/// The canonical bytes of record `seq` holding `record`, chained after `prev_hash`.
pub fn encode(seq: u64, record: &NewAuditRecord, prev_hash: &Digest) -> Vec<u8> {
    let text_len = record.subject.len()
        + record.action.len()
        + record.target.len()
        + record.request_id.as_ref().map_or(0, String::len)
        + record.client_ip.as_ref().map_or(0, String::len);
    let mut out = Vec::with_capacity(1 + 8 + 12 + 6 * 4 + 2 + 8 + text_len + 32);
    out.push(ENCODING_VERSION);
    out.extend_from_slice(&seq.to_be_bytes());
    put_time(&mut out, record.at);
    put_str(&mut out, &record.subject);
    put_str(&mut out, &record.action);
    put_str(&mut out, &record.target);
    put_str(&mut out, record.outcome.as_str());
    put_option(&mut out, record.request_id.as_deref());
    put_option(&mut out, record.client_ip.as_deref());
    out.extend_from_slice(prev_hash);
    out
}

/// `SHA-256(bytes)`: the chain hash of a record whose canonical bytes are `bytes`.
pub fn chain_hash(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

fn put_time(out: &mut Vec<u8>, at: DateTime<Utc>) {
    out.extend_from_slice(&at.timestamp().to_be_bytes());
    out.extend_from_slice(&at.timestamp_subsec_nanos().to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    // Fields are bounded to a few hundred characters (see `AUDIT_FIELD_CHARS_MAX`), far below
    // u32::MAX bytes; saturating keeps the encoding total even for a record built by hand.
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_option(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            put_str(out, text);
        }
    }
}

/// Serde of a [`Digest`] as 64 lowercase hex characters.
pub mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Digest;

    /// Writes the digest as hex.
    pub fn serialize<S: Serializer>(digest: &Digest, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(digest))
    }

    /// Reads 64 hex characters.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut digest = [0_u8; 32];
        hex::decode_to_slice(&text, &mut digest).map_err(serde::de::Error::custom)?;
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditOutcome;

    fn record() -> NewAuditRecord {
        NewAuditRecord::new(
            DateTime::from_timestamp(1_767_225_600, 123_456_789).expect("time"),
            "op",
            "deposit.requested",
            "account:1",
            AuditOutcome::Done,
        )
        .with_request(Some("req-1".into()), None)
    }

    /// The layout is pinned byte for byte: a change here breaks every verifier in the field.
    #[test]
    fn version_one_layout_is_pinned() {
        let bytes = encode(7, &record(), &[0xab; 32]);
        let mut expected = vec![1_u8];
        expected.extend_from_slice(&7_u64.to_be_bytes());
        expected.extend_from_slice(&1_767_225_600_i64.to_be_bytes());
        expected.extend_from_slice(&123_456_789_u32.to_be_bytes());
        for text in ["op", "deposit.requested", "account:1", "done"] {
            expected.extend_from_slice(&u32::try_from(text.len()).expect("short").to_be_bytes());
            expected.extend_from_slice(text.as_bytes());
        }
        expected.extend_from_slice(&[1, 0, 0, 0, 5]);
        expected.extend_from_slice(b"req-1");
        expected.push(0);
        expected.extend_from_slice(&[0xab; 32]);
        assert_eq!(bytes, expected);
        assert_eq!(hex::encode(chain_hash(&bytes)), hex::encode(Sha256::digest(&expected)));
    }

    /// Moving a character from one field to the next, or an absent field to an empty one, gives
    /// other bytes (the lengths keep fields apart).
    #[test]
    fn field_boundaries_are_unambiguous() {
        let a = NewAuditRecord { subject: "ab".into(), action: "c".into(), ..record() };
        let b = NewAuditRecord { subject: "a".into(), action: "bc".into(), ..record() };
        assert_ne!(encode(1, &a, &GENESIS_HASH), encode(1, &b, &GENESIS_HASH));
        let absent = NewAuditRecord { client_ip: None, ..record() };
        let empty = NewAuditRecord { client_ip: Some(String::new()), ..record() };
        assert_ne!(encode(1, &absent, &GENESIS_HASH), encode(1, &empty, &GENESIS_HASH));
    }

    /// Every field, the position and the previous hash are covered by the hash.
    #[test]
    fn every_field_changes_the_hash() {
        let base = record();
        let hash = |seq, r: &NewAuditRecord, prev: &Digest| chain_hash(&encode(seq, r, prev));
        let original = hash(1, &base, &GENESIS_HASH);
        let variants = [
            NewAuditRecord { at: base.at + chrono::TimeDelta::nanoseconds(1), ..base.clone() },
            NewAuditRecord { subject: "oq".into(), ..base.clone() },
            NewAuditRecord { action: "deposit.approved".into(), ..base.clone() },
            NewAuditRecord { target: "account:2".into(), ..base.clone() },
            NewAuditRecord { outcome: AuditOutcome::Refused, ..base.clone() },
            NewAuditRecord { request_id: None, ..base.clone() },
            NewAuditRecord { client_ip: Some("192.0.2.1".into()), ..base.clone() },
        ];
        for variant in &variants {
            assert_ne!(hash(1, variant, &GENESIS_HASH), original, "{variant:?}");
        }
        assert_ne!(hash(2, &base, &GENESIS_HASH), original, "seq");
        assert_ne!(hash(1, &base, &[1; 32]), original, "prev_hash");
    }

    #[test]
    fn digests_serialize_as_hex() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Holder(#[serde(with = "hex_digest")] Digest);
        let json = serde_json::to_string(&Holder([0xa5; 32])).expect("json");
        assert_eq!(json, format!("\"{}\"", "a5".repeat(32)));
        assert_eq!(serde_json::from_str::<Holder>(&json).expect("parse"), Holder([0xa5; 32]));
        assert!(serde_json::from_str::<Holder>("\"abc\"").is_err());
    }
}
