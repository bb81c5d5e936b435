//! `PgTransferStore` against the `TransferStore` conformance suite, and `OutboxRelay`s sharing its
//! outbox: several at once deliver every record exactly once in per-group order, and a relay that
//! dies holding a claim loses nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bank_aws::postgres::PgDb;
use bank_aws::postgres::testing::{test_db, test_db_with};
use bank_aws::postgres::transfers::PgTransferStore;
use bank_core::clock::{Clock, ManualClock};
use bank_core::events::{Event, EventKind, OutboxMessage};
use bank_core::faults::{FaultPoint, Faults, NoFaults};
use bank_core::ids::{AccountId, ClaimToken, CustomerId, TransferId};
use bank_core::memory::MemoryLedger;
use bank_core::memory::idempotency::MemoryIdempotencyStore;
use bank_core::money::Money;
use bank_core::payments::{OutboxRelay, PaymentsPorts};
use bank_core::ports::{EventPublisher, Inserted, TransferQueue, TransferStore};
use bank_core::queue::{Delivery, QueueMessage, QueueStats, Receipt};
use bank_core::testkit::outbox::TransferStoreHarness;
use bank_core::transfer::{Destination, Transfer, TransferRequest, TransferStatus};
use bank_core::{Error, Result};
use chrono::TimeDelta;
use tokio::sync::watch;

/// Builds each case's store on the case's own fresh schema.
struct Harness(PgDb);

#[async_trait]
impl TransferStoreHarness for Harness {
    async fn transfers(&self, clock: Arc<dyn Clock>) -> Arc<dyn TransferStore> {
        Arc::new(PgTransferStore::new(&self.0, clock))
    }
}

bank_core::transfer_store_conformance_tests!(match test_db().await {
    Some(db) => Harness(db),
    None => return,
});

/// What a relay delivered, in the order it did, across relays.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivered {
    Message(TransferId),
    Event(TransferId, EventKind),
}

/// The queue and the publisher of the relays under test: both append to one log (a relay
/// publishes after it enqueued, so the log is in delivery order), and never deduplicate, so a
/// second delivery shows.
#[derive(Debug)]
struct Recorder(watch::Sender<Vec<Delivered>>);

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder(watch::Sender::new(Vec::new())))
    }

    fn log(&self) -> Vec<Delivered> {
        self.0.borrow().clone()
    }
}

#[async_trait]
impl TransferQueue for Recorder {
    async fn enqueue(&self, message: QueueMessage) -> Result<bool> {
        self.0.send_modify(|log| log.push(Delivered::Message(message.transfer_id)));
        Ok(true)
    }

    async fn receive(&self, _max: usize, _visibility: TimeDelta) -> Result<Vec<Delivery>> {
        Ok(Vec::new())
    }

    async fn ack(&self, _receipt: &Receipt) -> Result<()> {
        Ok(())
    }

