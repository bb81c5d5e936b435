//! The one grammar of an amount written as text, checked on the text itself before any
//! conversion to a `Decimal` (which would round past 28 digits and forget how the text was
//! written).
//!
//! An amount is a plain decimal string matching [`AMOUNT_PATTERN`] —
//! `-?(0|[1-9][0-9]*)(\.[0-9]+)?` but never a negative zero — with at most the currency's number
//! of decimals. Refused: an exponent (`1e3`), a `+` sign, underscores (`1_0`), leading zeros
//! (`00001.00`), a bare dot (`.5`, `1.`), a minus on zero (`-0`, `-0.00`: `Decimal` forgets that
//! sign, so the text could not print back), whitespace, anything but ASCII digits, and any digit
//! past the currency's scale — zeros included (`"1.000"` is not a USD amount). An accepted text
//! converts to the `Decimal` it names exactly, and that `Decimal` prints back as the same bytes.
//!
//! This file depends on nothing but `std` and `rust_decimal`, on purpose: `bank-core` owns it,
//! and `bank-api` (which must build for `wasm32` without `bank-core`) compiles this same file
//! (`#[path]`), so the HTTP server, the client, the CLI and the WASM bindings all parse amounts with
//! this one function.

use rust_decimal::Decimal;

/// The grammar as a regular expression (stated in the OpenAPI document): a signed non-zero
/// integer part, an unsigned zero, or a minus zero whose decimals are not all zeros.
pub const AMOUNT_PATTERN: &str = r"^(-?[1-9][0-9]*(\.[0-9]+)?|0(\.[0-9]+)?|-0\.[0-9]*[1-9][0-9]*)$";

/// Most digits before the decimal point: enough for one trillion (`1000000000000`, the largest
/// amount of a transfer), far below `Decimal`'s 28 digits, so the conversion never rounds.
pub const AMOUNT_INTEGER_DIGITS_MAX: usize = 13;

/// Most decimals any supported currency has (KWD, BHD: 3). A text with more is not an amount of
/// any currency.
pub const AMOUNT_DECIMALS_MAX: u32 = 3;

/// Why a text is not an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountTextError {
    /// Not [`AMOUNT_PATTERN`] (a negative zero included).
    NotANumber,
    /// More decimals than allowed (zeros included).
    TooManyDecimals {
        /// The most allowed.
        max: u32,
    },
    /// More than [`AMOUNT_INTEGER_DIGITS_MAX`] digits before the point.
    TooLarge,
}

impl std::fmt::Display for AmountTextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AmountTextError::NotANumber => {
                f.write_str("not a plain decimal string (digits, an optional '-' and '.'; no exponent, '+', '_', leading zero, negative zero or space)")
            }
            AmountTextError::TooManyDecimals { max } => write!(f, "at most {max} decimals"),
            AmountTextError::TooLarge => f.write_str("too many digits before the decimal point"),
        }
    }
}

impl std::error::Error for AmountTextError {}

/// Most digits before the point of a signed decimal that is not an amount (a balance, which may
/// sum many amounts): 28 digits in all with [`AMOUNT_DECIMALS_MAX`], what `Decimal` holds exactly.
pub const DECIMAL_INTEGER_DIGITS_MAX: usize = 25;

/// Checks `text` against the grammar with at most `max_decimals` decimals, then converts it to
/// the exact `Decimal` it names (whose scale is the number of decimals written).
pub fn parse_amount_text(text: &str, max_decimals: u32) -> Result<Decimal, AmountTextError> {
    parse_decimal_text(text, max_decimals, AMOUNT_INTEGER_DIGITS_MAX)
}

/// [`parse_amount_text`] with another bound on the digits before the point (at most
/// [`DECIMAL_INTEGER_DIGITS_MAX`] for an exact conversion).
pub fn parse_decimal_text(
    text: &str,
    max_decimals: u32,
    max_integer_digits: usize,
) -> Result<Decimal, AmountTextError> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (integer, fraction) = match unsigned.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(integer) || (integer.len() > 1 && integer.starts_with('0')) {
        return Err(AmountTextError::NotANumber);
    }
    if fraction.is_some_and(|f| !digits(f)) {
        return Err(AmountTextError::NotANumber);
    }
    if text.starts_with('-') && !unsigned.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return Err(AmountTextError::NotANumber);
    }
    let decimals = fraction.map_or(0, str::len);
    if u32::try_from(decimals).map_or(true, |d| d > max_decimals) {
        return Err(AmountTextError::TooManyDecimals { max: max_decimals });
    }
    if integer.len() > max_integer_digits {
        return Err(AmountTextError::TooLarge);
    }
    // Every character was checked above; a `Decimal` that cannot hold the digits exactly refuses
    // them (`from_str_exact`) and the scale check below catches any other difference.
    let value = Decimal::from_str_exact(text).map_err(|_| AmountTextError::NotANumber)?;
    if u32::try_from(decimals).ok() != Some(value.scale()) {
        return Err(AmountTextError::NotANumber);
    }
    Ok(value)
}
