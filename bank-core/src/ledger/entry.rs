//! Journal entries: what a posting asks for ([`NewEntry`]) and what the ledger recorded
//! ([`PostedEntry`]).
//!
//! A `NewEntry` can only be built balanced: two to [`ENTRY_LINES_MAX`] lines, each account at most
//! once, and per currency the debits equal the credits. Stores never see an unbalanced entry.

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{AccountId, EntryId, TransferId};
use crate::money::{Currency, Money, checked_add};

/// Most lines one entry may have.
pub const ENTRY_LINES_MAX: usize = 16;
/// Longest reference text on an entry, hold or transfer (the SEPA remittance limit).
pub const REFERENCE_CHARS_MAX: usize = 140;

/// The unique key of a posting: the transfer it belongs to and which leg of it this is.
///
/// A transfer may post several entries over its life (say, customer → clearing when accepted by a
/// rail, clearing → settlement when the rail confirms, or a reversal); each has its own leg number.
/// Posting a key twice returns the first result and moves no money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntryKey {
    /// The transfer.
    pub transfer_id: TransferId,
    /// Which of its postings.
    pub leg: u16,
}

impl EntryKey {
    /// The key of leg `leg` of `transfer_id`.
    pub const fn new(transfer_id: TransferId, leg: u16) -> Self {
        EntryKey { transfer_id, leg }
    }
}

impl fmt::Display for EntryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.transfer_id, self.leg)
    }
}

/// Debit or credit. A debit lowers an account's balance, a credit raises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Money leaves the account.
    Debit,
    /// Money enters the account.
    Credit,
}

impl Side {
    /// The side's name, as serialized and as stores keep it (`debit`, `credit`).
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Debit => "debit",
            Side::Credit => "credit",
        }
    }

    /// The side named `text` ([`Side::as_str`]); `None` for any other text.
    pub fn parse(text: &str) -> Option<Side> {
        [Side::Debit, Side::Credit].into_iter().find(|side| side.as_str() == text)
    }

    /// `amount` as it changes the account's balance: added for a credit, subtracted for a debit.
    pub fn signed(self, amount: Decimal) -> Decimal {
        match self {
            Side::Debit => -amount,
            Side::Credit => amount,
        }
    }

    /// The other side (used to build reversals).
    pub const fn opposite(self) -> Side {
        match self {
            Side::Debit => Side::Credit,
            Side::Credit => Side::Debit,
        }
    }
}

/// One line of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Line {
    /// The account.
    pub account_id: AccountId,
    /// Debit or credit.
    pub side: Side,
    /// How much, in which currency (must be the account's).
    pub money: Money,
}

impl Line {
    /// A debit line.
    pub const fn debit(account_id: AccountId, money: Money) -> Self {
        Line { account_id, side: Side::Debit, money }
    }

    /// A credit line.
    pub const fn credit(account_id: AccountId, money: Money) -> Self {
        Line { account_id, side: Side::Credit, money }
    }
}

/// A balanced entry waiting to be posted. Built only through [`NewEntry::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    key: EntryKey,
    lines: Vec<Line>,
    reference: String,
}

impl NewEntry {
    /// Checks and builds an entry: 2..=[`ENTRY_LINES_MAX`] lines, no account twice, balanced per
    /// currency, and a reference of at most [`REFERENCE_CHARS_MAX`] characters.
    pub fn new(key: EntryKey, lines: Vec<Line>, reference: impl Into<String>) -> Result<Self> {
        let reference = reference.into();
        check_reference(&reference)?;
        if lines.len() < 2 || lines.len() > ENTRY_LINES_MAX {
            return Err(Error::invalid(format!("an entry has 2 to {ENTRY_LINES_MAX} lines")));
        }
        for (i, line) in lines.iter().enumerate() {
            line.money.check()?;
            if lines[..i].iter().any(|l| l.account_id == line.account_id) {
                return Err(Error::invalid(format!("account {} appears twice in one entry", line.account_id)));
            }
        }
        check_balanced(&lines)?;
        Ok(NewEntry { key, lines, reference })
    }

    /// The usual two-line entry: `money` from `from` to `to`.
    pub fn transfer(
        key: EntryKey,
        from: AccountId,
        to: AccountId,
        money: Money,
        reference: impl Into<String>,
    ) -> Result<Self> {
        NewEntry::new(key, vec![Line::debit(from, money), Line::credit(to, money)], reference)
    }

    /// Its key.
    pub fn key(&self) -> EntryKey {
        self.key
    }

    /// Its lines.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// Its reference.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Key, lines and reference, moved out.
    pub fn into_parts(self) -> (EntryKey, Vec<Line>, String) {
        (self.key, self.lines, self.reference)
    }

    /// Whether `posted` records exactly this request (same lines in the same order, same
    /// reference): a repeat of it is a harmless replay, anything else reuses the key.
    pub fn is_same_as(&self, posted: &PostedEntry) -> bool {
        self.key == posted.key
            && self.reference == posted.reference
            && self.lines.len() == posted.lines.len()
            && self
                .lines
                .iter()
                .zip(&posted.lines)
                .all(|(a, b)| a.account_id == b.account_id && a.side == b.side && a.money == b.money)
    }
}

