//! [`DynamoIdempotencyStore`]: the [`IdempotencyStore`] port on one DynamoDB table, for several
//! server processes at once.
//!
//! Semantics are exactly those of the reference `MemoryIdempotencyStore` and the contract on
//! [`IdempotencyStore`] (it passes the same conformance suite): a lease is live while
//! `now < lease_until`; a record is kept while `now < expires_at` (`created_at` +
//! [`IDEMPOTENCY_RETENTION_HOURS`]) and past that counts as absent everywhere. Time comes only from
//! the injected [`Clock`]: every condition compares stored times with the caller's `now`, sent as a
//! value; DynamoDB's clock decides nothing (but TTL, below).
//!
//! # Layout
//! - [`item`]: one record is one item, keyed by its scope (`pk` = caller U+001F key); the
//!   attributes and the size limits ([`CALLER_BYTES_MAX`], [`RESOURCE_BYTES_MAX`],
//!   [`RESPONSE_BYTES_MAX`]: an item stays under DynamoDB's 400 KB).
//! - [`requests`]: every request, built in one place, with unit tests of their conditions.
//! - [`table`]: the table's shape, [`create_table`] and [`check_table`].
//!
//! # Why it is safe
//! Every state change is **one conditional write** of the record's item, so DynamoDB serializes
//! concurrent changes of a key and no change is ever made on a stale read:
//! - `begin` puts a new item if none is there or the one there is past retention
//!   (`attribute_not_exists(pk) OR expires_at <= :now`): of many concurrent `begin`s exactly one
//!   succeeds. A refused put returns the item that refused it (`ReturnValuesOnConditionCheckFailure
//!   = ALL_OLD`, read atomically with the check), from which the answer follows: another
//!   fingerprint → `IdempotencyMismatch`; completed → a replay; in flight with a live lease →
//!   `IdempotencyInFlight`; in flight with an ended lease → a **takeover**, an update conditioned
//!   on the token seen still being current, still in flight, with its *stored* lease end `<= :now`
//!   (the token is the record's version: every start and takeover writes a new one). Of
//!   concurrent takeovers exactly one passes; a refused one re-reads the answer from the item it
//!   gets back (a bounded number of rounds, [`BEGIN_ROUNDS_MAX`]: a round is lost only to another
//!   writer's change).
//! - `complete` is an update conditioned on the token being current and in flight; refused, the
//!   item returned tells a repeat of the same completion (Ok, the first response stays) from a lost
//!   lease (`LeaseLost`). `release` is a delete on the same condition.
//! - A write the SDK retried after its first attempt had succeeded (an answer lost on the way) is
//!   recognised by its token in the refusing item: `begin` still answers `Started`.
//!
//! No change touches two items, so no `TransactWriteItems` is needed: the record is the unit of
//! consistency, as a row is for the SQLite store.
//!
//! # Indexes, and why
//! `abandoned` and `purge_expired` look records up by something other than their key, so the table
//! has two global secondary indexes, each partitioned by `shard` (0–15, from the key's SHA-256: one
//! index partition takes ~1,000 writes a second, and every `begin` and `complete` writes both
//! indexes; a query asks each shard and merges):
//! - `in_flight`, sorted by `in_flight_order` = `created_at` (20 digits) U+001F `pk`, an attribute
//!   only in-flight items carry (`complete` removes it; `release` deletes the item): a *sparse*
//!   index of the records in flight, oldest first. `abandoned(limit)` reads from each shard those
//!   first used within retention whose stored lease has ended (a filter), stops a shard at
//!   `limit`, merges the shards in that order and keeps `limit`. It reads in-flight records
//!   only — the requests running, plus the abandoned — never the completed ones.
//! - `by_expiry`, sorted by `expires_at`, keys only: `purge_expired` reads each shard up to `now`
//!   and deletes each item with the condition `expires_at <= :now` (a record a `begin` replaced
//!   since the index was read survives), counting the deletions that happened.
//!
//! Index reads are eventually consistent: `abandoned` may list a record completed or taken over a
//! moment before (its caller's `begin` then answers a replay or in flight) or miss one abandoned
//! a moment before (the next sweep finds it); `purge_expired` may miss a record that expired a
//! moment before (the next call deletes it). Records themselves are always read consistently.
//!
//! # TTL
//! Every item carries `ttl` (seconds): `expires_at` rounded up plus [`item::TTL_GRACE_SECONDS`],
//! and [`create_table`] turns DynamoDB's TTL on for it. TTL is a backstop, not the mechanism:
//! DynamoDB deletes expired items lazily (typically within days), by its own clock, and its
//! deletions are not counted by `purge_expired`; the records it deletes were already absent for
//! every call (past `expires_at`), and the grace keeps a server clock lagging AWS's from meeting a
//! live record TTL already removed. The owner still calls `purge_expired` periodically.

