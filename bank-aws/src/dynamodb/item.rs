//! One idempotency record as one DynamoDB item: its attributes, how values are encoded, and the
//! limits that keep an item under DynamoDB's 400 KB.
//!
//! Times are `N` nanoseconds since the Unix epoch from the store's clock (exact round trip, as the
//! other stores keep them), except `ttl`: whole seconds, as DynamoDB's TTL wants.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use bank_core::idempotency::{IdempotencyKey, IdempotencyRecord, IdempotencyScope, LeaseToken, RecordState};
use bank_core::transfer::Fingerprint;
use bank_core::{Error, Result};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// An item: attribute name → value.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// Partition key: the scope, `caller` U+001F `key` (see [`pk_of`]).
pub(crate) const PK: &str = "pk";
/// The caller, as given.
pub(crate) const CALLER: &str = "caller";
/// The idempotency key, as given.
pub(crate) const KEY: &str = "idem_key";
/// The request's fingerprint (`B`, 32 bytes).
pub(crate) const FINGERPRINT: &str = "fingerprint";
/// The resource the key names.
pub(crate) const RESOURCE: &str = "resource";
/// [`IN_FLIGHT`] or [`COMPLETED`].
pub(crate) const STATE: &str = "state";
/// The current lease token; a completed item keeps the one that completed it.
pub(crate) const TOKEN: &str = "token";
/// End of the current lease (`N` ns).
pub(crate) const LEASE_UNTIL: &str = "lease_until";
/// The stored response (`B`, completed items only).
pub(crate) const RESPONSE: &str = "response";
/// First use (`N` ns).
pub(crate) const CREATED_AT: &str = "created_at";
/// `created_at` + retention (`N` ns): the sort key of [`super::table::BY_EXPIRY`].
pub(crate) const EXPIRES_AT: &str = "expires_at";
/// DynamoDB's TTL attribute (`N` s): `expires_at` rounded up, plus [`TTL_GRACE_SECONDS`].
pub(crate) const TTL: &str = "ttl";
/// `"0"` .. `"15"`: the partition key of both indexes, spreading their writes.
pub(crate) const SHARD: &str = "shard";
/// Sort key of [`super::table::IN_FLIGHT`], present only while in flight (so the index is
/// sparse): `created_at` as 20 digits, U+001F, `pk` — oldest first, ties in scope order.
pub(crate) const IN_FLIGHT_ORDER: &str = "in_flight_order";

/// `state` of a key whose request is running.
pub(crate) const IN_FLIGHT: &str = "in_flight";
/// `state` of a key whose response is stored.
pub(crate) const COMPLETED: &str = "completed";

/// Partitions of each index. Part of the table's format: items written with another count would
/// be missed by `abandoned` and `purge_expired`. One index partition takes about 1,000 writes a
/// second, so 16 take every `begin` and `complete` of a busy deployment.
pub(crate) const INDEX_SHARDS: u8 = 16;
/// Longest caller (bytes), so that `in_flight_order` (20 digits, separator, caller, separator,
/// key: at most 789 bytes) stays under DynamoDB's 1,024 bytes for a sort key (`pk`, under its
/// 2,048 bytes for a partition key). Callers are authenticated subjects: ids, e-mail addresses.
pub const CALLER_BYTES_MAX: usize = 512;
/// Longest resource (bytes).
pub const RESOURCE_BYTES_MAX: usize = 1024;
/// Largest stored response (bytes): with the other attributes (a few KB at most, bounded above)
/// the item stays under DynamoDB's 400 KB.
pub const RESPONSE_BYTES_MAX: usize = 384 * 1024;
/// How long after `expires_at` DynamoDB may delete an item by itself. TTL runs on AWS's clock: the
/// margin keeps a clock of ours that lags AWS's from meeting a live record already deleted (which
/// would start a finished request again).
pub(crate) const TTL_GRACE_SECONDS: i64 = 3600;
/// Separator of caller and key in `pk`: below every byte a key may hold (0x20..0x7e).
const SCOPE_SEPARATOR: char = '\u{1f}';

/// The partition key of a scope: `caller` U+001F `key`. One-to-one, since a key holds no U+001F
/// (the last one separates), and in scope order for ordinary callers.
pub(crate) fn pk_of(scope: &IdempotencyScope) -> String {
    let mut pk = String::with_capacity(scope.caller.len() + 1 + scope.key.as_str().len());
    pk.push_str(&scope.caller);
    pk.push(SCOPE_SEPARATOR);
    pk.push_str(scope.key.as_str());
    pk
}

/// Refuses a caller that would not fit the partition key.
pub(crate) fn check_caller(scope: &IdempotencyScope) -> Result<()> {
    if scope.caller.len() > CALLER_BYTES_MAX {
        return Err(Error::InvalidInput(format!("an idempotency caller has at most {CALLER_BYTES_MAX} bytes")));
    }
    Ok(())
}

/// The index partition of a scope: the first byte of its SHA-256, modulo [`INDEX_SHARDS`].
pub(crate) fn shard_of(pk: &str) -> String {
    (Sha256::digest(pk.as_bytes())[0] % INDEX_SHARDS).to_string()
}