    async fn retry_later(&self, _receipt: &Receipt, _delay: TimeDelta) -> Result<()> {
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats> {
        Ok(QueueStats::default())
    }

    async fn dead_letters(&self, _limit: usize) -> Result<Vec<QueueMessage>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl EventPublisher for Recorder {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        self.0.send_modify(|log| log.extend(events.iter().map(|e| Delivered::Event(e.transfer_id, e.kind))));
        Ok(())
    }
}

/// A relay process that dies once it has delivered, before it marks anything done.
#[derive(Debug)]
struct DiesBeforeDone;

impl Faults for DiesBeforeDone {
    fn check(&self, point: FaultPoint, _transfer: Option<TransferId>) -> Result<()> {
        if point == FaultPoint::RelayBeforeDone {
            return Err(Error::Interrupted("the relay process died"));
        }
        Ok(())
    }
}

fn relay(
    store: &Arc<PgTransferStore>,
    clock: &ManualClock,
    recorder: &Arc<Recorder>,
    faults: Arc<dyn Faults>,
) -> OutboxRelay {
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let ports = PaymentsPorts {
        ledger: Arc::new(MemoryLedger::new(Arc::clone(&clock))),
        transfers: Arc::clone(store) as Arc<dyn TransferStore>,
        idempotency: Arc::new(MemoryIdempotencyStore::new(Arc::clone(&clock))),
        queue: Arc::clone(recorder) as Arc<dyn TransferQueue>,
        clock,
        faults,
    };
    OutboxRelay::new(ports, Arc::clone(recorder) as Arc<dyn EventPublisher>)
}

fn transfer(clock: &ManualClock, from: AccountId) -> Transfer {
    let request = TransferRequest {
        id: None,
        from_account_id: from,
        destination: Destination::Internal { account_id: AccountId::new() },
        money: Money::parse("1.00", "USD").expect("money"),
        reference: "relay test".into(),
    };
    let now = clock.now();
    Transfer::accepted(TransferId::new(), CustomerId::new(), &request, now, now + TimeDelta::minutes(5))
}

/// Accepts a transfer from `from`: its queue message and its `accepted` event.
async fn accept(store: &PgTransferStore, clock: &ManualClock, from: AccountId) -> Transfer {
    let t = transfer(clock, from);
    let mut outbox = vec![OutboxMessage::Enqueue(QueueMessage::first(t.id, from))];
    outbox.extend(Event::of(&t, None, clock.now()).map(OutboxMessage::Publish));
    match store.insert(t, outbox).await.expect("insert") {
        Inserted::Created(t) => t,
        Inserted::Existing(t) => panic!("{} existed", t.id),
    }
}

/// What a relay idles between runs that found nothing (real time: the database is real).
const IDLE: Duration = Duration::from_millis(2);

/// Four relays run while writers play the pipeline on their own accounts: accept a transfer, and
/// once its queue message is delivered (a worker got it), settle it. Every record is delivered
/// exactly once; per account the messages and the events come in write order, so no `settled`
/// overtakes its `accepted` although it is written while another relay may still hold that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_running_at_once_deliver_each_record_once_in_group_order() {
    let Some(db) = test_db_with(16).await else { return };
    let clock = ManualClock::at_epoch();
    let store = Arc::new(PgTransferStore::new(&db, Arc::new(clock.clone())));
    let recorder = Recorder::new();
    let writing = Arc::new(AtomicBool::new(true));
    const WRITERS: usize = 4;
    const ACCOUNTS_PER_WRITER: usize = 3;
    const TRANSFERS_PER_WRITER: usize = 30;

