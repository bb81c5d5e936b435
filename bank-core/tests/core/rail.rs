//! The simulated payment rail and the circuit breaker, through their public API: determinism for
//! a seed, idempotency on the transfer id (money moves at most once), the "outcome unknown"
//! timeout, outages, and the breaker guarding the rail the way the payments worker uses it.

use std::sync::Arc;
use std::time::Duration;

use bank_core::clock::{Clock, ManualClock};
use bank_core::ids::TransferId;
use bank_core::money::Money;
use bank_core::ports::PaymentRail;
use bank_core::rail::breaker::{BreakerConfig, BreakerOpen, BreakerState, CircuitBreaker};
use bank_core::rail::simulator::{PPM, SimulatedRail, SimulatorConfig};
use bank_core::rail::{RailConfirmation, RailError, RailPayment, RailStatus};
use bank_core::transfer::Beneficiary;
use chrono::TimeDelta;
use parking_lot::Mutex;

type Answer = Result<RailConfirmation, RailError>;

fn id(n: u128) -> TransferId {
    TransferId::from_uuid(uuid::Uuid::from_u128(n)).expect("non-nil id")
}

fn payment(transfer_id: TransferId) -> RailPayment {
    RailPayment {
        transfer_id,
        money: Money::parse("25.00", "EUR").expect("money"),
        beneficiary: Beneficiary::iban("Jane Doe", "DE89370400440532013000").expect("beneficiary"),
        reference: "invoice 42".into(),
    }
}

fn rail(config: SimulatorConfig) -> (SimulatedRail, ManualClock) {
    let clock = ManualClock::at_epoch();
    (SimulatedRail::new(config, Arc::new(clock.clone())), clock)
}

/// A rail where every failure mode fires often.
fn chaotic(seed: u64) -> SimulatorConfig {
    SimulatorConfig {
        seed,
        failure_rate_ppm: 200_000,
        reject_rate_ppm: 200_000,
        timeout_after_success_ppm: 200_000,
        status_timeout_ppm: 200_000,
        ..SimulatorConfig::default()
    }
}

/// What a rail answers to a fixed script: for each of `ids` payments, three submits and a status
/// query.
#[derive(Debug, PartialEq)]
enum Call {
    Submit(Answer),
    Status(Result<RailStatus, RailError>),
}

async fn run_script(rail: &SimulatedRail, ids: impl Iterator<Item = u128>) -> Vec<(u128, Vec<Call>)> {
    let mut log = Vec::new();
    for n in ids {
        let p = payment(id(n));
        let mut calls = Vec::new();
        for _ in 0..3 {
            calls.push(Call::Submit(rail.submit(&p).await));
        }
        calls.push(Call::Status(rail.status(p.transfer_id).await));
        log.push((n, calls));
    }
    log
}

#[tokio::test]
async fn the_same_seed_gives_the_same_answers_to_the_same_calls() {
    let (a, _) = rail(chaotic(7));
    let (b, _) = rail(chaotic(7));
    let log_a = run_script(&a, 1..=200).await;
    let log_b = run_script(&b, 1..=200).await;
    assert_eq!(log_a, log_b);
    assert_eq!(a.accepted_count(), b.accepted_count());

    // The script exercises every kind of answer, so the comparison above means something.
    let answers: Vec<&Call> = log_a.iter().flat_map(|(_, calls)| calls).collect();
    let seen = |pred: &dyn Fn(&Call) -> bool| answers.iter().any(|c| pred(c));
    assert!(seen(&|c| matches!(c, Call::Submit(Ok(_)))));
    assert!(seen(&|c| matches!(c, Call::Submit(Err(RailError::Rejected { .. })))));
    assert!(seen(&|c| matches!(c, Call::Submit(Err(RailError::Unavailable(_))))));
    assert!(seen(&|c| matches!(c, Call::Submit(Err(RailError::Timeout)))));
    assert!(seen(&|c| matches!(c, Call::Status(Err(RailError::Timeout)))));
    assert!(seen(&|c| matches!(c, Call::Status(Ok(RailStatus::Accepted(_))))));
    assert!(seen(&|c| matches!(c, Call::Status(Ok(RailStatus::Rejected { .. })))));
}

#[tokio::test]
async fn a_different_seed_gives_different_answers() {
    let (a, _) = rail(chaotic(7));
    let (b, _) = rail(chaotic(8));
    assert_ne!(run_script(&a, 1..=200).await, run_script(&b, 1..=200).await);
}