/// Nanoseconds since the epoch, refusing times outside 1677–2262 (i64 nanoseconds).
pub(crate) fn nanos(at: DateTime<Utc>) -> Result<i64> {
    at.timestamp_nanos_opt().ok_or_else(|| Error::storage(format!("time {at} is outside the storable range"), false))
}

/// The time of stored nanoseconds.
pub(crate) fn time(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

/// `nanos` as 20 digits that sort as the numbers do (negative ones included).
fn sortable(nanos: i64) -> String {
    format!("{:020}", (i128::from(nanos) - i128::from(i64::MIN)))
}

/// The [`IN_FLIGHT_ORDER`] of an item.
pub(crate) fn in_flight_order(created_at: i64, pk: &str) -> String {
    format!("{}{SCOPE_SEPARATOR}{pk}", sortable(created_at))
}

/// The smallest [`IN_FLIGHT_ORDER`] of an item created at `created_at` or later.
pub(crate) fn in_flight_order_from(created_at: i64) -> String {
    sortable(created_at)
}

/// The TTL of an item kept until `expires_at`: whole seconds, rounded up, plus the grace.
pub(crate) fn ttl_of(expires_at: i64) -> i64 {
    expires_at.div_euclid(1_000_000_000) + i64::from(expires_at.rem_euclid(1_000_000_000) != 0) + TTL_GRACE_SECONDS
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn b(value: impl Into<Vec<u8>>) -> AttributeValue {
    AttributeValue::B(Blob::new(value))
}

/// What `begin` stores for a new key.
pub(crate) struct NewRecord<'a> {
    pub scope: &'a IdempotencyScope,
    pub fingerprint: Fingerprint,
    pub resource: &'a str,
    pub token: LeaseToken,
    pub lease_until: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

impl NewRecord<'_> {
    /// The item: in flight, in both indexes.
    pub(crate) fn item(&self) -> Item {
        let pk = pk_of(self.scope);
        HashMap::from([
            (SHARD.to_owned(), s(shard_of(&pk))),
            (IN_FLIGHT_ORDER.to_owned(), s(in_flight_order(self.created_at, &pk))),
            (PK.to_owned(), s(pk)),
            (CALLER.to_owned(), s(&self.scope.caller)),
            (KEY.to_owned(), s(self.scope.key.as_str())),
            (FINGERPRINT.to_owned(), b(self.fingerprint.0.to_vec())),
            (RESOURCE.to_owned(), s(self.resource)),
            (STATE.to_owned(), s(IN_FLIGHT)),
            (TOKEN.to_owned(), s(self.token.0.to_string())),
            (LEASE_UNTIL.to_owned(), n(self.lease_until)),
            (CREATED_AT.to_owned(), n(self.created_at)),
            (EXPIRES_AT.to_owned(), n(self.expires_at)),
            (TTL.to_owned(), n(ttl_of(self.expires_at))),
        ])
    }
}

/// A stored item, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub scope: IdempotencyScope,
    pub fingerprint: Fingerprint,
    pub resource: String,
    pub token: LeaseToken,
    pub state: StoredState,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredState {
    InFlight { lease_until: i64 },
    Completed { response: Vec<u8> },
}

impl Stored {
    /// Past retention: absent for every call.
    pub(crate) fn is_expired(&self, now: i64) -> bool {
        self.expires_at <= now
    }

    /// The port's view of an in-flight item; `None` for a completed one.
    pub(crate) fn in_flight_record(self) -> Option<IdempotencyRecord> {
        let StoredState::InFlight { lease_until } = self.state else { return None };
        Some(IdempotencyRecord {
            scope: self.scope,
            fingerprint: self.fingerprint,
            resource: self.resource,
            state: RecordState::InFlight { token: self.token, lease_until: time(lease_until) },
            created_at: time(self.created_at),
            expires_at: time(self.expires_at),
        })
    }
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::storage(format!("dynamodb idempotency item is not this store's: {what}"), false)
}

fn get<'a>(item: &'a Item, name: &str) -> Result<&'a AttributeValue> {
    item.get(name).ok_or_else(|| corrupt(format!("no {name}")))
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str> {
    get(item, name)?.as_s().map(String::as_str).map_err(|_| corrupt(format!("{name} is not a string")))
}

fn get_n(item: &Item, name: &str) -> Result<i64> {
    get(item, name)?
        .as_n()
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| corrupt(format!("{name} is not a 64-bit integer")))
}

fn get_b<'a>(item: &'a Item, name: &str) -> Result<&'a [u8]> {
    get(item, name)?.as_b().map(Blob::as_ref).map_err(|_| corrupt(format!("{name} is not binary")))
}

