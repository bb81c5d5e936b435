//! The text of notifications: one short message per recipient of an event.
//!
//! Rendering is a pure function of the event, so a redelivered event renders the same message.
//! It shows the amount in the currency's minor units (`12.30 EUR`), the other account only by its
//! last four characters, the transfer's reference (shortened), and for a failure a fixed text per
//! [`FailureCode`]; never the failure's free-text detail, a token, or a full account number.

use crate::events::{Event, EventKind};
use crate::ids::{AccountId, CustomerId};
use crate::money::Money;
use crate::transfer::{FailureCode, FailureReason};

/// Most characters of a transfer's reference shown in a message.
pub const REFERENCE_SHOWN_CHARS_MAX: usize = 32;
/// Most characters of a rendered subject.
pub const SUBJECT_CHARS_MAX: usize = 40;
/// Most characters of a rendered body (two SMS segments).
pub const BODY_CHARS_MAX: usize = 320;

/// A rendered message for one recipient, before it is given a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Who receives it.
    pub recipient: CustomerId,
    /// One-line summary.
    pub subject: String,
    /// The text.
    pub body: String,
}

/// The messages `event` calls for: one to the sender, and for a settled internal transfer one to
/// the receiver (unless sender and receiver are the same customer, who then gets the sender's).
pub fn messages(event: &Event) -> Vec<Message> {
    if event.kind == EventKind::StatementReady {
        return statement_messages(event);
    }
    let amount = event.money.map_or_else(|| "an amount".to_owned(), format_money);
    let reference = shown_reference(&event.reference);
    let destination = match event.to_account_id {
        Some(account) => format!("account {}", masked(account)),
        None => "an external account".to_owned(),
    };
    let transfer = format!("Your transfer of {amount} to {destination}{reference}");
    let (subject, body) = match event.kind {
        EventKind::TransferAccepted => ("Transfer accepted", format!("{transfer} was accepted.")),
        EventKind::TransferPending => ("Transfer pending", format!("{transfer} is pending; we keep trying.")),
        EventKind::TransferSettled => ("Transfer settled", format!("{transfer} was settled.")),
        EventKind::TransferFailed => (
            "Transfer failed",
            format!("{transfer} failed: {}. The funds are available again.", failure_text(&event.failure_reason)),
        ),
        EventKind::StatementReady => return statement_messages(event),
    };
    let mut out = vec![message(event.owner, subject, body)];
    if event.kind == EventKind::TransferSettled
        && let Some(receiver) = event.to_owner
        && receiver != event.owner
    {
        let body = format!("You received {amount} from account {}{reference}.", masked(event.from_account_id));
        out.push(message(receiver, "Money received", body));
    }
    out
}

/// The owner's message for a statement event: which month, which account (masked), and where to
/// find it; never the statement's content.
fn statement_messages(event: &Event) -> Vec<Message> {
    let period = event.statement.as_ref().map_or_else(String::new, |s| format!(" for {}", s.statement_id.period));
    let body = format!(
        "Your statement{period} of account {} is ready: download it from your account's statements.",
        masked(event.from_account_id)
    );
    vec![message(event.owner, "Statement ready", body)]
}

fn message(recipient: CustomerId, subject: &str, body: String) -> Message {
    // The parts are bounded (amount, masked id, shortened reference, fixed texts), so these hold
    // by construction; the assertions keep it so when a text changes.
    debug_assert!(subject.chars().count() <= SUBJECT_CHARS_MAX, "subject too long: {subject}");
    debug_assert!(body.chars().count() <= BODY_CHARS_MAX, "body too long: {body}");
    Message { recipient, subject: subject.to_owned(), body }
}

/// `12.30 EUR`: the amount with exactly the currency's decimals. Amounts never have more decimals
/// than their currency, so this pads and never rounds.
pub fn format_money(money: Money) -> String {
    let decimals = usize::try_from(money.currency.exponent()).unwrap_or(2);
    format!("{:.decimals$} {}", money.value(), money.currency)
}

/// `ending 5c7d`: enough for the customer to recognise an account, not enough to name it.
fn masked(account: AccountId) -> String {
    let text = account.to_string();
    // A hyphenated UUID is ASCII, so any byte offset is a character boundary.
    format!("ending {}", &text[text.len().saturating_sub(4)..])
}

/// ` ("Rent March")`, shortened with an ellipsis; empty for an empty reference. Control characters
/// (refused at the API, but events may come from elsewhere) become spaces.
fn shown_reference(reference: &str) -> String {
    let trimmed = reference.trim();
    if trimmed.is_empty() {
        return String::new();
    }
    let mut shown: String =
        trimmed.chars().take(REFERENCE_SHOWN_CHARS_MAX).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if trimmed.chars().count() > REFERENCE_SHOWN_CHARS_MAX {
        shown.pop();
        shown.push('…');
    }
    format!(" (\"{shown}\")")
}

/// A fixed, customer-facing text per failure code: the free-text detail may name internals.
fn failure_text(reason: &Option<FailureReason>) -> &'static str {
    match reason.as_ref().map(|r| r.code) {
        Some(FailureCode::DestinationUnavailable) => "the receiving account cannot take it",
        Some(FailureCode::SourceUnavailable) => "your account is not available",
        Some(FailureCode::HoldExpired) => "it could not be processed in time",
        Some(FailureCode::RailRejected) => "the receiving bank refused it",
        Some(FailureCode::RailUnavailable) => "the payment network was unavailable",
        None => "it could not be completed",
    }
}
