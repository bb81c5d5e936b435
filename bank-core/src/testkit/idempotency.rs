//! The [`IdempotencyStore`] conformance suite.
//!
//! Every case builds a fresh store through an [`IdempotencyHarness`] with a [`ManualClock`], drives
//! it only through the port, and checks the contract written on [`IdempotencyStore`] and in
//! [`crate::idempotency`]: start, in-flight refusal, replay of the exact stored response,
//! fingerprint mismatch in every state, scope isolation, lease takeover, lease tokens, release,
//! retention and purging, abandoned records, and concurrency (many tasks racing on one key).
//!
//! Time boundaries are exact: a lease is live while `now < lease_until`, and a record is kept while
//! `now < created_at + IDEMPOTENCY_RETENTION_HOURS`.
//!
//! Use it from an adapter's tests:
//!
//! ```ignore
//! struct Harness;
//! #[async_trait::async_trait]
//! impl bank_core::testkit::idempotency::IdempotencyHarness for Harness {
//!     async fn store(&self, clock: Arc<dyn Clock>) -> Arc<dyn IdempotencyStore> { /* fresh store */ }
//! }
//! bank_core::idempotency_conformance_tests!(Harness);
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::clock::{Clock, ManualClock};
use crate::error::{Error, Result};
use crate::idempotency::{
    Begin, IDEMPOTENCY_RETENTION_HOURS, IdempotencyKey, IdempotencyRecord, IdempotencyScope, LeaseToken, RecordState,
};
use crate::ports::IdempotencyStore;
use crate::transfer::Fingerprint;

/// How to build a fresh, empty store for one test case.
#[async_trait]
pub trait IdempotencyHarness: Send + Sync {
    /// A new empty store that reads time from `clock`.
    async fn store(&self, clock: Arc<dyn Clock>) -> Arc<dyn IdempotencyStore>;
}

/// Expands to one `#[tokio::test]` per conformance case, each calling `$harness` (an expression
/// implementing [`IdempotencyHarness`]). The calling crate needs `tokio` with `macros` and
/// `rt-multi-thread`.
#[macro_export]
macro_rules! idempotency_conformance_tests {
    ($harness:expr) => {
        $crate::conformance_cases!(idempotency, $harness;
            new_key_starts,
            same_request_in_flight_is_refused,
            completed_request_is_replayed,
            different_request_is_a_mismatch_in_every_state,
            scopes_are_independent,
            expired_lease_is_taken_over,
            complete_and_release_need_the_current_token,
            release_forgets_the_key,
            records_are_kept_for_the_retention_period,
            purge_expired_deletes_and_counts,
            abandoned_lists_expired_leases_oldest_first,
            concurrent_begins_start_exactly_once,
            concurrent_takeovers_start_exactly_once,
            concurrent_begins_after_completion_replay,
        );
    };
}

/// The harness for [`crate::memory::idempotency::MemoryIdempotencyStore`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryIdempotencyHarness;

#[async_trait]
impl IdempotencyHarness for MemoryIdempotencyHarness {
    async fn store(&self, clock: Arc<dyn Clock>) -> Arc<dyn IdempotencyStore> {
        Arc::new(crate::memory::idempotency::MemoryIdempotencyStore::new(clock))
    }
}

/// Tasks racing on one key in the concurrency cases.
const CONCURRENT_BEGINS: usize = 100;
/// Races per concurrency case: a lost race is timing-dependent, so one round could miss it.
const RACE_ROUNDS: usize = 5;
/// The lease most cases use.
const LEASE_SECONDS: i64 = 30;
/// A response that is not UTF-8, so a store that round-trips through text fails.
const RESPONSE: &[u8] = b"{\"id\":\"transfer-1\"}\x00\xff\xfe\n";

fn lease() -> TimeDelta {
    TimeDelta::seconds(LEASE_SECONDS)
}

fn retention() -> TimeDelta {
    TimeDelta::hours(IDEMPOTENCY_RETENTION_HOURS)
}

