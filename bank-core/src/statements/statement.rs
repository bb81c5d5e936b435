//! [`Statement`]: what one account's statement for one [`Period`] says, built only through
//! [`Statement::reconcile`], so a statement that does not add up cannot exist; and
//! [`StatementId`], the stable name of a stored statement.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::period::Period;
use crate::account::Account;
use crate::error::{Error, Result};
use crate::ids::AccountId;
use crate::ledger::{HistoryItem, Side};
use crate::money::{checked_add, checked_sub};

/// Most entries one statement holds (a bound on memory and on the PDF: about 2,000 pages).
pub const STATEMENT_LINES_MAX: usize = 100_000;
/// The prefix of every statement's object key.
pub const STATEMENT_KEY_PREFIX: &str = "statements/";

/// A statement's id: its account and period, `<account uuid>_<YYYY-MM>`. Stable, so generating
/// a period again names the same statement, and its object key follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatementId {
    /// The account.
    pub account_id: AccountId,
    /// The month.
    pub period: Period,
}

impl StatementId {
    /// The statement of `account_id` for `period`.
    pub const fn new(account_id: AccountId, period: Period) -> Self {
        StatementId { account_id, period }
    }

    /// Its object key: `statements/<account>/<YYYY-MM>.pdf`.
    pub fn key(&self) -> String {
        format!("{}{}.pdf", Self::account_prefix(self.account_id), self.period)
    }

    /// The key prefix of every statement of `account_id` (they list in period order).
    pub fn account_prefix(account_id: AccountId) -> String {
        format!("{STATEMENT_KEY_PREFIX}{account_id}/")
    }

    /// The statement an object key names, if it is a statement's key.
    pub fn from_key(key: &str) -> Option<Self> {
        let rest = key.strip_prefix(STATEMENT_KEY_PREFIX)?;
        let (account, file) = rest.split_once('/')?;
        let period = file.strip_suffix(".pdf")?;
        Some(StatementId { account_id: account.parse().ok()?, period: period.parse().ok()? })
    }
}

impl fmt::Display for StatementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.account_id, self.period)
    }
}

impl FromStr for StatementId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || Error::InvalidInput("a statement id is <account id>_<YYYY-MM>".into());
        let (account, period) = text.split_once('_').ok_or_else(bad)?;
        Ok(StatementId { account_id: account.parse().map_err(|_| bad())?, period: period.parse().map_err(|_| bad())? })
    }
}

impl Serialize for StatementId {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StatementId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One entry of a statement, in the account's sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    /// The account's sequence number of the entry.
    pub sequence: u64,
    /// When it was posted.
    pub posted_at: DateTime<Utc>,
    /// Its reference.
    pub reference: String,
    /// Debit or credit, from the account's point of view.
    pub side: Side,
    /// How much (positive).
    pub amount: Decimal,
    /// The balance after it: the opening balance plus every line up to this one.
    pub balance: Decimal,
}

/// A reconciled statement: opening balance + credits − debits = closing balance = the ledger's
/// balance at the end of the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Its id (account and period).
    pub id: StatementId,
    /// The bank's name, printed at the top.
    pub bank_name: String,
    /// The account (holder, name, currency).
    pub account: Account,
    /// The posted balance at the start of the period.
    pub opening: Decimal,
    /// Every entry posted in the period, by sequence.
    pub lines: Vec<StatementLine>,
    /// Sum of the debits.
    pub total_debits: Decimal,
    /// Sum of the credits.
    pub total_credits: Decimal,
    /// The posted balance at the end of the period.
    pub closing: Decimal,
}

