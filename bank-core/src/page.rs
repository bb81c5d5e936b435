//! Pages of a list, newest first, continued by an opaque cursor: one cursor type, one maximum
//! and one default page size for every list of the bank (an account's history, its transfers).
//!
//! A cursor encodes the position to continue below (a per-account sequence or an acceptance
//! order, both gap-free or increasing), so pages never skip or repeat an item even while new
//! items arrive (they sort ahead of the first page). Its text is opaque to callers: base64url of
//! a versioned position, at most [`CURSOR_CHARS_MAX`] characters; anything else is refused.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};

/// Largest page a list may be asked for.
pub const PAGE_LIMIT_MAX: u32 = 100;
/// Page size when the caller does not say.
pub const PAGE_LIMIT_DEFAULT: u32 = 50;
/// Longest cursor text accepted.
pub const CURSOR_CHARS_MAX: usize = 64;

/// An opaque position in a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Continue with items whose position is below this one.
    pub before: u64,
}

/// What a cursor's text encodes before the position (versioned, so the encoding can change).
pub const CURSOR_PREFIX: &str = "c1.";

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = format!("{CURSOR_PREFIX}{}", self.before);
        f.write_str(&URL_SAFE_NO_PAD.encode(raw))
    }
}

impl FromStr for Cursor {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || Error::invalid("invalid cursor");
        if text.len() > CURSOR_CHARS_MAX {
            return Err(bad());
        }
        let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let raw = std::str::from_utf8(&raw).map_err(|_| bad())?;
        let digits = raw.strip_prefix(CURSOR_PREFIX).ok_or_else(bad)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let before = digits.parse().map_err(|_| bad())?;
        Ok(Cursor { before })
    }
}

/// A page request: how many items (1..=[`PAGE_LIMIT_MAX`]) and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery {
    limit: u32,
    cursor: Option<Cursor>,
}

impl PageQuery {
    /// The first `limit` items (1..=[`PAGE_LIMIT_MAX`]), newest first, from `cursor` on.
    pub fn new(limit: u32, cursor: Option<Cursor>) -> Result<Self> {
        if limit == 0 || limit > PAGE_LIMIT_MAX {
            return Err(Error::invalid(format!("limit must be 1 to {PAGE_LIMIT_MAX}")));
        }
        Ok(PageQuery { limit, cursor })
    }

    /// A query as a caller states it: an optional limit ([`PAGE_LIMIT_DEFAULT`] when absent) and
    /// an optional cursor text.
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self> {
        let cursor = cursor.map(str::parse::<Cursor>).transpose()?;
        PageQuery::new(limit.unwrap_or(PAGE_LIMIT_DEFAULT), cursor)
    }

    /// The first page with the default size.
    pub fn first_page() -> Self {
        PageQuery { limit: PAGE_LIMIT_DEFAULT, cursor: None }
    }

    /// Page size.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Positions to return are `< before` (`u64::MAX` on the first page).
    pub fn before(&self) -> u64 {
        self.cursor.map_or(u64::MAX, |c| c.before)
    }

    /// [`PageQuery::before`], named for a history (positions are per-account sequences).
    pub fn before_sequence(&self) -> u64 {
        self.before()
    }

    /// Given the number of items returned and the position of the last, the cursor of the next
    /// page (none after a short page or at position 1, the first item there is).
    pub fn next_cursor(&self, items: usize, last_position: u64) -> Option<Cursor> {
        (items == self.limit as usize && last_position > 1).then_some(Cursor { before: last_position })
    }
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor { before: 42 };
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        for bad in ["", "42", "aDEuLTE", "YzEuLTE", "!!!", &"a".repeat(100), &URL_SAFE_NO_PAD.encode("c1.")] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_bound_the_limit_and_default_it() {
        assert!(PageQuery::new(0, None).is_err());
        assert!(PageQuery::new(PAGE_LIMIT_MAX + 1, None).is_err());
        assert_eq!(PageQuery::parse(None, None).expect("query").limit(), PAGE_LIMIT_DEFAULT);
        let q = PageQuery::parse(Some(3), Some(&Cursor { before: 9 }.to_string())).expect("query");
        assert_eq!((q.limit(), q.before()), (3, 9));
        assert_eq!(q.next_cursor(3, 4), Some(Cursor { before: 4 }));
        assert_eq!(q.next_cursor(2, 4), None, "a short page is the last");
        assert_eq!(q.next_cursor(3, 1), None, "position 1 is the first item");
        assert!(PageQuery::parse(Some(3), Some("garbage")).is_err());
    }
}