/// A fresh store and the clock it reads.
struct World {
    store: Arc<dyn IdempotencyStore>,
    clock: ManualClock,
}

impl World {
    async fn new(harness: &dyn IdempotencyHarness) -> World {
        let clock = ManualClock::at_epoch();
        let store = harness.store(Arc::new(clock.clone())).await;
        World { store, clock }
    }

    async fn begin(&self, scope: &IdempotencyScope, fingerprint: Fingerprint, resource: &str) -> Result<Begin> {
        self.store.begin(scope, fingerprint, resource, lease()).await
    }

    /// Begins, expecting a fresh start naming `resource`; returns its token.
    async fn start(&self, scope: &IdempotencyScope, fingerprint: Fingerprint, resource: &str) -> LeaseToken {
        let begin = self.begin(scope, fingerprint, resource).await.expect("begin a new key");
        let token = token_of(&begin);
        assert_eq!(
            begin,
            Begin::Started { resource: resource.into(), token, first_seen_at: self.clock.now(), takeover: false },
            "a new key starts with the given resource"
        );
        token
    }

    /// Begins and completes a request with [`RESPONSE`].
    async fn finish(&self, scope: &IdempotencyScope, fingerprint: Fingerprint, resource: &str) {
        let token = self.start(scope, fingerprint, resource).await;
        self.store.complete(scope, token, RESPONSE.to_vec()).await.expect("complete with the current token");
    }

    async fn assert_in_flight(&self, scope: &IdempotencyScope, fingerprint: Fingerprint, context: &str) {
        let outcome = self.begin(scope, fingerprint, "other-resource").await;
        assert!(matches!(outcome, Err(Error::IdempotencyInFlight)), "{context}: expected in flight, got {outcome:?}");
    }

    async fn assert_replay(&self, scope: &IdempotencyScope, fingerprint: Fingerprint, resource: &str, response: &[u8]) {
        let outcome = self.begin(scope, fingerprint, "other-resource").await.expect("begin a completed key");
        assert_eq!(outcome, Begin::Replay { resource: resource.into(), response: response.to_vec() });
    }
}

fn scope(caller: &str, key: &str) -> IdempotencyScope {
    IdempotencyScope { caller: caller.into(), key: IdempotencyKey::new(key).expect("test keys are valid") }
}

fn fingerprint(n: u8) -> Fingerprint {
    Fingerprint([n; 32])
}

/// The token of a [`Begin::Started`]; panics on anything else.
fn token_of(begin: &Begin) -> LeaseToken {
    match begin {
        Begin::Started { token, .. } => *token,
        Begin::Replay { .. } => panic!("expected Started, got {begin:?}"),
    }
}

fn assert_lease_lost(outcome: Result<()>, context: &str) {
    assert!(matches!(outcome, Err(Error::LeaseLost)), "{context}: expected LeaseLost, got {outcome:?}");
}

/// A new key starts, names the given resource, gets a fresh token and is stored.
pub async fn new_key_starts(harness: &dyn IdempotencyHarness) {
    let w = World::new(harness).await;
    let first = w.start(&scope("alice", "key-1"), fingerprint(1), "transfer-1").await;
    let second = w.start(&scope("alice", "key-2"), fingerprint(1), "transfer-2").await;
    assert_ne!(first, second, "every start gets its own lease token");
    w.assert_in_flight(&scope("alice", "key-1"), fingerprint(1), "a started key is stored").await;
}

/// The same request while the first is running is refused until its lease runs out.
pub async fn same_request_in_flight_is_refused(harness: &dyn IdempotencyHarness) {
    let w = World::new(harness).await;
    let s = scope("alice", "key-1");
    w.start(&s, fingerprint(1), "transfer-1").await;
    w.assert_in_flight(&s, fingerprint(1), "immediately").await;
    w.clock.advance(lease() - TimeDelta::seconds(1));
    w.assert_in_flight(&s, fingerprint(1), "one second before the lease ends").await;
    assert!(w.store.abandoned(10).await.expect("abandoned").is_empty(), "a live lease is not abandoned");
}