mod item;
mod requests;
mod table;

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use bank_core::clock::Clock;
use bank_core::idempotency::{Begin, IDEMPOTENCY_RETENTION_HOURS, IdempotencyRecord, IdempotencyScope, LeaseToken};
use bank_core::ports::IdempotencyStore;
use bank_core::transfer::Fingerprint;
use bank_core::{Error, Result};
use chrono::TimeDelta;

pub use self::item::{CALLER_BYTES_MAX, RESOURCE_BYTES_MAX, RESPONSE_BYTES_MAX};
use self::item::{
    INDEX_SHARDS, Item, NewRecord, Stored, StoredState, check_caller, key_of, nanos, pk_of, stored_of, time,
};
pub use self::table::{check_table, create_table};
use crate::aws::sdk_err;

/// Most rounds of `begin` (a create, or a takeover, refused because another writer changed the
/// key in between) before it answers a retryable error.
pub const BEGIN_ROUNDS_MAX: usize = 8;
/// Most records one `abandoned` call returns, whatever `limit` asks (a sweep calls again).
pub const ABANDONED_LIMIT_MAX: usize = 1000;

/// Idempotency records in a DynamoDB table (see the module doc). Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoIdempotencyStore {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
}

/// What a refused conditional write tells.
enum Written {
    Done,
    /// Refused; the record as it was when refused, if any.
    Refused(Option<Item>),
}