impl Statement {
    /// The statement of `account` for `period`, from the ledger's balance at the period's start
    /// (`opening`), the entries posted in it (`items`, any order) and its balance at the period's
    /// end (`ledger_closing`). Refuses ([`Error::StatementUnreconciled`]) unless every entry lies
    /// in the period, is in the account's currency, appears once, and opening + credits − debits
    /// equals `ledger_closing`.
    pub fn reconcile(
        bank_name: &str,
        account: Account,
        period: Period,
        opening: Decimal,
        mut items: Vec<HistoryItem>,
        ledger_closing: Decimal,
    ) -> Result<Statement> {
        let id = StatementId::new(account.id, period);
        let refuse = |detail: String| Error::StatementUnreconciled { statement: id.to_string(), detail };
        if items.len() > STATEMENT_LINES_MAX {
            return Err(Error::InvalidInput(format!(
                "statement {id} would hold {} entries; at most {STATEMENT_LINES_MAX} fit one statement",
                items.len()
            )));
        }
        items.sort_by_key(|item| item.sequence);
        let mut lines = Vec::with_capacity(items.len());
        let (mut balance, mut total_debits, mut total_credits) = (opening, Decimal::ZERO, Decimal::ZERO);
        for (index, item) in items.into_iter().enumerate() {
            if index > 0 && lines.last().is_some_and(|last: &StatementLine| last.sequence == item.sequence) {
                return Err(refuse(format!("entry {} appears twice", item.sequence)));
            }
            if item.posted_at < period.start() || item.posted_at >= period.end() {
                return Err(refuse(format!("entry {} was posted outside the period", item.sequence)));
            }
            if item.money.currency != account.currency {
                return Err(refuse(format!("entry {} is in {}", item.sequence, item.money.currency)));
            }
            let amount = item.money.value();
            match item.direction {
                Side::Debit => total_debits = checked_add(total_debits, amount)?,
                Side::Credit => total_credits = checked_add(total_credits, amount)?,
            }
            balance = checked_add(balance, item.direction.signed(amount))?;
            lines.push(StatementLine {
                sequence: item.sequence,
                posted_at: item.posted_at,
                reference: item.reference,
                side: item.direction,
                amount,
                balance,
            });
        }
        let closing = checked_sub(checked_add(opening, total_credits)?, total_debits)?;
        if closing != balance || closing != ledger_closing {
            return Err(refuse(format!(
                "opening {opening} + credits {total_credits} - debits {total_debits} = {closing}, \
                 but the ledger's balance at the end of the period is {ledger_closing}"
            )));
        }
        Ok(Statement {
            id,
            bank_name: bank_name.to_owned(),
            account,
            opening,
            lines,
            total_debits,
            total_credits,
            closing,
        })
    }

    /// The period.
    pub fn period(&self) -> Period {
        self.id.period
    }
}