/// A finished request is replayed with its exact bytes and original resource, even long after
/// its lease would have ended, and never taken over.
pub async fn completed_request_is_replayed(harness: &dyn IdempotencyHarness) {
    let w = World::new(harness).await;
    let s = scope("alice", "key-1");
    w.finish(&s, fingerprint(1), "transfer-1").await;
    w.assert_replay(&s, fingerprint(1), "transfer-1", RESPONSE).await;
    w.assert_replay(&s, fingerprint(1), "transfer-1", RESPONSE).await;
    w.clock.advance(TimeDelta::hours(1));
    w.assert_replay(&s, fingerprint(1), "transfer-1", RESPONSE).await;
    assert!(w.store.abandoned(10).await.expect("abandoned").is_empty(), "a completed key is not abandoned");

    let empty = scope("alice", "empty-response");
    let token = w.start(&empty, fingerprint(2), "transfer-2").await;
    w.store.complete(&empty, token, Vec::new()).await.expect("complete");
    w.assert_replay(&empty, fingerprint(2), "transfer-2", &[]).await;
}

/// A different request under a used key is a mismatch whether the first is in flight, completed
/// or abandoned, and the refused call changes nothing.
pub async fn different_request_is_a_mismatch_in_every_state(harness: &dyn IdempotencyHarness) {
    let w = World::new(harness).await;
    let mismatch = |outcome: Result<Begin>, state: &str| {
        assert!(matches!(outcome, Err(Error::IdempotencyMismatch)), "{state}: expected a mismatch, got {outcome:?}");
    };

    let s = scope("alice", "key-1");
    let token = w.start(&s, fingerprint(1), "transfer-1").await;
    mismatch(w.begin(&s, fingerprint(2), "transfer-2").await, "in flight");
    w.assert_in_flight(&s, fingerprint(1), "after a mismatch").await;
    w.store.complete(&s, token, RESPONSE.to_vec()).await.expect("a mismatch leaves the lease alone");
    mismatch(w.begin(&s, fingerprint(2), "transfer-2").await, "completed");
    w.assert_replay(&s, fingerprint(1), "transfer-1", RESPONSE).await;

    let abandoned = scope("alice", "key-2");
    let first = w.start(&abandoned, fingerprint(1), "transfer-3").await;
    w.clock.advance(lease());
    mismatch(w.begin(&abandoned, fingerprint(2), "transfer-4").await, "abandoned");
    let again = w.begin(&abandoned, fingerprint(1), "transfer-4").await.expect("takeover");
    assert!(
        matches!(&again, Begin::Started { resource, token, takeover: true, .. } if resource == "transfer-3" && *token != first),
        "a mismatch does not take over; the same request does: {again:?}"
    );
}

/// The same key from two callers names two independent records.
pub async fn scopes_are_independent(harness: &dyn IdempotencyHarness) {
    let w = World::new(harness).await;
    let alice = scope("alice", "shared-key");
    let bob = scope("bob", "shared-key");
    let alice_token = w.start(&alice, fingerprint(1), "alice-transfer").await;
    let bob_token = w.start(&bob, fingerprint(2), "bob-transfer").await;
    assert_ne!(alice_token, bob_token);
    w.start(&scope("alice", "other-key"), fingerprint(1), "alice-other").await;

    assert_lease_lost(w.store.complete(&bob, alice_token, b"x".to_vec()).await, "alice's token on bob's key");
    assert_lease_lost(w.store.release(&bob, alice_token).await, "alice's token on bob's key");
    w.store.complete(&alice, alice_token, b"alice".to_vec()).await.expect("complete alice");
    w.assert_in_flight(&bob, fingerprint(2), "bob's key after alice completed").await;
    w.store.complete(&bob, bob_token, b"bob".to_vec()).await.expect("complete bob");
    w.assert_replay(&alice, fingerprint(1), "alice-transfer", b"alice").await;
    w.assert_replay(&bob, fingerprint(2), "bob-transfer", b"bob").await;
}

