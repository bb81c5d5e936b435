//! [`DynamoIdempotencyStore`] on the emulator: the idempotency conformance suite (a fresh table per
//! case), and what only a shared DynamoDB table shows — two stores (two processes) racing on one
//! table, the table check, the stored item's TTL and index attributes, the size limits.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use bank_aws::aws::testing::{emulator_config, unique_name};
use bank_aws::dynamodb::{
    CALLER_BYTES_MAX, DynamoIdempotencyStore, RESOURCE_BYTES_MAX, RESPONSE_BYTES_MAX, check_table, create_table,
};
use bank_core::Error;
use bank_core::clock::{Clock, ManualClock};
use bank_core::idempotency::{
    Begin, IDEMPOTENCY_KEY_LEN_MAX, IDEMPOTENCY_RETENTION_HOURS, IdempotencyKey, IdempotencyScope, LeaseToken,
};
use bank_core::memory::idempotency::MemoryIdempotencyStore;
use bank_core::ports::IdempotencyStore;
use bank_core::testkit::idempotency::IdempotencyHarness;
use bank_core::transfer::Fingerprint;
use chrono::TimeDelta;

async fn client() -> Option<Client> {
    Some(Client::new(&emulator_config().await?))
}

/// A new idempotency table and its name; `None` when the emulator is absent.
async fn table() -> Option<(Client, String)> {
    let client = client().await?;
    let table = unique_name("bank-idempotency");
    create_table(&client, &table).await.expect("create the table");
    Some((client, table))
}

struct DynamoHarness;

#[async_trait]
impl IdempotencyHarness for DynamoHarness {
    async fn store(&self, clock: Arc<dyn Clock>) -> Arc<dyn IdempotencyStore> {
        match table().await {
            Some((client, table)) => Arc::new(DynamoIdempotencyStore::new(client, table, clock)),
            // No emulator (and services not required): the case passes vacuously, as the
            // PostgreSQL cases do; `emulator_config` printed why.
            None => Arc::new(MemoryIdempotencyStore::new(clock)),
        }
    }
}

// Every case of the suite holds on DynamoDB: its clock (2026-01-01, moved by hand) is only ever
// compared with times the store wrote, and the emulator's TTL never runs.
bank_core::idempotency_conformance_tests!(DynamoHarness);

fn scope(caller: &str, key: &str) -> IdempotencyScope {
    IdempotencyScope { caller: caller.into(), key: IdempotencyKey::new(key).expect("valid key") }
}

const LEASE: TimeDelta = TimeDelta::seconds(30);
const RESPONSE: &[u8] = b"{\"id\":\"transfer-1\"}\x00\xff";

/// Tasks per store racing on one key, and races.
const RACERS_PER_STORE: usize = 25;
const RACES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn begins_from_two_stores_on_one_table_start_exactly_once() {
    let Some((_, table)) = table().await else { return };
    let clock = ManualClock::at_epoch();
    // Two processes: each its own client (connections) and store, one table.
    let mut stores = Vec::new();
    for _ in 0..2 {
        let client = client().await.expect("emulator");
        stores.push(Arc::new(DynamoIdempotencyStore::new(client, table.clone(), Arc::new(clock.clone()))));
    }
    for race in 0..RACES {
        let s = scope("alice", &format!("race-{race}"));
        let outcomes = race_on(&stores, &s).await;
        let (winner, token) = the_one_start(&outcomes, false);
        // The other process sees the first one's record.
        let other = &stores[1 - winner];
        let seen = other.begin(&s, Fingerprint([1; 32]), "late", LEASE).await;
        assert!(matches!(seen, Err(Error::IdempotencyInFlight)), "{seen:?}");
        stores[winner].complete(&s, token, RESPONSE.to_vec()).await.expect("complete");
        let replay = other.begin(&s, Fingerprint([1; 32]), "late", LEASE).await.expect("replay");
        assert!(matches!(&replay, Begin::Replay { response, .. } if response == RESPONSE), "{replay:?}");
    }

    // Abandoned keys: of the takeovers racing from both processes, one wins.
    let abandoned = scope("alice", "abandoned");
    let first = stores[0].begin(&abandoned, Fingerprint([1; 32]), "first", LEASE).await.expect("begin");
    let Begin::Started { token: first, .. } = first else { panic!("expected a start, got {first:?}") };
    clock.advance(LEASE);
    let outcomes = race_on(&stores, &abandoned).await;
    let (winner, token) = the_one_start(&outcomes, true);
    let stale = stores[1 - winner].complete(&abandoned, first, RESPONSE.to_vec()).await;
    assert!(matches!(stale, Err(Error::LeaseLost)), "the dead attempt's token is refused: {stale:?}");
    stores[1 - winner].complete(&abandoned, token, RESPONSE.to_vec()).await.expect("any process may complete");
}

