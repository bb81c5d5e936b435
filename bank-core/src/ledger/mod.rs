//! The double-entry ledger: entries, holds, history and the rules every store applies.
//!
//! Storage lives behind [`crate::ports::LedgerStore`]; this module owns the types and the pure
//! rules ([`rules`]), so an adapter never re-implements a money rule — it only provides atomicity.

mod entry;
mod history;
mod hold;
pub mod rules;

pub use crate::page::{Cursor, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, Page};
pub use entry::{
    ENTRY_LINES_MAX, EntryKey, Line, NewEntry, PostedEntry, PostedLine, REFERENCE_CHARS_MAX, Reversal, Side,
    check_reference,
};
pub use history::{HistoryItem, HistoryQuery};
pub use hold::{HOLD_DURATION_SECONDS_MAX, Hold, HoldMark, HoldStatus, NewHold, PostHold};