/// Once the lease runs out, the same request takes over the stored resource and first-seen time
/// with a new token; the old token is then refused.
pub async fn expired_lease_is_taken_over(harness: &dyn IdempotencyHarness) {
    let w = World::new(harness).await;
    let s = scope("alice", "key-1");
    let started_at = w.clock.now();
    let old = w.start(&s, fingerprint(1), "transfer-1").await;
    w.clock.advance(lease() - TimeDelta::seconds(1));
    w.assert_in_flight(&s, fingerprint(1), "just before the lease ends").await;
    w.clock.advance(TimeDelta::seconds(1));

    let takeover = w.begin(&s, fingerprint(1), "transfer-2").await.expect("takeover");
    let new = token_of(&takeover);
    assert_ne!(new, old, "a takeover gets a new token");
    assert_eq!(
        takeover,
        Begin::Started { resource: "transfer-1".into(), token: new, first_seen_at: started_at, takeover: true }
    );
    w.assert_in_flight(&s, fingerprint(1), "right after the takeover").await;
    w.clock.advance(lease() - TimeDelta::seconds(1));
    w.assert_in_flight(&s, fingerprint(1), "the takeover holds a full new lease").await;

    assert_lease_lost(w.store.complete(&s, old, b"stale".to_vec()).await, "complete with the old token");
    assert_lease_lost(w.store.release(&s, old).await, "release with the old token");
    w.assert_in_flight(&s, fingerprint(1), "the old token changed nothing").await;
    w.store.complete(&s, new, RESPONSE.to_vec()).await.expect("complete with the new token");
    w.assert_replay(&s, fingerprint(1), "transfer-1", RESPONSE).await;
}

/// `complete` and `release` need the current token; completing again with it is a no-op that
/// keeps the first response; a token stays current past its lease until someone takes over.
pub async fn complete_and_release_need_the_current_token(harness: &dyn IdempotencyHarness) {
    let w = World::new(harness).await;
    let unknown = scope("alice", "never-used");
    assert_lease_lost(w.store.complete(&unknown, LeaseToken::new(), b"x".to_vec()).await, "complete unknown key");
    assert_lease_lost(w.store.release(&unknown, LeaseToken::new()).await, "release unknown key");
    w.start(&unknown, fingerprint(9), "transfer-9").await;

    let s = scope("alice", "key-1");
    let token = w.start(&s, fingerprint(1), "transfer-1").await;
    assert_lease_lost(w.store.complete(&s, LeaseToken::new(), b"x".to_vec()).await, "complete with a wrong token");
    assert_lease_lost(w.store.release(&s, LeaseToken::new()).await, "release with a wrong token");
    w.assert_in_flight(&s, fingerprint(1), "wrong tokens changed nothing").await;

    w.store.complete(&s, token, RESPONSE.to_vec()).await.expect("complete");
    w.store.complete(&s, token, RESPONSE.to_vec()).await.expect("completing again with the same token is a no-op");
    w.store.complete(&s, token, b"different".to_vec()).await.expect("completing again with the same token");
    assert_lease_lost(w.store.complete(&s, LeaseToken::new(), b"x".to_vec()).await, "complete a completed key");
    assert_lease_lost(w.store.release(&s, token).await, "release a completed key");
    w.assert_replay(&s, fingerprint(1), "transfer-1", RESPONSE).await;

    let slow = scope("alice", "slow");
    let slow_token = w.start(&slow, fingerprint(2), "transfer-2").await;
    w.clock.advance(TimeDelta::hours(1));
    w.store.complete(&slow, slow_token, RESPONSE.to_vec()).await.expect("a lease not taken over is still current");
    w.assert_replay(&slow, fingerprint(2), "transfer-2", RESPONSE).await;
}