/// Every task of both stores `begin`s `s`, released together.
async fn race_on(
    stores: &[Arc<DynamoIdempotencyStore>],
    s: &IdempotencyScope,
) -> Vec<(usize, bank_core::Result<Begin>)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(stores.len() * RACERS_PER_STORE));
    let mut tasks = Vec::new();
    for (index, store) in stores.iter().enumerate() {
        for task in 0..RACERS_PER_STORE {
            let (store, barrier, s) = (Arc::clone(store), Arc::clone(&barrier), s.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                (index, store.begin(&s, Fingerprint([1; 32]), &format!("transfer-{index}-{task}"), LEASE).await)
            }));
        }
    }
    futures::future::join_all(tasks).await.into_iter().map(|joined| joined.expect("a begin task panicked")).collect()
}

/// The store index and token of the single start; every other outcome is in flight.
fn the_one_start(outcomes: &[(usize, bank_core::Result<Begin>)], takeover: bool) -> (usize, LeaseToken) {
    let started: Vec<(usize, LeaseToken)> = outcomes
        .iter()
        .filter_map(|(store, outcome)| match outcome {
            Ok(Begin::Started { token, takeover: t, .. }) if *t == takeover => Some((*store, *token)),
            _ => None,
        })
        .collect();
    let in_flight = outcomes.iter().filter(|(_, o)| matches!(o, Err(Error::IdempotencyInFlight))).count();
    assert_eq!(started.len(), 1, "exactly one start (takeover: {takeover}): {outcomes:?}");
    assert_eq!(in_flight, outcomes.len() - 1, "the others see it in flight: {outcomes:?}");
    started[0]
}

#[tokio::test]
async fn the_table_check_wants_the_idempotency_shape() {
    let Some((client, table)) = table().await else { return };
    check_table(&client, &table).await.expect("a table made by create_table passes");
    create_table(&client, &table).await.expect("creating it again is fine");
    let store = DynamoIdempotencyStore::new(client.clone(), table.clone(), Arc::new(ManualClock::at_epoch()));
    store.check_table().await.expect("through the store");

    // The right key, no indexes.
    let plain = unique_name("bank-plain");
    client
        .create_table()
        .table_name(&plain)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("definition"),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().expect("key"))
        .send()
        .await
        .expect("a plain table");
    match check_table(&client, &plain).await {
        Err(Error::Storage { message, retryable: false }) => assert!(message.contains("index"), "{message}"),
        other => panic!("a table without the indexes: expected a refusal, got {other:?}"),
    }

    // The right shape with TTL off.
    client
        .update_time_to_live()
        .table_name(&table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().enabled(false).attribute_name("ttl").build().expect("spec"),
        )
        .send()
        .await
        .expect("turn TTL off");
    match check_table(&client, &table).await {
        Err(Error::Storage { message, retryable: false }) => assert!(message.contains("TTL"), "{message}"),
        other => panic!("a table without TTL: expected a refusal, got {other:?}"),
    }

    assert!(check_table(&client, &unique_name("bank-missing")).await.is_err(), "no table");
}