#[tokio::test]
async fn answers_about_a_payment_do_not_depend_on_other_payments_calls() {
    let (forward, _) = rail(chaotic(11));
    let (backward, _) = rail(chaotic(11));
    let mut expected = run_script(&forward, 1..=100).await;
    // Other traffic first, then the same payments in the opposite order.
    for n in 1_000..1_050 {
        let _ = backward.submit(&payment(id(n))).await;
        let _ = backward.status(id(n)).await;
    }
    let mut got = run_script(&backward, (1..=100).rev()).await;
    expected.sort_by_key(|(n, _)| *n);
    got.sort_by_key(|(n, _)| *n);
    assert_eq!(expected, got);
}

#[tokio::test]
async fn a_resubmitted_payment_returns_the_first_confirmation_and_pays_once() {
    let (rail, _) = rail(SimulatorConfig::default());
    let p = payment(id(1));
    let first = rail.submit(&p).await.expect("accepted");
    for _ in 0..5 {
        assert_eq!(rail.submit(&p).await, Ok(first.clone()));
    }
    assert_eq!(rail.payments_executed(p.transfer_id), 1);
    assert_eq!(rail.accepted_count(), 1);
    assert_eq!(rail.submit_calls(), 6);
    assert_eq!(rail.status(p.transfer_id).await, Ok(RailStatus::Accepted(first)));
    assert_eq!(rail.payments_executed(id(2)), 0);
    assert_eq!(rail.status(id(2)).await, Ok(RailStatus::NotFound));
}