/// `release` forgets an in-flight key: the next request with it starts afresh, whatever it is.
pub async fn release_forgets_the_key(harness: &dyn IdempotencyHarness) {
    let w = World::new(harness).await;
    let s = scope("alice", "key-1");
    let token = w.start(&s, fingerprint(1), "transfer-1").await;
    w.store.release(&s, token).await.expect("release");
    assert_lease_lost(w.store.complete(&s, token, RESPONSE.to_vec()).await, "complete after release");
    assert_lease_lost(w.store.release(&s, token).await, "release after release");
    w.clock.advance(TimeDelta::seconds(1));
    let fresh = w.start(&s, fingerprint(2), "transfer-2").await;
    assert_ne!(fresh, token);
    assert!(w.store.abandoned(10).await.expect("abandoned").is_empty());
    w.store.complete(&s, fresh, RESPONSE.to_vec()).await.expect("complete the fresh start");
    w.assert_replay(&s, fingerprint(2), "transfer-2", RESPONSE).await;
}

/// Records live `IDEMPOTENCY_RETENTION_HOURS` from first use (not from completion, not from a
/// takeover); past that, the key behaves as never used, whatever its state.
pub async fn records_are_kept_for_the_retention_period(harness: &dyn IdempotencyHarness) {
    let w = World::new(harness).await;
    let t0 = w.clock.now();
    let completed = scope("alice", "completed");
    let completed_token = w.start(&completed, fingerprint(1), "transfer-1").await;
    let in_flight = scope("alice", "in-flight");
    // A lease longer than retention: the record is still forgotten at retention.
    let begin = w.store.begin(&in_flight, fingerprint(2), "transfer-2", retention() * 2).await.expect("begin");
    let in_flight_token = token_of(&begin);
    let taken_over = scope("alice", "taken-over");
    w.start(&taken_over, fingerprint(3), "transfer-3").await;

    w.clock.advance(TimeDelta::hours(1));
    w.store.complete(&completed, completed_token, RESPONSE.to_vec()).await.expect("complete an hour later");
    let takeover = w.begin(&taken_over, fingerprint(3), "transfer-3b").await.expect("takeover");
    assert!(matches!(takeover, Begin::Started { takeover: true, .. }), "{takeover:?}");
    w.store.complete(&taken_over, token_of(&takeover), RESPONSE.to_vec()).await.expect("complete takeover");

    w.clock.set(t0 + retention() - TimeDelta::minutes(1));
    w.assert_replay(&completed, fingerprint(1), "transfer-1", RESPONSE).await;
    w.assert_replay(&taken_over, fingerprint(3), "transfer-3", RESPONSE).await;
    w.assert_in_flight(&in_flight, fingerprint(2), "in flight at 23h59m").await;

    w.clock.set(t0 + retention());
    w.start(&completed, fingerprint(1), "transfer-1b").await;
    w.start(&taken_over, fingerprint(3), "transfer-3c").await;
    w.start(&in_flight, fingerprint(4), "transfer-4").await;
    assert_lease_lost(
        w.store.complete(&in_flight, in_flight_token, RESPONSE.to_vec()).await,
        "a token of a forgotten record",
    );
}