    let relays: Vec<_> = (0..4)
        .map(|_| {
            let relay = relay(&store, &clock, &recorder, Arc::new(NoFaults));
            let writing = Arc::clone(&writing);
            tokio::spawn(async move {
                loop {
                    // Read before relaying: nothing relayed after the writers finished means
                    // nothing is left that this relay could take.
                    let still_writing = writing.load(Ordering::SeqCst);
                    if relay.run_once(8).await.expect("relay") == 0 {
                        if !still_writing {
                            return;
                        }
                        tokio::time::sleep(IDLE).await;
                    }
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, clock, recorder) = (Arc::clone(&store), clock.clone(), Arc::clone(&recorder));
            tokio::spawn(async move {
                let accounts: Vec<AccountId> = (0..ACCOUNTS_PER_WRITER).map(|_| AccountId::new()).collect();
                let mut written: Vec<Transfer> = Vec::new();
                for i in 0..TRANSFERS_PER_WRITER {
                    let t = accept(&store, &clock, accounts[i % accounts.len()]).await;
                    let mut delivered = recorder.0.subscribe();
                    delivered.wait_for(|log| log.contains(&Delivered::Message(t.id))).await.expect("recorder");
                    let mut settled = t.clone();
                    settled.enter(TransferStatus::Settled, clock.now());
                    let event = Event::of(&settled, None, clock.now()).map(OutboxMessage::Publish);
                    written.push(store.update(settled, event.into_iter().collect()).await.expect("settle"));
                }
                written
            })
        })
        .collect();
    let mut transfers = Vec::new();
    for writer in writers {
        transfers.extend(writer.await.expect("writer"));
    }
    writing.store(false, Ordering::SeqCst);
    for relay in relays {
        relay.await.expect("relay");
    }

    let log = recorder.log();
    assert_eq!(log.len(), WRITERS * TRANSFERS_PER_WRITER * 3, "every record delivered exactly once");
    let mut by_account: BTreeMap<AccountId, Vec<&Transfer>> = BTreeMap::new();
    for t in &transfers {
        by_account.entry(t.from_account_id).or_default().push(t);
    }
    for (account, written) in by_account {
        let ids: Vec<TransferId> = written.iter().map(|t| t.id).collect();
        let messages: Vec<TransferId> = log
            .iter()
            .filter_map(|d| match d {
                Delivered::Message(id) if ids.contains(id) => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(messages, ids, "account {account}: queue messages in write order, once each");
        let events: Vec<(TransferId, EventKind)> = log
            .iter()
            .filter_map(|d| match d {
                Delivered::Event(id, kind) if ids.contains(id) => Some((*id, *kind)),
                _ => None,
            })
            .collect();
        let expected: Vec<(TransferId, EventKind)> =
            ids.iter().flat_map(|id| [(*id, EventKind::TransferAccepted), (*id, EventKind::TransferSettled)]).collect();
        assert_eq!(events, expected, "account {account}: events in write order, once each");
    }
    assert_eq!(store.outbox_lag().await.expect("lag"), (0, None));
}

/// A relay that dies after delivering, before marking done, leaves its claim to run out: no
/// other relay delivers those records meanwhile (nor anything behind them in their groups), and
/// after the lease the next relay delivers them again (at least once) and everything behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_dying_mid_claim_loses_nothing() {
    let Some(db) = test_db().await else { return };
    let clock = ManualClock::at_epoch();
    let store = Arc::new(PgTransferStore::new(&db, Arc::new(clock.clone())));
    let recorder = Recorder::new();
    let dying = relay(&store, &clock, &recorder, Arc::new(DiesBeforeDone));
    let survivor = relay(&store, &clock, &recorder, Arc::new(NoFaults));
    let (a, b) = (AccountId::new(), AccountId::new());
    let first_a = accept(&store, &clock, a).await;
    let first_b = accept(&store, &clock, b).await;

    let err = dying.run_once(2).await.expect_err("the relay dies");
    assert!(matches!(err, Error::Interrupted(_)), "{err:?}");
    assert_eq!(
        recorder.log(),
        vec![Delivered::Message(first_a.id), Delivered::Event(first_a.id, EventKind::TransferAccepted)],
        "it delivered its claim: a's two records"
    );
    // Written after the death: behind the dead claim in group a, free in group b.
    let second_a = accept(&store, &clock, a).await;
    assert_eq!(survivor.run_once(100).await.expect("relay"), 2, "only group b's record: a waits for the lease");
    assert_eq!(
        recorder.log()[2..],
        [Delivered::Message(first_b.id), Delivered::Event(first_b.id, EventKind::TransferAccepted)]
    );
    assert_eq!(survivor.run_once(100).await.expect("relay"), 0, "a is still held by the dead relay");
    assert_eq!(store.outbox_lag().await.expect("lag").0, 4, "nothing is lost meanwhile");

    clock.advance(TimeDelta::seconds(bank_core::payments::RELAY_LEASE_SECONDS_DEFAULT));
    assert_eq!(survivor.run_once(100).await.expect("relay"), 4, "the dead claim and what is behind it");
    assert_eq!(
        recorder.log()[4..],
        [
            Delivered::Message(first_a.id),
            Delivered::Message(second_a.id),
            Delivered::Event(first_a.id, EventKind::TransferAccepted),
            Delivered::Event(second_a.id, EventKind::TransferAccepted),
        ],
        "delivered again, in order, then the rest of the group"
    );
    assert_eq!(store.outbox_lag().await.expect("lag"), (0, None));
    assert_eq!(survivor.run_once(100).await.expect("relay"), 0);
}

/// A claim racing another (here: a transaction holding the head of group a locked, as a claim
/// in progress does) skips the locked record and everything behind it in its group, and takes
/// the other groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_skips_a_group_whose_head_another_claim_is_taking() {
    let Some(db) = test_db().await else { return };
    let clock = ManualClock::at_epoch();
    let store = PgTransferStore::new(&db, Arc::new(clock.clone()));
    let (a, b) = (AccountId::new(), AccountId::new());
    accept(&store, &clock, a).await;
    accept(&store, &clock, b).await;
    let mut racing = db.writer().begin().await.expect("begin");
    let head: i64 = sqlx::query_scalar("SELECT seq FROM outbox WHERE grp = $1 ORDER BY seq LIMIT 1 FOR UPDATE")
        .bind(a.as_uuid())
        .fetch_one(&mut *racing)
        .await
        .expect("lock the head of a");

    let claim = store.outbox_claim(ClaimToken::new(), 100, TimeDelta::seconds(30)).await.expect("claim");
    let groups: Vec<AccountId> = claim.iter().map(|r| r.message.group()).collect();
    assert_eq!(groups, vec![b, b], "a's second record is behind the locked head: only b's");
    assert!(claim.iter().all(|r| r.seq != u64::try_from(head).expect("seq")));

    racing.rollback().await.expect("rollback");
    let rest = store.outbox_claim(ClaimToken::new(), 100, TimeDelta::seconds(30)).await.expect("claim");
    let groups: Vec<AccountId> = rest.iter().map(|r| r.message.group()).collect();
    assert_eq!(groups, vec![a, a], "once the race is over, all of a, in order");
    assert!(rest[0].seq < rest[1].seq);
}

/// Throughput of the pipeline's transfer writes (accept, mark processing, settle: three writes
/// and three outbox records per transfer) from many concurrent callers, with relays draining the
/// outbox. Not a gate (the machine decides); run it in release:
/// `cargo test --release -p bank-aws --test postgres -- --ignored --nocapture transfer_writes`
/// (`RELAYS=n`: relays draining the outbox meanwhile, 2 by default).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run on demand in release"]
async fn transfer_writes_throughput() {
    let Some(db) = test_db_with(24).await else { return };
    let clock = ManualClock::at_epoch();
    let store = Arc::new(PgTransferStore::new(&db, Arc::new(clock.clone())));
    let recorder = Recorder::new();
    const CALLERS: usize = 512;
    const TRANSFERS: usize = 30_000;
    let writing = Arc::new(AtomicBool::new(true));
    let relay_count: usize = std::env::var("RELAYS").ok().and_then(|n| n.parse().ok()).unwrap_or(2);
    let relays: Vec<_> = (0..relay_count)
        .map(|_| {
            let relay = relay(&store, &clock, &recorder, Arc::new(NoFaults));
            let writing = Arc::clone(&writing);
            tokio::spawn(async move {
                let mut relayed = 0;
                loop {
                    let still_writing = writing.load(Ordering::SeqCst);
                    let n = relay.run_once(1024).await.expect("relay");
                    relayed += n;
                    if n == 0 {
                        if !still_writing {
                            return relayed;
                        }
                        tokio::time::sleep(IDLE).await;
                    }
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (store, clock) = (Arc::clone(&store), clock.clone());
            tokio::spawn(async move {
                let account = AccountId::new();
                for _ in 0..TRANSFERS / CALLERS {
                    let t = accept(&store, &clock, account).await;
                    let mut processing = t.clone();
                    processing.enter(TransferStatus::Processing, clock.now());
                    let processing = store.update(processing, Vec::new()).await.expect("processing");
                    let mut settled = processing.clone();
                    settled.enter(TransferStatus::Settled, clock.now());
                    let event = Event::of(&settled, None, clock.now()).map(OutboxMessage::Publish);
                    store.update(settled, event.into_iter().collect()).await.expect("settle");
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("caller");
    }
    let elapsed = started.elapsed();
    writing.store(false, Ordering::SeqCst);
    let mut relayed = 0;
    for relay in relays {
        relayed += relay.await.expect("relay");
    }
    let done = TRANSFERS / CALLERS * CALLERS;
    println!(
        "{done} transfers ({} writes) in {elapsed:?}: {:.0} transfers/s; {relayed} records relayed by {relay_count} relays",
        done * 3,
        done as f64 / elapsed.as_secs_f64()
    );
    let counts = store.count_by_status().await.expect("counts");
    assert!(counts.contains(&(TransferStatus::Settled, u64::try_from(done).expect("count"))), "{counts:?}");
}

/// The store as a relay sees it through a flaky connection: a claim or a `done` that PostgreSQL
/// carries out while its answer is lost (the relay gets an error).
#[derive(Debug)]
struct LosesAnswers {
    store: Arc<PgTransferStore>,
    lose_claim: AtomicBool,
    lose_done: AtomicBool,
    refuse_release: AtomicBool,
}

fn lost() -> Error {
    Error::storage("postgresql: connection closed before the answer", true)
}

#[async_trait]
impl TransferStore for LosesAnswers {
    async fn insert(&self, transfer: Transfer, outbox: Vec<OutboxMessage>) -> Result<Inserted> {
        self.store.insert(transfer, outbox).await
    }
    async fn get(&self, id: TransferId) -> Result<Transfer> {
        self.store.get(id).await
    }
    async fn update(&self, transfer: Transfer, outbox: Vec<OutboxMessage>) -> Result<Transfer> {
        self.store.update(transfer, outbox).await
    }
    async fn list_for_account(&self, account: AccountId, limit: usize, before: Option<u64>) -> Result<Vec<Transfer>> {
        self.store.list_for_account(account, limit, before).await
    }
    async fn due(&self, now: chrono::DateTime<chrono::Utc>, limit: usize) -> Result<Vec<Transfer>> {
        self.store.due(now, limit).await
    }
    async fn count_by_status(&self) -> Result<Vec<(TransferStatus, u64)>> {
        self.store.count_by_status().await
    }
    async fn unresolved(&self, limit: usize) -> Result<Vec<Transfer>> {
        self.store.unresolved(limit).await
    }
    async fn outbox_claim(
        &self,
        token: ClaimToken,
        limit: usize,
        lease: TimeDelta,
    ) -> Result<Vec<bank_core::events::OutboxRecord>> {
        let records = self.store.outbox_claim(token, limit, lease).await?;
        if self.lose_claim.swap(false, Ordering::SeqCst) { Err(lost()) } else { Ok(records) }
    }
    async fn outbox_done(&self, seqs: &[u64]) -> Result<()> {
        self.store.outbox_done(seqs).await?;
        if self.lose_done.swap(false, Ordering::SeqCst) { Err(lost()) } else { Ok(()) }
    }
    async fn outbox_release(&self, token: ClaimToken) -> Result<()> {
        if self.refuse_release.swap(false, Ordering::SeqCst) {
            return Err(lost());
        }
        self.store.outbox_release(token).await
    }
    async fn outbox_lag(&self) -> Result<(u64, Option<u64>)> {
        self.store.outbox_lag().await
    }
}

/// A claim made while its answer was lost does not hold the records for the lease: the relay
/// gives its token back (or, if that fails too, its next run does), and its next run delivers
/// them at once. A `done` whose answer was lost leaves nothing behind either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_was_lost_is_given_back_at_once() {
    let Some(db) = test_db().await else { return };
    let clock = ManualClock::at_epoch();
    let store = Arc::new(PgTransferStore::new(&db, Arc::new(clock.clone())));
    let flaky = Arc::new(LosesAnswers {
        store: Arc::clone(&store),
        lose_claim: AtomicBool::new(true),
        lose_done: AtomicBool::new(false),
        refuse_release: AtomicBool::new(false),
    });
    let recorder = Recorder::new();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let ports = PaymentsPorts {
        ledger: Arc::new(MemoryLedger::new(Arc::clone(&dyn_clock))),
        transfers: Arc::clone(&flaky) as Arc<dyn TransferStore>,
        idempotency: Arc::new(MemoryIdempotencyStore::new(Arc::clone(&dyn_clock))),
        queue: Arc::clone(&recorder) as Arc<dyn TransferQueue>,
        clock: dyn_clock,
        faults: Arc::new(NoFaults),
    };
    let relay = OutboxRelay::new(ports, Arc::clone(&recorder) as Arc<dyn EventPublisher>);
    let t = accept(&store, &clock, AccountId::new()).await;

    relay.run_once(10).await.expect_err("the claim's answer is lost");
    assert!(recorder.log().is_empty(), "nothing delivered");
    assert_eq!(relay.run_once(10).await.expect("relay"), 2, "claimable again at once, no lease to wait");
    let delivered = [Delivered::Message(t.id), Delivered::Event(t.id, EventKind::TransferAccepted)];
    assert_eq!(recorder.log(), delivered);

    let u = accept(&store, &clock, AccountId::new()).await;
    flaky.lose_done.store(true, Ordering::SeqCst);
    relay.run_once(10).await.expect_err("done's answer is lost");
    assert_eq!(store.outbox_lag().await.expect("lag"), (0, None), "it was done all the same");
    assert_eq!(relay.run_once(10).await.expect("relay"), 0, "and nothing is left held or pending");
    assert_eq!(recorder.log()[2..], [Delivered::Message(u.id), Delivered::Event(u.id, EventKind::TransferAccepted)]);

    // The claim's answer lost and the release refused too (the database still unreachable): the
    // next run gives the claim back before it claims.
    let v = accept(&store, &clock, AccountId::new()).await;
    flaky.lose_claim.store(true, Ordering::SeqCst);
    flaky.refuse_release.store(true, Ordering::SeqCst);
    relay.run_once(10).await.expect_err("the claim's answer is lost, its release refused");
    assert_eq!(relay.run_once(10).await.expect("relay"), 2, "given back by the next run, no lease to wait");
    assert_eq!(recorder.log()[4..], [Delivered::Message(v.id), Delivered::Event(v.id, EventKind::TransferAccepted)]);
}
