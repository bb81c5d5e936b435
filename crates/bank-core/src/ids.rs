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

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered (UUID v7) id.
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }

            /// A new UUID v7 for the instant `at` (saves a clock read when the caller has one).
            pub fn at(at: chrono::DateTime<chrono::Utc>) -> Self {
                let secs = u64::try_from(at.timestamp()).unwrap_or(0);
                let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs, at.timestamp_subsec_nanos());
                $name(Uuid::new_v7(ts))
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

impl From<TransferId> for HoldId {
    /// A transfer reserves its funds with at most one hold, named after the transfer.
    fn from(id: TransferId) -> Self {
        HoldId(id.0)
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
}