/// `purge_expired` deletes exactly the records past retention and counts them.
pub async fn purge_expired_deletes_and_counts(harness: &dyn IdempotencyHarness) {
    let w = World::new(harness).await;
    let t0 = w.clock.now();
    assert_eq!(w.store.purge_expired().await.expect("purge"), 0, "an empty store");

    let completed = scope("alice", "completed");
    w.finish(&completed, fingerprint(1), "transfer-1").await;
    let in_flight = scope("alice", "in-flight");
    w.start(&in_flight, fingerprint(2), "transfer-2").await;
    let replaced = scope("alice", "replaced");
    w.finish(&replaced, fingerprint(3), "transfer-3").await;
    let released = scope("alice", "released");
    let token = w.start(&released, fingerprint(4), "transfer-4").await;
    w.store.release(&released, token).await.expect("release");
    w.clock.advance(TimeDelta::hours(12));
    let later = scope("alice", "later");
    w.finish(&later, fingerprint(5), "transfer-5").await;
    assert_eq!(w.store.purge_expired().await.expect("purge"), 0, "nothing is past retention yet");

    w.clock.set(t0 + retention());
    // A begin on an expired record replaces it: the fresh record is not past retention.
    w.start(&replaced, fingerprint(3), "transfer-3b").await;
    assert_eq!(w.store.purge_expired().await.expect("purge"), 2, "completed and in-flight records of t0");
    assert_eq!(w.store.purge_expired().await.expect("purge"), 0, "purged records are gone");
    w.assert_replay(&later, fingerprint(5), "transfer-5", RESPONSE).await;
    w.assert_in_flight(&replaced, fingerprint(3), "the replacing record survives the purge").await;
    w.start(&completed, fingerprint(1), "transfer-1b").await;

    w.clock.set(t0 + TimeDelta::hours(12) + retention());
    assert_eq!(w.store.purge_expired().await.expect("purge"), 1, "the record made at 12h");
    w.clock.set(t0 + retention() * 2);
    assert_eq!(w.store.purge_expired().await.expect("purge"), 2, "the records made at 24h");
    assert_eq!(w.store.purge_expired().await.expect("purge"), 0, "the store is empty");
}

/// `abandoned` lists in-flight records whose lease ran out, oldest first, at most `limit`.
pub async fn abandoned_lists_expired_leases_oldest_first(harness: &dyn IdempotencyHarness) {
    const RECORDS: u8 = 20;
    let w = World::new(harness).await;
    let t0 = w.clock.now();
    // Record i starts at t0 + i min with its lease ending at t0 + (60 - i) min, so the oldest
    // record's lease ends last: ordering by lease end would reverse the expected order.
    let mut expected: Vec<IdempotencyRecord> = Vec::new();
    for i in 0..RECORDS {
        let minutes = i64::from(i);
        w.clock.set(t0 + TimeDelta::minutes(minutes));
        let s = scope("alice", &format!("abandoned-{i:02}"));
        let resource = format!("transfer-{i}");
        let begin =
            w.store.begin(&s, fingerprint(i), &resource, TimeDelta::minutes(60 - 2 * minutes)).await.expect("begin");
        let created_at = w.clock.now();
        expected.push(IdempotencyRecord {
            scope: s,
            fingerprint: fingerprint(i),
            resource,
            state: RecordState::InFlight {
                token: token_of(&begin),
                lease_until: t0 + TimeDelta::minutes(60 - minutes),
            },
            created_at,
            expires_at: created_at + retention(),
        });
    }
    let live = scope("bob", "live");
    w.store.begin(&live, fingerprint(100), "live", TimeDelta::hours(2)).await.expect("begin live");
    w.finish(&scope("bob", "completed"), fingerprint(101), "completed").await;
    let released = scope("bob", "released");
    let token = w.start(&released, fingerprint(102), "released").await;
    w.store.release(&released, token).await.expect("release");
    assert!(w.store.abandoned(100).await.expect("abandoned").is_empty(), "every lease is still live");

    let all_expired_at: DateTime<Utc> = t0 + TimeDelta::minutes(60);
    w.clock.set(all_expired_at);
    assert_eq!(w.store.abandoned(100).await.expect("abandoned"), expected, "all expired leases, oldest first");
    assert_eq!(w.store.abandoned(5).await.expect("abandoned"), expected[..5], "bounded by the limit");
    assert!(w.store.abandoned(0).await.expect("abandoned").is_empty(), "a limit of zero");

    let takeover = w.begin(&expected[0].scope, fingerprint(0), "again").await.expect("takeover");
    assert!(matches!(takeover, Begin::Started { takeover: true, .. }), "{takeover:?}");
    assert_eq!(w.store.abandoned(100).await.expect("abandoned"), expected[1..], "a taken-over lease is live again");

    w.clock.set(t0 + TimeDelta::minutes(i64::from(RECORDS)) + retention());
    assert!(w.store.abandoned(100).await.expect("abandoned").is_empty(), "records past retention are forgotten");
}