/// Decodes a full item (not an index's keys-only projection).
pub(crate) fn stored_of(item: &Item) -> Result<Stored> {
    let key = IdempotencyKey::new(get_s(item, KEY)?).map_err(corrupt)?;
    let scope = IdempotencyScope { caller: get_s(item, CALLER)?.to_owned(), key };
    if get_s(item, PK)? != pk_of(&scope) {
        return Err(corrupt("pk does not name its caller and key"));
    }
    let fingerprint =
        Fingerprint(get_b(item, FINGERPRINT)?.try_into().map_err(|_| corrupt("fingerprint is not 32 bytes"))?);
    let token = LeaseToken(get_s(item, TOKEN)?.parse().map_err(|_| corrupt("token is not a UUID"))?);
    let state = match get_s(item, STATE)? {
        IN_FLIGHT => StoredState::InFlight { lease_until: get_n(item, LEASE_UNTIL)? },
        COMPLETED => StoredState::Completed { response: get_b(item, RESPONSE)?.to_vec() },
        other => return Err(corrupt(format!("state {other:?}"))),
    };
    Ok(Stored {
        scope,
        fingerprint,
        resource: get_s(item, RESOURCE)?.to_owned(),
        token,
        state,
        created_at: get_n(item, CREATED_AT)?,
        expires_at: get_n(item, EXPIRES_AT)?,
    })
}

/// The key of an index entry (keys-only projection) or item.
pub(crate) fn key_of(item: &Item) -> Result<Item> {
    Ok(HashMap::from([(PK.to_owned(), s(get_s(item, PK)?))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(caller: &str, key: &str) -> IdempotencyScope {
        IdempotencyScope { caller: caller.into(), key: IdempotencyKey::new(key).expect("valid key") }
    }

    #[test]
    fn partition_keys_are_one_to_one() {
        // A caller ending like another's start cannot make two scopes share a partition key.
        let pairs = [scope("a", "bc"), scope("a\u{1f}b", "c"), scope("ab", "c"), scope("", "abc")];
        let keys: std::collections::HashSet<String> = pairs.iter().map(pk_of).collect();
        assert_eq!(keys.len(), pairs.len(), "{keys:?}");
    }

    #[test]
    fn the_largest_scope_fits_dynamodb_key_sizes() {
        let largest =
            scope(&"c".repeat(CALLER_BYTES_MAX), &"k".repeat(bank_core::idempotency::IDEMPOTENCY_KEY_LEN_MAX));
        let pk = pk_of(&largest);
        assert!(pk.len() <= 2048, "a partition key has at most 2,048 bytes: {}", pk.len());
        let order = in_flight_order(i64::MIN, &pk);
        assert!(order.len() <= 1024, "a sort key has at most 1,024 bytes: {}", order.len());
    }

    #[test]
    fn in_flight_order_sorts_by_time_then_scope() {
        let times = [i64::MIN, -1, 0, 1, 1_767_225_600_000_000_000, i64::MAX];
        let orders: Vec<String> = times.iter().map(|t| in_flight_order(*t, "z")).collect();
        assert!(orders.windows(2).all(|w| w[0] < w[1]), "{orders:?}");
        assert!(in_flight_order(5, "alice\u{1f}k") < in_flight_order(5, "bob\u{1f}k"));
        assert!(in_flight_order_from(5) <= in_flight_order(5, ""), "the bound takes the instant itself");
        assert!(in_flight_order_from(6) > in_flight_order(5, "\u{7f}"), "and nothing earlier");
    }

    #[test]
    fn ttl_rounds_up_and_adds_the_grace() {
        assert_eq!(ttl_of(10_000_000_000), 10 + TTL_GRACE_SECONDS);
        assert_eq!(ttl_of(10_000_000_001), 11 + TTL_GRACE_SECONDS, "never before expires_at");
    }

    #[test]
    fn shards_are_stable_and_in_range() {
        let shards: std::collections::HashSet<String> =
            (0..500).map(|i| shard_of(&format!("caller\u{1f}{i}"))).collect();
        assert_eq!(shards.len(), usize::from(INDEX_SHARDS), "500 keys reach every shard: {shards:?}");
        assert_eq!(shard_of("alice\u{1f}k"), shard_of("alice\u{1f}k"));
    }

    #[test]
    fn a_new_record_decodes_to_what_was_stored() {
        let sc = scope("alice", "key-1");
        let token = LeaseToken::new();
        let new = NewRecord {
            scope: &sc,
            fingerprint: Fingerprint([7; 32]),
            resource: "transfer-1",
            token,
            lease_until: 30,
            created_at: 10,
            expires_at: 20,
        };
        let item = new.item();
        assert_eq!(item[TTL], n(TTL_GRACE_SECONDS + 1));
        assert_eq!(item[IN_FLIGHT_ORDER], s(in_flight_order(10, &pk_of(&sc))));
        let stored = stored_of(&item).expect("decode");
        assert_eq!(
            stored,
            Stored {
                scope: sc.clone(),
                fingerprint: Fingerprint([7; 32]),
                resource: "transfer-1".into(),
                token,
                state: StoredState::InFlight { lease_until: 30 },
                created_at: 10,
                expires_at: 20,
            }
        );
        let mut forged = item.clone();
        forged.insert(PK.to_owned(), s("mallory\u{1f}key-1"));
        assert!(stored_of(&forged).is_err(), "a pk not naming its caller and key is refused");
        let mut bad = item;
        bad.insert(STATE.to_owned(), s("done"));
        assert!(stored_of(&bad).is_err());
    }
}