impl DynamoIdempotencyStore {
    /// A store on `table` (made by [`create_table`]) through `client`, reading time from `clock`.
    pub fn new(client: Client, table: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        DynamoIdempotencyStore { client, table: table.into(), clock }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Checks the table's shape ([`check_table`]): a start-up check.
    pub async fn check_table(&self) -> Result<()> {
        check_table(&self.client, &self.table).await
    }

    /// The record `pk` as it is now (a consistent read).
    async fn read(&self, pk: &str) -> Result<Option<Stored>> {
        let read = requests::read(&self.client, &self.table, pk)
            .send()
            .await
            .map_err(|err| sdk_err("dynamodb GetItem", err))?;
        read.item().map(stored_of).transpose()
    }

    /// The record after a refused write: the one DynamoDB returned with the refusal, else (an
    /// absent item, or an endpoint that does not return it) read again.
    async fn after_refusal(&self, pk: &str, refused: Option<Item>) -> Result<Option<Stored>> {
        match refused {
            Some(item) if !item.is_empty() => stored_of(&item).map(Some),
            _ => self.read(pk).await,
        }
    }

    async fn create(&self, new: &NewRecord<'_>, now: i64) -> Result<Written> {
        match requests::create(&self.client, &self.table, new.item(), now).send().await {
            Ok(_) => Ok(Written::Done),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(refused)) => {
                    Ok(Written::Refused(refused.item().cloned()))
                }
                _ => Err(sdk_err("dynamodb PutItem", err)),
            },
        }
    }

    async fn take_over(
        &self,
        pk: &str,
        seen: LeaseToken,
        token: LeaseToken,
        lease_until: i64,
        now: i64,
    ) -> Result<Written> {
        match requests::take_over(&self.client, &self.table, pk, seen, token, lease_until, now).send().await {
            Ok(_) => Ok(Written::Done),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                    Ok(Written::Refused(refused.item().cloned()))
                }
                _ => Err(sdk_err("dynamodb UpdateItem (takeover)", err)),
            },
        }
    }

    /// The records of one index shard for [`IdempotencyStore::abandoned`]: at most `limit`, oldest
    /// first.
    async fn abandoned_in(&self, shard: String, from: String, now: i64, limit: usize) -> Result<Vec<Stored>> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let page = requests::abandoned_page(&self.client, &self.table, &shard, from.clone(), now, start)
                .send()
                .await
                .map_err(|err| sdk_err("dynamodb Query (in-flight index)", err))?;
            for item in page.items() {
                let stored = stored_of(item)?;
                // The index is sparse on in-flight items; a completed one is only a lagging copy.
                if matches!(stored.state, StoredState::InFlight { .. }) {
                    found.push(stored);
                }
                if found.len() == limit {
                    return Ok(found);
                }
            }
            match page.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => return Ok(found),
            }
        }
    }

    /// Deletes the records of one index shard past retention at `now`; how many.
    async fn purge_in(&self, shard: String, now: i64) -> Result<u64> {
        let mut deleted = 0;
        let mut start = None;
        loop {
            let page = requests::expired_page(&self.client, &self.table, &shard, now, start)
                .send()
                .await
                .map_err(|err| sdk_err("dynamodb Query (expiry index)", err))?;
            for entry in page.items() {
                match requests::purge(&self.client, &self.table, key_of(entry)?, now).send().await {
                    Ok(_) => deleted += 1,
                    // Replaced by a `begin` since the index was read, or deleted meanwhile.
                    Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                    Err(err) => return Err(sdk_err("dynamodb DeleteItem (purge)", err)),
                }
            }
            match page.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => return Ok(deleted),
            }
        }
    }
}

/// The start a `begin` answers when its own write is what the item holds.
fn started(stored: Stored, token: LeaseToken, takeover: bool) -> Begin {
    Begin::Started { resource: stored.resource, token, first_seen_at: time(stored.created_at), takeover }
}