/// Of many concurrent `begin`s on one new key exactly one starts; the rest see it in flight.
pub async fn concurrent_begins_start_exactly_once(harness: &dyn IdempotencyHarness) {
    let w = World::new(harness).await;
    for round in 0..RACE_ROUNDS {
        let s = scope("alice", &format!("contended-{round}"));
        let outcomes = race(&w, &s).await;
        let started = the_one_start(&outcomes, round);
        let Begin::Started { resource, token, takeover: false, .. } = started else {
            panic!("round {round}: expected a fresh start, got {started:?}");
        };
        w.store.complete(&s, *token, RESPONSE.to_vec()).await.expect("the winner completes");
        w.assert_replay(&s, fingerprint(1), resource, RESPONSE).await;
    }
}

/// Of many concurrent `begin`s on an abandoned key exactly one takes over.
pub async fn concurrent_takeovers_start_exactly_once(harness: &dyn IdempotencyHarness) {
    let w = World::new(harness).await;
    let mut firsts = Vec::with_capacity(RACE_ROUNDS);
    for round in 0..RACE_ROUNDS {
        let s = scope("alice", &format!("contended-{round}"));
        firsts.push((w.start(&s, fingerprint(1), &format!("transfer-original-{round}")).await, s));
    }
    w.clock.advance(lease());
    for (round, (first, s)) in firsts.into_iter().enumerate() {
        let outcomes = race(&w, &s).await;
        let started = the_one_start(&outcomes, round);
        let original = format!("transfer-original-{round}");
        assert!(
            matches!(started, Begin::Started { resource, token, takeover: true, .. }
                if *resource == original && *token != first),
            "round {round}: expected a takeover of {original}, got {started:?}"
        );
        assert_lease_lost(w.store.complete(&s, first, RESPONSE.to_vec()).await, "the abandoned attempt's token");
    }
}

/// Concurrent `begin`s on a completed key all replay the same response.
pub async fn concurrent_begins_after_completion_replay(harness: &dyn IdempotencyHarness) {
    let w = World::new(harness).await;
    let s = scope("alice", "contended");
    w.finish(&s, fingerprint(1), "transfer-1").await;
    let expected = Begin::Replay { resource: "transfer-1".into(), response: RESPONSE.to_vec() };
    for outcome in race(&w, &s).await {
        assert_eq!(outcome.expect("a replay"), expected);
    }
}

/// The single `Started` among the outcomes of a race; panics unless every other one is in flight.
fn the_one_start(outcomes: &[Result<Begin>], round: usize) -> &Begin {
    let started: Vec<&Begin> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let in_flight = outcomes.iter().filter(|o| matches!(o, Err(Error::IdempotencyInFlight))).count();
    assert_eq!(started.len(), 1, "round {round}: exactly one begin starts: {started:?}");
    assert_eq!(in_flight, CONCURRENT_BEGINS - 1, "round {round}: the others see it in flight: {outcomes:?}");
    started[0]
}

/// [`CONCURRENT_BEGINS`] tasks, released together, each `begin` the same request on `scope` with
/// its own resource.
async fn race(w: &World, scope: &IdempotencyScope) -> Vec<Result<Begin>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(CONCURRENT_BEGINS));
    let tasks: Vec<_> = (0..CONCURRENT_BEGINS)
        .map(|task| {
            let store = Arc::clone(&w.store);
            let barrier = Arc::clone(&barrier);
            let scope = scope.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.begin(&scope, fingerprint(1), &format!("transfer-{task}"), lease()).await
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(CONCURRENT_BEGINS);
    for joined in futures::future::join_all(tasks).await {
        outcomes.push(joined.expect("a begin task panicked"));
    }
    for outcome in &outcomes {
        assert!(
            matches!(outcome, Ok(_) | Err(Error::IdempotencyInFlight)),
            "unexpected outcome under concurrency: {outcome:?}"
        );
    }
    outcomes
}
