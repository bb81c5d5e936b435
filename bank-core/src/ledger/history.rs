//! Per-account history: entries newest first, paged with [`crate::page`] (the position is the
//! account's gap-free sequence number, so a page is a simple range).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::entry::{EntryKey, Side};
use crate::ids::EntryId;
use crate::money::Money;

/// A history request: a [`crate::page::PageQuery`] over sequence numbers.
pub type HistoryQuery = crate::page::PageQuery;

/// One entry as seen from one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem {
    /// The entry.
    pub entry_id: EntryId,
    /// Its key (the transfer and leg).
    pub key: EntryKey,
    /// The account's sequence number for it.
    pub sequence: u64,
    /// Debit or credit, from this account's point of view.
    pub direction: Side,
    /// How much.
    pub money: Money,
    /// The account's posted balance after it.
    #[serde(with = "crate::money::decimal_string")]
    pub balance_after: Decimal,
    /// The entry's reference.
    pub reference: String,
    /// When it was posted.
    pub posted_at: DateTime<Utc>,
}