/// Refuses references that are too long or carry control characters.
pub fn check_reference(reference: &str) -> Result<()> {
    if reference.chars().count() > REFERENCE_CHARS_MAX {
        return Err(Error::invalid(format!("reference is longer than {REFERENCE_CHARS_MAX} characters")));
    }
    if reference.chars().any(char::is_control) {
        return Err(Error::invalid("reference must not contain control characters"));
    }
    Ok(())
}

fn check_balanced(lines: &[Line]) -> Result<()> {
    // At most ENTRY_LINES_MAX currencies: a small vector beats a map here.
    let mut sums: Vec<(Currency, Decimal)> = Vec::with_capacity(2);
    for line in lines {
        let signed = match line.side {
            Side::Debit => line.money.value(),
            Side::Credit => -line.money.value(),
        };
        match sums.iter_mut().find(|(c, _)| *c == line.money.currency) {
            Some((_, sum)) => *sum = checked_add(*sum, signed)?,
            None => sums.push((line.money.currency, signed)),
        }
    }
    match sums.into_iter().find(|(_, sum)| !sum.is_zero()) {
        Some((currency, _)) => Err(Error::UnbalancedEntry { currency }),
        None => Ok(()),
    }
}

/// A line as posted, with the account's sequence number and balance after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostedLine {
    /// The account.
    pub account_id: AccountId,
    /// Debit or credit.
    pub side: Side,
    /// How much.
    pub money: Money,
    /// The account's sequence number for this entry (gap-free, from 1).
    pub sequence: u64,
    /// The account's posted balance right after this entry.
    #[serde(with = "crate::money::decimal_string")]
    pub balance_after: Decimal,
}

/// An entry as recorded. Never updated or deleted; corrected by a reversing entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostedEntry {
    /// Its id.
    pub id: EntryId,
    /// Its unique key.
    pub key: EntryKey,
    /// Its lines, in the order given.
    pub lines: Vec<PostedLine>,
    /// Free text shown in statements.
    pub reference: String,
    /// When it was posted.
    pub posted_at: DateTime<Utc>,
    /// The entry this one reverses, if it is a reversal.
    pub reverses: Option<EntryKey>,
}

impl PostedEntry {
    /// The line of `account`, if the entry touches it.
    pub fn line_of(&self, account: AccountId) -> Option<&PostedLine> {
        self.lines.iter().find(|l| l.account_id == account)
    }
}

/// A request to reverse a posted entry with a new one that swaps every debit and credit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reversal {
    /// The entry to reverse.
    pub original: EntryKey,
    /// The key of the reversing entry.
    pub key: EntryKey,
    /// Why.
    pub reference: String,
}

impl Reversal {
    /// The reversing entry of `original`. The reversal itself is subject to every rule (a
    /// reversal that would overdraw an account that has spent the money is refused; an operator
    /// then books the difference through a suspense account).
    pub fn to_entry(&self, original: &PostedEntry) -> Result<NewEntry> {
        let lines = original
            .lines
            .iter()
            .map(|l| Line { account_id: l.account_id, side: l.side.opposite(), money: l.money })
            .collect();
        NewEntry::new(self.key, lines, self.reference.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(v: &str) -> Money {
        Money::parse(v, "USD").unwrap()
    }

    #[test]
    fn unbalanced_and_malformed_entries_cannot_be_built() {
        let key = EntryKey::new(TransferId::new(), 0);
        let (a, b, c) = (AccountId::new(), AccountId::new(), AccountId::new());
        assert!(NewEntry::transfer(key, a, b, usd("1.00"), "ok").is_ok());
        let unbalanced = vec![Line::debit(a, usd("1.00")), Line::credit(b, usd("0.99"))];
        assert!(matches!(NewEntry::new(key, unbalanced, ""), Err(Error::UnbalancedEntry { .. })));
        let mixed = vec![Line::debit(a, usd("1.00")), Line::credit(b, Money::parse("1.00", "EUR").unwrap())];
        assert!(matches!(NewEntry::new(key, mixed, ""), Err(Error::UnbalancedEntry { .. })));
        assert!(matches!(NewEntry::new(key, vec![Line::debit(a, usd("1"))], ""), Err(Error::InvalidInput(_))));
        let twice = vec![Line::debit(a, usd("1")), Line::credit(a, usd("1"))];
        assert!(matches!(NewEntry::new(key, twice, ""), Err(Error::InvalidInput(_))));
        let three = vec![Line::debit(a, usd("2")), Line::credit(b, usd("1.5")), Line::credit(c, usd("0.5"))];
        assert!(NewEntry::new(key, three, "").is_ok());
        assert!(NewEntry::transfer(key, a, b, usd("1"), "x".repeat(141)).is_err());
        assert!(NewEntry::transfer(key, a, b, usd("1"), "x".repeat(140)).is_ok());
        assert!(NewEntry::transfer(key, a, b, usd("1"), "bad\nref").is_err());
        let many: Vec<Line> = (0..17)
            .map(|i| if i == 0 { Line::debit(a, usd("16")) } else { Line::credit(AccountId::new(), usd("1")) })
            .collect();
        assert!(NewEntry::new(key, many, "").is_err());
    }
}
