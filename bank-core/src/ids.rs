//! Identifier newtypes.
//!
//! Each id is a UUID (new ones are v7, time-ordered, so indexes stay append-friendly). They are
//! distinct types so an `AccountId` can never be passed where a `TransferId` is expected, and they
//! are parsed at the edge: the nil UUID and malformed text are refused.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::error::{Error, Result};

/// Deterministic ids for replayable simulations (feature `testkit`).
///
/// While a [`seeded::SeededIds`] guard lives, every id the current thread makes is drawn from a
/// seeded generator instead of the system clock and random source: the same seed gives the same
/// ids, so a simulation seed replays exactly (the simulated rail's decisions hash the transfer id).
/// Ids stay UUID v7 and time-ordered: the timestamp is the given instant (or a counter).
#[cfg(feature = "testkit")]
pub mod seeded {
    use std::cell::Cell;

    use uuid::Uuid;

    thread_local! {
        static STATE: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
    }

    /// Restores the thread's previous id source when dropped.
    #[derive(Debug)]
    #[must_use = "ids are seeded only while the guard lives"]
    pub struct SeededIds {
        previous: Option<(u64, u64)>,
    }

    /// Seeds the current thread's ids until the guard is dropped.
    pub fn seed_ids(seed: u64) -> SeededIds {
        let previous = STATE.with(|s| s.replace(Some((seed ^ 0x1D5_5EED, 0))));
        SeededIds { previous }
    }

    impl Drop for SeededIds {
        fn drop(&mut self) {
            STATE.with(|s| s.set(self.previous));
        }
    }

    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next seeded id for `at` (or a counter), if this thread is seeded.
    pub(crate) fn next(at: Option<chrono::DateTime<chrono::Utc>>) -> Option<Uuid> {
        STATE.with(|s| {
            let (state, counter) = s.get()?;
            let (state, counter) = (mix(state), counter + 1);
            s.set(Some((state, counter)));
            // 2026-01-01T00:00:00Z plus the counter in milliseconds, when no instant is given.
            let millis = at.map_or(1_767_225_600_000 + counter, |at| u64::try_from(at.timestamp_millis()).unwrap_or(0));
            let mut random = [0_u8; 10];
            random[..8].copy_from_slice(&state.to_le_bytes());
            random[8..].copy_from_slice(&mix(state ^ counter).to_le_bytes()[..2]);
            Some(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
        })
    }
}

/// A UUID v8 from the first 16 bytes of SHA-256 over `name` (never nil: v8 sets version bits).
pub fn derived_uuid(name: &[u8]) -> Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name);
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::new_v8(bytes)
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered (UUID v7) id.
            pub fn new() -> Self {
                #[cfg(feature = "testkit")]
                if let Some(uuid) = seeded::next(None) {
                    return $name(uuid);
                }
                $name(Uuid::now_v7())
            }

            /// A new UUID v7 for the instant `at` (saves a clock read when the caller has one).
            pub fn at(at: chrono::DateTime<chrono::Utc>) -> Self {
                #[cfg(feature = "testkit")]
                if let Some(uuid) = seeded::next(Some(at)) {
                    return $name(uuid);
                }
                let secs = u64::try_from(at.timestamp()).unwrap_or(0);
                let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs, at.timestamp_subsec_nanos());
                $name(Uuid::new_v7(ts))
            }

            /// The id named by `name`: a UUID v8 from the first 16 bytes of SHA-256 over `name`,
            /// so the same name gives the same id on every run and every machine (system
            /// accounts, ledger keys derived from an idempotency key, demo data).
            pub fn derived(name: &[u8]) -> Self {
                $name(derived_uuid(name))
            }

            /// Wraps an existing UUID; the nil UUID is refused.
            pub fn from_uuid(uuid: Uuid) -> Result<Self> {
                if uuid.is_nil() {
                    return Err(Error::InvalidInput(concat!($label, " must not be the nil UUID").into()));
                }
                Ok($name(uuid))
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(text: &str) -> Result<Self> {
                // Only the canonical hyphenated form: one spelling per id keeps keys comparable.
                if text.len() != 36 {
                    return Err(Error::InvalidInput(concat!($label, " is not a UUID").into()));
                }
                let uuid = Uuid::try_parse(text)
                    .map_err(|_| Error::InvalidInput(concat!($label, " is not a UUID").into()))?;
                $name::from_uuid(uuid)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0.hyphenated())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(&self.0.hyphenated())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

uuid_id!(
    /// A customer (the owner of accounts).
    CustomerId,
    "customer id"
);
uuid_id!(
    /// A ledger account.
    AccountId,
    "account id"
);
uuid_id!(
    /// A transfer; chosen by the client so that a retry names the same transfer.
    TransferId,
    "transfer id"
);
uuid_id!(
    /// A posted journal entry.
    EntryId,
    "entry id"
);
uuid_id!(
    /// A hold (reservation of funds).
    HoldId,
    "hold id"
);

uuid_id!(
    /// An event (consumers deduplicate on it).
    EventId,
    "event id"
);
uuid_id!(
    /// One claim of outbox records by a relay
    /// ([`crate::ports::TransferStore::outbox_claim`]): chosen by the relay before it claims, so
    /// it can give the claim back even when the claim's answer was lost.
    ClaimToken,
    "claim token"
);

impl From<TransferId> for HoldId {
    /// A transfer reserves its funds with at most one hold, named after the transfer.
    fn from(id: TransferId) -> Self {
        HoldId(id.0)
    }
}

impl From<HoldId> for TransferId {
    /// The transfer a hold would belong to (see `From<TransferId> for HoldId`).
    fn from(id: HoldId) -> Self {
        TransferId(id.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_garbage() {
        let id = AccountId::new();
        assert_eq!(id.to_string().parse::<AccountId>().unwrap(), id);
        assert_eq!(id.as_uuid().get_version_num(), 7);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<AccountId>(&json).unwrap(), id);
        for bad in [
            "",
            "not-a-uuid",
            "00000000-0000-0000-0000-000000000000",
            "0190b6c2a4f57c3a9b1e2d3f4a5b6c7d",
            "{0190b6c2-a4f5-7c3a-9b1e-2d3f4a5b6c7d}",
            "0190b6c2-a4f5-7c3a-9b1e-2d3f4a5b6c7g",
        ] {
            assert!(matches!(bad.parse::<AccountId>(), Err(Error::InvalidInput(_))), "{bad}");
        }
        assert!("0190B6C2-A4F5-7C3A-9B1E-2D3F4A5B6C7D".parse::<TransferId>().is_ok());
    }

    #[test]
    fn derived_ids_are_stable_v8_and_distinct() {
        let id = AccountId::derived(b"bank:deposits:USD");
        assert_eq!(id, AccountId::derived(b"bank:deposits:USD"));
        assert_ne!(id, AccountId::derived(b"bank:deposits:EUR"));
        assert_eq!(id.as_uuid().get_version_num(), 8);
        // Pinned: data directories name their system accounts with these ids.
        assert_eq!(
            derived_uuid(b"abc").to_string(),
            "ba7816bf-8f01-8fea-8141-40de5dae2223",
            "SHA-256(\"abc\") = ba7816bf8f01cfea414140de5dae2223…, with the v8 version and variant bits"
        );
    }
}