/// `1,234,567.80`: an amount with exactly its currency's `decimals` (padded, never rounded:
/// ledger amounts never have more) and thousands grouped; a minus sign for a negative one.
pub fn format_amount(value: Decimal, decimals: u32) -> String {
    let decimals = usize::try_from(decimals).unwrap_or(2);
    let plain = format!("{:.decimals$}", value.abs());
    let (whole, fraction) = plain.split_once('.').map_or((plain.as_str(), None), |(w, f)| (w, Some(f)));
    let mut grouped = String::with_capacity(plain.len() + whole.len() / 3 + 1);
    if value.is_sign_negative() && !value.is_zero() {
        grouped.push('-');
    }
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if let Some(fraction) = fraction {
        grouped.push('.');
        grouped.push_str(fraction);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::NewAccount;
    use crate::ids::{AccountId, CustomerId, EntryId, TransferId};
    use crate::ledger::EntryKey;
    use crate::money::{Currency, Money};

    fn d(text: &str) -> Decimal {
        crate::money::parse_decimal(text).expect("decimal")
    }

    fn item(sequence: u64, side: Side, amount: &str, currency: &str, posted_at: &str) -> HistoryItem {
        HistoryItem {
            entry_id: EntryId::new(),
            key: EntryKey::new(TransferId::new(), 0),
            sequence,
            direction: side,
            money: Money::parse(amount, currency).expect("money"),
            balance_after: Decimal::ZERO,
            reference: format!("entry {sequence}"),
            posted_at: DateTime::parse_from_rfc3339(posted_at).expect("time").with_timezone(&Utc),
        }
    }

    fn account() -> Account {
        let opened = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        Account::from_new(NewAccount::customer(CustomerId::new(), "Alice", Currency::Usd), opened)
    }

    /// Opening + credits − debits must equal the ledger's closing balance, every entry must lie
    /// in the period, be in the account's currency and appear once; otherwise nothing is made.
    #[test]
    fn only_a_statement_that_adds_up_is_made() {
        let period: Period = "2026-02".parse().expect("period");
        let items = || {
            vec![
                item(3, Side::Debit, "30.00", "USD", "2026-02-20T10:00:00Z"),
                item(2, Side::Credit, "100.00", "USD", "2026-02-01T00:00:00Z"),
                item(4, Side::Debit, "0.50", "USD", "2026-02-28T23:59:59Z"),
            ]
        };
        let made = Statement::reconcile("Bank", account(), period, d("10.00"), items(), d("79.50")).expect("adds up");
        assert_eq!(made.lines.iter().map(|l| l.sequence).collect::<Vec<_>>(), [2, 3, 4], "in sequence order");
        assert_eq!(made.lines.iter().map(|l| l.balance).collect::<Vec<_>>(), [d("110.00"), d("80.00"), d("79.50")]);
        assert_eq!((made.total_credits, made.total_debits, made.closing), (d("100.00"), d("30.50"), d("79.50")));

        let unreconciled = |items: Vec<HistoryItem>, closing: &str| {
            let result = Statement::reconcile("Bank", account(), period, d("10.00"), items, d(closing));
            matches!(result, Err(Error::StatementUnreconciled { .. }))
        };
        assert!(unreconciled(items(), "79.49"), "the ledger says otherwise");
        let mut outside = items();
        outside.push(item(5, Side::Credit, "1.00", "USD", "2026-03-01T00:00:00Z"));
        assert!(unreconciled(outside, "80.50"), "an entry of March");
        let mut before = items();
        before.push(item(1, Side::Credit, "1.00", "USD", "2026-01-31T23:59:59Z"));
        assert!(unreconciled(before, "80.50"), "an entry of January");
        let mut foreign = items();
        foreign.push(item(5, Side::Credit, "1.00", "EUR", "2026-02-10T00:00:00Z"));
        assert!(unreconciled(foreign, "80.50"), "an entry in another currency");
        let mut twice = items();
        twice.push(item(3, Side::Debit, "30.00", "USD", "2026-02-20T10:00:00Z"));
        assert!(unreconciled(twice, "49.50"), "an entry twice");
    }

    #[test]
    fn amounts_are_grouped_with_the_currency_s_decimals() {
        let d = |s: &str| crate::money::parse_decimal(s).expect("decimal");
        assert_eq!(format_amount(d("1234567.8"), 2), "1,234,567.80");
        assert_eq!(format_amount(d("-1234.5"), 2), "-1,234.50");
        assert_eq!(format_amount(d("999"), 2), "999.00");
        assert_eq!(format_amount(d("0"), 2), "0.00");
        // A zero that `Decimal` negation made (`-0.00`; no text parses to one) is shown unsigned.
        assert_eq!(format_amount(-d("0.00"), 2), "0.00");
        assert_eq!(format_amount(d("1000"), 0), "1,000");
        assert_eq!(format_amount(d("12.345"), 3), "12.345");
        assert_eq!(format_amount(d("100000"), 2), "100,000.00");
    }

    #[test]
    fn statement_ids_and_keys_round_trip() {
        let account = AccountId::new();
        let id = StatementId::new(account, "2026-01".parse().expect("period"));
        assert_eq!(id.to_string().parse::<StatementId>().expect("parses"), id);
        assert_eq!(id.key(), format!("statements/{account}/2026-01.pdf"));
        assert_eq!(StatementId::from_key(&id.key()), Some(id));
        assert!(id.key().starts_with(&StatementId::account_prefix(account)));
        for bad in [
            "",
            "x_2026-01",
            &format!("{account}_2026-13"),
            &format!("{account}-2026-01"),
            &format!("{account}_2026-01_x"),
        ] {
            assert!(bad.parse::<StatementId>().is_err(), "{bad}");
        }
        assert_eq!(StatementId::from_key("statements/x/2026-01.pdf"), None);
        assert_eq!(StatementId::from_key(&format!("audit/{account}/2026-01.pdf")), None);
    }
}