impl DynamoIdempotencyStore {
    /// `begin` with the token a start would store (`begin` passes a new one; a test passes one
    /// again to play an SDK retry of a write that succeeded).
    async fn begin_with(
        &self,
        scope: &IdempotencyScope,
        fingerprint: Fingerprint,
        resource: &str,
        lease: TimeDelta,
        token: LeaseToken,
    ) -> Result<Begin> {
        check_caller(scope)?;
        if resource.len() > RESOURCE_BYTES_MAX {
            return Err(Error::InvalidInput(format!("an idempotency resource has at most {RESOURCE_BYTES_MAX} bytes")));
        }
        if lease <= TimeDelta::zero() {
            return Err(Error::InvalidInput("an idempotency lease must be positive".into()));
        }
        let at = self.clock.now();
        let lease_until = at
            .checked_add_signed(lease)
            .ok_or_else(|| Error::InvalidInput("the idempotency lease is too long".into()))?;
        let expires_at = at
            .checked_add_signed(TimeDelta::hours(IDEMPOTENCY_RETENTION_HOURS))
            .ok_or_else(|| Error::storage("the clock is out of range for retaining a key", false))?;
        let now = nanos(at)?;
        // A lease past the storable range (year 2262) never runs out before it: store the maximum.
        let lease_until = lease_until.timestamp_nanos_opt().unwrap_or(i64::MAX);
        let pk = pk_of(scope);
        let new = NewRecord {
            scope,
            fingerprint,
            resource,
            token,
            lease_until,
            created_at: now,
            expires_at: nanos(expires_at)?,
        };
        // What the last refused write returned; `None`: no record is known, try to create one.
        let mut seen: Option<Stored> = None;
        let mut took_over = false;
        for _ in 0..BEGIN_ROUNDS_MAX {
            let stored = match seen.take() {
                Some(stored) => stored,
                None => match self.create(&new, now).await? {
                    Written::Done => {
                        return Ok(Begin::Started {
                            resource: resource.to_owned(),
                            token,
                            first_seen_at: at,
                            takeover: false,
                        });
                    }
                    Written::Refused(refused) => match self.after_refusal(&pk, refused).await? {
                        Some(stored) => stored,
                        // Released between the refusal and the read: create again.
                        None => continue,
                    },
                },
            };
            if stored.token == token {
                // Our own write, whose answer was lost and retried by the SDK.
                return Ok(started(stored, token, took_over));
            }
            if stored.is_expired(now) {
                // Only from a re-read (an atomic refusal never returns one): create over it.
                continue;
            }
            if stored.fingerprint != fingerprint {
                return Err(Error::IdempotencyMismatch);
            }
            let seen_token = stored.token;
            match stored.state {
                StoredState::Completed { response } => {
                    return Ok(Begin::Replay { resource: stored.resource, response });
                }
                StoredState::InFlight { lease_until: current } if now < current => {
                    return Err(Error::IdempotencyInFlight);
                }
                StoredState::InFlight { .. } => {
                    // The first attempt died: take over its resource and first-seen time.
                    took_over = true;
                    match self.take_over(&pk, seen_token, token, lease_until, now).await? {
                        Written::Done => return Ok(started(stored, token, true)),
                        Written::Refused(refused) => seen = self.after_refusal(&pk, refused).await?,
                    }
                }
            }
        }
        Err(Error::storage(
            format!("dynamodb idempotency key changed {BEGIN_ROUNDS_MAX} times during one begin; try again"),
            true,
        ))
    }
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotencyStore {
    async fn begin(
        &self,
        scope: &IdempotencyScope,
        fingerprint: Fingerprint,
        resource: &str,
        lease: TimeDelta,
    ) -> Result<Begin> {
        self.begin_with(scope, fingerprint, resource, lease, LeaseToken::new()).await
    }

    async fn complete(&self, scope: &IdempotencyScope, token: LeaseToken, response: Vec<u8>) -> Result<()> {
        check_caller(scope)?;
        if response.len() > RESPONSE_BYTES_MAX {
            return Err(Error::InvalidInput(format!("an idempotent response has at most {RESPONSE_BYTES_MAX} bytes")));
        }
        let now = nanos(self.clock.now())?;
        let pk = pk_of(scope);
        let refused = match requests::complete(&self.client, &self.table, &pk, token, response, now).send().await {
            Ok(_) => return Ok(()),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => refused.item().cloned(),
                _ => return Err(sdk_err("dynamodb UpdateItem (complete)", err)),
            },
        };
        match self.after_refusal(&pk, refused).await? {
            // The same completion again (or its SDK retry): the first response stays, as clients
            // may have seen it.
            Some(stored)
                if !stored.is_expired(now)
                    && stored.token == token
                    && matches!(stored.state, StoredState::Completed { .. }) =>
            {
                Ok(())
            }
            // Absent, past retention, taken over, or completed under another token.
            _ => Err(Error::LeaseLost),
        }
    }