#[tokio::test]
async fn the_first_outcome_sticks_though_fresh_draws_would_differ() {
    // At a 50% rejection rate, twenty fresh draws agreeing by chance has odds of 2^-20.
    let (rail, _) = rail(SimulatorConfig { seed: 3, reject_rate_ppm: PPM / 2, ..SimulatorConfig::default() });
    let mut rejected = None;
    let mut accepted = None;
    for n in 1..=64 {
        match rail.submit(&payment(id(n))).await {
            Ok(c) => accepted = accepted.or(Some((n, c))),
            Err(RailError::Rejected { code, message }) => rejected = rejected.or(Some((n, code, message))),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    let (rejected_n, code, message) = rejected.expect("some payment rejected");
    let (accepted_n, confirmation) = accepted.expect("some payment accepted");
    for _ in 0..20 {
        assert_eq!(
            rail.submit(&payment(id(rejected_n))).await,
            Err(RailError::Rejected { code: code.clone(), message: message.clone() }),
            "a rejected payment stays rejected"
        );
        assert_eq!(rail.submit(&payment(id(accepted_n))).await, Ok(confirmation.clone()));
    }
    assert_eq!(rail.payments_executed(id(rejected_n)), 0);
    assert_eq!(rail.payments_executed(id(accepted_n)), 1);
    assert_eq!(rail.status(id(rejected_n)).await, Ok(RailStatus::Rejected { code, message }));
}

#[tokio::test]
async fn a_timeout_after_success_is_an_accepted_payment_whose_answer_was_lost() {
    let (rail, _) = rail(SimulatorConfig { seed: 5, timeout_after_success_ppm: PPM, ..SimulatorConfig::default() });
    let p = payment(id(1));
    assert_eq!(rail.submit(&p).await, Err(RailError::Timeout));
    assert_eq!(rail.payments_executed(p.transfer_id), 1, "the money moved despite the timeout");
    let Ok(RailStatus::Accepted(confirmation)) = rail.status(p.transfer_id).await else {
        panic!("the status query must reveal the acceptance");
    };
    assert_eq!(rail.submit(&p).await, Ok(confirmation), "a re-submit replays the confirmation");
    assert_eq!(rail.payments_executed(p.transfer_id), 1, "and pays nothing more");
    assert_eq!(rail.accepted_count(), 1);
}

#[tokio::test]
async fn only_acceptances_lose_their_answer() {
    let config = SimulatorConfig { reject_rate_ppm: PPM, timeout_after_success_ppm: PPM, ..SimulatorConfig::default() };
    let (rail, _) = rail(config);
    let p = payment(id(1));
    assert!(matches!(rail.submit(&p).await, Err(RailError::Rejected { .. })), "a rejection is always answered");
    assert!(matches!(rail.status(p.transfer_id).await, Ok(RailStatus::Rejected { .. })));
}

#[tokio::test]
async fn unavailable_means_nothing_was_recorded_and_a_retry_may_succeed() {
    let (down, _) = rail(SimulatorConfig { failure_rate_ppm: PPM, ..SimulatorConfig::default() });
    let p = payment(id(1));
    assert!(matches!(down.submit(&p).await, Err(RailError::Unavailable(_))));
    assert_eq!(down.status(p.transfer_id).await, Ok(RailStatus::NotFound));
    assert_eq!(down.payments_executed(p.transfer_id), 0);
    assert_eq!(down.accepted_count(), 0);

    let (flaky, _) = rail(SimulatorConfig { seed: 9, failure_rate_ppm: PPM / 2, ..SimulatorConfig::default() });
    let mut unavailable = 0;
    let confirmation = loop {
        match flaky.submit(&p).await {
            Ok(c) => break c,
            Err(RailError::Unavailable(_)) => unavailable += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
        assert!(unavailable < 40, "a 50% failure rate never let the payment through");
    };
    assert_eq!(flaky.status(p.transfer_id).await, Ok(RailStatus::Accepted(confirmation)));
    assert_eq!(flaky.payments_executed(p.transfer_id), 1);
}

#[tokio::test]
async fn status_queries_can_time_out_without_affecting_submits() {
    let (rail, _) = rail(SimulatorConfig { status_timeout_ppm: PPM, ..SimulatorConfig::default() });
    let p = payment(id(1));
    assert!(rail.submit(&p).await.is_ok());
    assert_eq!(rail.status(p.transfer_id).await, Err(RailError::Timeout));
    assert_eq!(rail.status_calls(), 1);
    assert_eq!(rail.payments_executed(p.transfer_id), 1);
}

#[tokio::test]
async fn an_outage_window_refuses_every_call_and_records_nothing() {
    let clock = ManualClock::at_epoch();
    let start = clock.now() + TimeDelta::minutes(10);
    let end = start + TimeDelta::minutes(10);
    let config = SimulatorConfig { outages: vec![(start, end)], ..SimulatorConfig::default() };
    let rail = SimulatedRail::new(config, Arc::new(clock.clone()));
    let before = payment(id(1));
    let during = payment(id(2));
    let confirmation = rail.submit(&before).await.expect("up before the window");

    clock.set(start);
    assert!(matches!(rail.submit(&during).await, Err(RailError::Unavailable(_))));
    assert!(matches!(rail.submit(&before).await, Err(RailError::Unavailable(_))), "even replays");
    assert!(matches!(rail.status(before.transfer_id).await, Err(RailError::Unavailable(_))));
    clock.advance(TimeDelta::minutes(10) - TimeDelta::milliseconds(1));
    assert!(matches!(rail.submit(&during).await, Err(RailError::Unavailable(_))), "down until the end");
    assert_eq!(rail.payments_executed(during.transfer_id), 0);
    assert_eq!(rail.accepted_count(), 1);

    clock.set(end);
    assert_eq!(rail.status(during.transfer_id).await, Ok(RailStatus::NotFound), "nothing was recorded");
    assert_eq!(rail.status(before.transfer_id).await, Ok(RailStatus::Accepted(confirmation)));
    assert!(rail.submit(&during).await.is_ok(), "up again at the window's end");
    assert_eq!(rail.payments_executed(during.transfer_id), 1);
    assert_eq!(rail.submit_calls(), 5);
}

#[tokio::test]
async fn the_manual_outage_switch_overrides_everything() {
    let (rail, _) = rail(SimulatorConfig::default());
    let accepted = payment(id(1));
    let confirmation = rail.submit(&accepted).await.expect("up");
    rail.set_outage(true);
    let p = payment(id(2));
    for _ in 0..3 {
        assert!(matches!(rail.submit(&p).await, Err(RailError::Unavailable(_))));
    }
    assert!(matches!(rail.status(accepted.transfer_id).await, Err(RailError::Unavailable(_))));
    assert_eq!(rail.payments_executed(p.transfer_id), 0);
    rail.set_outage(false);
    assert_eq!(rail.status(p.transfer_id).await, Ok(RailStatus::NotFound));
    assert_eq!(rail.status(accepted.transfer_id).await, Ok(RailStatus::Accepted(confirmation)));
    assert!(rail.submit(&p).await.is_ok());
    assert_eq!(rail.accepted_count(), 2);
    assert_eq!(rail.submit_calls(), 5, "refused calls are counted too");
}

#[tokio::test]
async fn latency_goes_through_the_sleep_hook() {
    let slept: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let record = slept.clone();
    let config = SimulatorConfig { latency: TimeDelta::milliseconds(250), ..SimulatorConfig::default() };
    let (rail, _) = rail(config);
    let rail = rail.with_sleep(Arc::new(move |d| {
        record.lock().push(d);
        Box::pin(std::future::ready(()))
    }));
    assert!(rail.submit(&payment(id(1))).await.is_ok());
    assert!(rail.status(id(1)).await.is_ok());
    assert_eq!(*slept.lock(), vec![Duration::from_millis(250); 2]);
    assert!(format!("{rail:?}").contains("SimulatedRail"));
}

// --- The breaker guarding the rail, as the payments worker drives it ---------------------------

const PAUSE: TimeDelta = TimeDelta::seconds(30);

struct Guarded {
    rail: SimulatedRail,
    breaker: CircuitBreaker,
    clock: ManualClock,
}

fn guarded(config: SimulatorConfig) -> Guarded {
    let clock = ManualClock::at_epoch();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let rail = SimulatedRail::new(config, dyn_clock.clone());
    let breaker = CircuitBreaker::new(
        rail.name().to_owned(),
        BreakerConfig { failure_threshold: 3, open_duration: PAUSE, half_open_max_calls: 1 },
        dyn_clock,
    );
    Guarded { rail, breaker, clock }
}

impl Guarded {
    /// Asks the breaker, calls the rail, and reports the outcome: `Unavailable` and `Timeout` are
    /// failures, an acceptance or a definite rejection a success.
    async fn submit(&self, p: &RailPayment) -> Result<Answer, BreakerOpen> {
        let permit = self.breaker.try_acquire()?;
        let answer = self.rail.submit(p).await;
        match &answer {
            Ok(_) | Err(RailError::Rejected { .. }) => self.breaker.record_success(permit),
            Err(_) => self.breaker.record_failure(permit),
        }
        Ok(answer)
    }
}

#[tokio::test]
async fn failures_open_the_breaker_which_then_spares_the_rail_until_a_trial_closes_it() {
    let g = guarded(SimulatorConfig::default());
    g.rail.set_outage(true);
    for n in 1..=3 {
        assert!(matches!(g.submit(&payment(id(n))).await, Ok(Err(RailError::Unavailable(_)))));
    }
    let until = g.clock.now() + PAUSE;
    assert_eq!(g.breaker.state(), BreakerState::Open { until });
    assert_eq!(g.breaker.state_code(), 2);

    g.rail.set_outage(false); // the rail recovers, but the breaker does not know yet
    g.clock.advance(TimeDelta::seconds(10));
    assert_eq!(g.submit(&payment(id(4))).await, Err(BreakerOpen { retry_at: until }));
    assert_eq!(g.rail.submit_calls(), 3, "an open breaker does not call the rail");
    assert_eq!(g.rail.payments_executed(id(4)), 0);

    g.clock.set(until);
    assert_eq!(g.breaker.state_code(), 1);
    assert!(matches!(g.submit(&payment(id(4))).await, Ok(Ok(_))), "the trial goes through");
    assert_eq!(g.breaker.state(), BreakerState::Closed);
    assert_eq!(g.rail.submit_calls(), 4);
    for n in 1..=4 {
        assert!(matches!(g.submit(&payment(id(n))).await, Ok(Ok(_))));
        assert_eq!(g.rail.payments_executed(id(n)), 1);
    }
}

#[tokio::test]
async fn a_failed_trial_reopens_the_breaker_for_another_pause() {
    let g = guarded(SimulatorConfig::default());
    g.rail.set_outage(true);
    for n in 1..=3 {
        let _ = g.submit(&payment(id(n))).await;
    }
    g.clock.advance(PAUSE);
    assert!(matches!(g.submit(&payment(id(1))).await, Ok(Err(RailError::Unavailable(_)))));
    let until = g.clock.now() + PAUSE;
    assert_eq!(g.breaker.state(), BreakerState::Open { until });
    assert_eq!(g.submit(&payment(id(1))).await, Err(BreakerOpen { retry_at: until }));
    assert_eq!(g.rail.submit_calls(), 4);
}

#[tokio::test]
async fn definite_rejections_keep_the_breaker_closed() {
    let g = guarded(SimulatorConfig { reject_rate_ppm: PPM, ..SimulatorConfig::default() });
    for n in 1..=10 {
        assert!(matches!(g.submit(&payment(id(n))).await, Ok(Err(RailError::Rejected { .. }))));
    }
    assert_eq!(g.breaker.state(), BreakerState::Closed);
    assert_eq!(g.rail.accepted_count(), 0);
}

#[tokio::test]
async fn timeouts_open_the_breaker_and_status_queries_prevent_double_payment() {
    let g = guarded(SimulatorConfig { timeout_after_success_ppm: PPM, ..SimulatorConfig::default() });
    for n in 1..=3 {
        assert_eq!(g.submit(&payment(id(n))).await, Ok(Err(RailError::Timeout)));
    }
    assert!(matches!(g.breaker.state(), BreakerState::Open { .. }));
    for n in 1..=3 {
        assert!(matches!(g.rail.status(id(n)).await, Ok(RailStatus::Accepted(_))));
    }
    g.clock.advance(PAUSE);
    assert!(matches!(g.submit(&payment(id(1))).await, Ok(Ok(_))), "the trial replays the acceptance");
    assert_eq!(g.breaker.state(), BreakerState::Closed);
    for n in 1..=3 {
        assert_eq!(g.rail.payments_executed(id(n)), 1);
    }
    assert_eq!(g.rail.accepted_count(), 3);
}
