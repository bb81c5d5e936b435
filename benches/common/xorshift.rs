//! The ledger benchmarks' random picks: a xorshift32 generator (a few cycles per number,
//! deterministic, no `rand` dependency in the timed loop).

use bank_core::money::{Currency, Money};
use rust_decimal::Decimal;

/// Largest amount one posting moves, in cents (100.00 USD).
pub(crate) const AMOUNT_CENTS_MAX: u32 = 10_000;

/// A xorshift32 generator (seed it with anything but 0).
pub(crate) struct XorShift(pub(crate) u32);

impl XorShift {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// An index below `len` (the modulo bias is irrelevant for picking accounts).
    pub(crate) fn below(&mut self, len: usize) -> usize {
        self.next() as usize % len
    }

    /// Two distinct indices below `len`.
    pub(crate) fn pair(&mut self, len: usize) -> (usize, usize) {
        let from = self.below(len);
        (from, (from + 1 + self.below(len - 1)) % len)
    }

    /// A USD amount between 0.01 and [`AMOUNT_CENTS_MAX`] cents.
    pub(crate) fn usd(&mut self) -> Money {
        let cents = 1 + self.next() % AMOUNT_CENTS_MAX;
        Money::new(Decimal::new(i64::from(cents), 2), Currency::Usd).expect("cents are a valid USD amount")
    }
}