/// The item as stored.
async fn raw_item(client: &Client, table: &str, pk: &str) -> Option<HashMap<String, AttributeValue>> {
    let read = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("get item");
    read.item().cloned()
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> i64 {
    item[name].as_n().expect("a number").parse().expect("an integer")
}

#[tokio::test]
async fn items_carry_their_ttl_and_leave_the_in_flight_index_when_completed() {
    let Some((client, table)) = table().await else { return };
    let clock = ManualClock::at_epoch();
    let store = DynamoIdempotencyStore::new(client.clone(), table.clone(), Arc::new(clock.clone()));
    clock.advance(TimeDelta::nanoseconds(1));
    let s = scope("alice", "key-1");
    let begin = store.begin(&s, Fingerprint([1; 32]), "transfer-1", LEASE).await.expect("begin");
    let Begin::Started { token, .. } = begin else { panic!("expected a start, got {begin:?}") };

    let pk = "alice\u{1f}key-1";
    let item = raw_item(&client, &table, pk).await.expect("stored");
    let expires_at = clock.now() + TimeDelta::hours(IDEMPOTENCY_RETENTION_HOURS);
    assert_eq!(number(&item, "expires_at"), expires_at.timestamp_nanos_opt().expect("in range"));
    assert_eq!(
        number(&item, "ttl"),
        expires_at.timestamp() + 1 + 3600,
        "TTL: expires_at in seconds, rounded up, plus an hour's grace"
    );
    assert!(item.contains_key("in_flight_order"), "in the in-flight index");

    store.complete(&s, token, RESPONSE.to_vec()).await.expect("complete");
    let item = raw_item(&client, &table, pk).await.expect("stored");
    assert!(!item.contains_key("in_flight_order"), "a completed record leaves the in-flight index");
    assert_eq!(number(&item, "ttl"), expires_at.timestamp() + 1 + 3600, "completion keeps the first use's TTL");
    assert_eq!(item["response"].as_b().expect("binary").as_ref(), RESPONSE);
}

#[tokio::test]
async fn sizes_are_bounded_and_the_largest_record_fits_an_item() {
    let Some((client, table)) = table().await else { return };
    let store = DynamoIdempotencyStore::new(client, table, Arc::new(ManualClock::at_epoch()));
    let fingerprint = Fingerprint([1; 32]);
    let long_caller = scope(&"c".repeat(CALLER_BYTES_MAX + 1), "k");
    let refused = store.begin(&long_caller, fingerprint, "r", LEASE).await;
    assert!(matches!(refused, Err(Error::InvalidInput(_))), "{refused:?}");
    let refused = store.begin(&scope("alice", "k"), fingerprint, &"r".repeat(RESOURCE_BYTES_MAX + 1), LEASE).await;
    assert!(matches!(refused, Err(Error::InvalidInput(_))), "{refused:?}");
    let refused = store.begin(&scope("alice", "k"), fingerprint, "r", TimeDelta::zero()).await;
    assert!(matches!(refused, Err(Error::InvalidInput(_))), "{refused:?}");

    // Every part at its limit: the item stays under DynamoDB's 400 KB.
    let largest = scope(&"c".repeat(CALLER_BYTES_MAX), &"k".repeat(IDEMPOTENCY_KEY_LEN_MAX));
    let resource = "r".repeat(RESOURCE_BYTES_MAX);
    let begin = store.begin(&largest, fingerprint, &resource, LEASE).await.expect("begin the largest key");
    let Begin::Started { token, .. } = begin else { panic!("expected a start, got {begin:?}") };
    let refused = store.complete(&largest, token, vec![7; RESPONSE_BYTES_MAX + 1]).await;
    assert!(matches!(refused, Err(Error::InvalidInput(_))), "{refused:?}");
    store.complete(&largest, token, vec![7; RESPONSE_BYTES_MAX]).await.expect("the largest response");
    let replay = store.begin(&largest, fingerprint, "other", LEASE).await.expect("replay");
    assert_eq!(replay, Begin::Replay { resource, response: vec![7; RESPONSE_BYTES_MAX] });
    let abandoned = store.abandoned(10).await.expect("abandoned");
    assert!(abandoned.is_empty(), "{abandoned:?}");
}