    async fn release(&self, scope: &IdempotencyScope, token: LeaseToken) -> Result<()> {
        check_caller(scope)?;
        let now = nanos(self.clock.now())?;
        match requests::release(&self.client, &self.table, &pk_of(scope), token, now).send().await {
            Ok(_) => Ok(()),
            // Absent, past retention, taken over, or completed (its effect happened: never
            // forget it).
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Err(Error::LeaseLost)
            }
            Err(err) => Err(sdk_err("dynamodb DeleteItem (release)", err)),
        }
    }

    async fn abandoned(&self, limit: usize) -> Result<Vec<IdempotencyRecord>> {
        let limit = limit.min(ABANDONED_LIMIT_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let at = self.clock.now();
        let now = nanos(at)?;
        // Within retention: first used after `now - retention`.
        let oldest = at
            .checked_sub_signed(TimeDelta::hours(IDEMPOTENCY_RETENTION_HOURS))
            .and_then(|t| t.timestamp_nanos_opt())
            .map_or(i64::MIN, |t| t.saturating_add(1));
        let from = item::in_flight_order_from(oldest);
        let shards = (0..INDEX_SHARDS).map(|shard| self.abandoned_in(shard.to_string(), from.clone(), now, limit));
        let mut found: Vec<Stored> = futures::future::try_join_all(shards).await?.into_iter().flatten().collect();
        // Oldest first; the scope breaks ties, as the index orders each shard.
        found.sort_by_key(|record| (record.created_at, pk_of(&record.scope)));
        found.truncate(limit);
        Ok(found.into_iter().filter_map(Stored::in_flight_record).collect())
    }

    async fn purge_expired(&self) -> Result<u64> {
        let now = nanos(self.clock.now())?;
        let shards = (0..INDEX_SHARDS).map(|shard| self.purge_in(shard.to_string(), now));
        Ok(futures::future::try_join_all(shards).await?.into_iter().sum())
    }
}

/// A client that never sends anything: the unit tests only build requests with it.
#[cfg(test)]
pub(crate) fn offline_client() -> Client {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
    Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build(),
    )
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use bank_core::clock::ManualClock;
    use bank_core::idempotency::IdempotencyKey;

    use super::*;
    use crate::aws::testing::{emulator_config, unique_name};

    /// The SDK retries a write whose answer it did not get; if the first attempt had succeeded,
    /// the retry is refused by the write itself. `begin` recognises its token in the refusing item
    /// and still answers its start, not `IdempotencyInFlight` (which would strand the key for a
    /// lease). Needs the emulator (skips without it).
    #[tokio::test]
    async fn a_begin_whose_write_is_retried_after_succeeding_still_starts() {
        let Some(config) = emulator_config().await else { return };
        let client = Client::new(&config);
        let table = unique_name("bank-idempotency");
        create_table(&client, &table).await.expect("create the table");
        let clock = ManualClock::at_epoch();
        let store = DynamoIdempotencyStore::new(client, table, Arc::new(clock.clone()));
        let scope = IdempotencyScope { caller: "alice".into(), key: IdempotencyKey::new("k").expect("key") };
        let lease = TimeDelta::seconds(30);
        let t0 = clock.now();
        let token = LeaseToken::new();
        let first = store.begin_with(&scope, Fingerprint([1; 32]), "transfer-1", lease, token).await;
        let expected = Begin::Started { resource: "transfer-1".into(), token, first_seen_at: t0, takeover: false };
        assert_eq!(first.expect("begin"), expected);
        let retried = store.begin_with(&scope, Fingerprint([1; 32]), "transfer-1", lease, token).await;
        assert_eq!(retried.expect("the retry"), expected);

        // The same for a takeover.
        clock.advance(lease);
        let taker = LeaseToken::new();
        let takeover = store.begin_with(&scope, Fingerprint([1; 32]), "transfer-2", lease, taker).await;
        let expected =
            Begin::Started { resource: "transfer-1".into(), token: taker, first_seen_at: t0, takeover: true };
        assert_eq!(takeover.expect("takeover"), expected);
        let retried = store.begin_with(&scope, Fingerprint([1; 32]), "transfer-2", lease, taker).await;
        assert!(matches!(retried, Ok(Begin::Started { token, .. }) if token == taker), "{retried:?}");
        // Someone else's begin now sees the taker's live lease.
        let other = store.begin(&scope, Fingerprint([1; 32]), "transfer-3", lease).await;
        assert!(matches!(other, Err(Error::IdempotencyInFlight)), "{other:?}");
    }
}
