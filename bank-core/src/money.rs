//! Money: ISO 4217 currencies, positive amounts and signed balances.
//!
//! This module owns every rule about what a monetary value may be. Nothing here is ever an `f64`:
//! values are [`rust_decimal::Decimal`], arithmetic is checked (overflow is an [`Error`], never a
//! panic or a wrap), and an amount with more decimals than its currency allows is **rejected, never
//! rounded**. On the wire every value is a decimal string (`"12.34"`).
//!
//! Text is parsed by one grammar ([`text`]): `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, never a negative
//! zero, with at most the currency's decimals, checked on the characters before any conversion
//! ([`Amount::parse`], [`Money::parse`], [`parse_decimal`] and every serde path go through it).

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

#[path = "amount_text.rs"]
pub mod text;

pub use text::{AMOUNT_DECIMALS_MAX, AMOUNT_INTEGER_DIGITS_MAX, AMOUNT_PATTERN, AmountTextError};

/// The largest amount a single transfer, hold or entry line may carry (one trillion units of any
/// currency). Bounding it keeps every balance far from `Decimal`'s own limit, so sums of many lines
/// stay exact.
pub const TRANSFER_AMOUNT_MAX: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0);

/// An ISO 4217 currency this bank handles, with its number of minor units.
///
/// The set is closed on purpose: an unknown code is rejected at the edge rather than carried around
/// with a guessed exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Currency {
    /// United States dollar (2 decimals).
    Usd,
    /// Euro (2 decimals).
    Eur,
    /// Pound sterling (2 decimals).
    Gbp,
    /// Swiss franc (2 decimals).
    Chf,
    /// Japanese yen (0 decimals).
    Jpy,
    /// Kuwaiti dinar (3 decimals).
    Kwd,
    /// Bahraini dinar (3 decimals).
    Bhd,
    /// Canadian dollar (2 decimals).
    Cad,
    /// Australian dollar (2 decimals).
    Aud,
    /// Swedish krona (2 decimals).
    Sek,
    /// Norwegian krone (2 decimals).
    Nok,
    /// Danish krone (2 decimals).
    Dkk,
    /// Polish złoty (2 decimals).
    Pln,
    /// Indian rupee (2 decimals).
    Inr,
}

impl Currency {
    /// Every supported currency, in code order.
    pub const ALL: [Currency; 14] = [
        Currency::Aud,
        Currency::Bhd,
        Currency::Cad,
        Currency::Chf,
        Currency::Dkk,
        Currency::Eur,
        Currency::Gbp,
        Currency::Inr,
        Currency::Jpy,
        Currency::Kwd,
        Currency::Nok,
        Currency::Pln,
        Currency::Sek,
        Currency::Usd,
    ];

    /// The three-letter ISO 4217 code.
    pub const fn code(self) -> &'static str {
        match self {
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Gbp => "GBP",
            Currency::Chf => "CHF",
            Currency::Jpy => "JPY",
            Currency::Kwd => "KWD",
            Currency::Bhd => "BHD",
            Currency::Cad => "CAD",
            Currency::Aud => "AUD",
            Currency::Sek => "SEK",
            Currency::Nok => "NOK",
            Currency::Dkk => "DKK",
            Currency::Pln => "PLN",
            Currency::Inr => "INR",
        }
    }

    /// Number of decimals of the minor unit (2 for cents, 0 for yen, 3 for fils).
    pub const fn exponent(self) -> u32 {
        match self {
            Currency::Jpy => 0,
            Currency::Kwd | Currency::Bhd => 3,
            _ => 2,
        }
    }
}

impl PartialOrd for Currency {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Currency {
    /// Alphabetical by ISO code, so sorted lists read naturally.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.code().cmp(other.code())
    }
}

impl FromStr for Currency {
    type Err = Error;

    /// Parses an upper-case ISO 4217 code. Lower case is refused rather than guessed at.
    fn from_str(code: &str) -> Result<Self> {
        Currency::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .ok_or_else(|| Error::UnknownCurrency { code: truncate_for_error(code) })
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        code.parse().map_err(serde::de::Error::custom)
    }
}

/// A strictly positive amount, valid for one currency: scale within the currency's exponent and
/// at most [`TRANSFER_AMOUNT_MAX`].
///
/// An `Amount` does not carry its currency (see [`Money`]); it was checked against one when built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Amount(Decimal);

impl Amount {
    /// Checks `value` against `currency`: positive, not above [`TRANSFER_AMOUNT_MAX`], and with no
    /// more significant decimals than the currency has. Trailing zeros are not significant:
    /// `"12.50"` is a valid USD amount and `"100.00"` a valid JPY one, but `"1.5"` JPY is refused.
    pub fn new(value: Decimal, currency: Currency) -> Result<Self> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(Error::InvalidAmount { reason: AmountError::Negative });
        }
        if value.is_zero() {
            return Err(Error::InvalidAmount { reason: AmountError::Zero });
        }
        if value > TRANSFER_AMOUNT_MAX {
            return Err(Error::InvalidAmount { reason: AmountError::TooLarge });
        }
        // `normalize` drops trailing zeros, so "12.50" in USD or "100.000" in JPY are accepted as the
        // exact values they name; "12.345" in USD is refused, never rounded.
        let normalized = value.normalize();
        if normalized.scale() > currency.exponent() {
            return Err(Error::InvalidAmount {
                reason: AmountError::TooManyDecimals { currency, max: currency.exponent() },
            });
        }
        Ok(Amount(normalized))
    }

    /// Parses a decimal string (`"12.34"`) for `currency` with the one amount grammar ([`text`]):
    /// the text is checked before it is converted, so nothing is ever rounded. An exponent, a `+`,
    /// `_`, a leading zero, a bare dot, whitespace and any decimal past the currency's exponent
    /// (`"1.000"` USD, `"100.0"` JPY) are refused; a leading minus is refused as negative.
    pub fn parse(text: &str, currency: Currency) -> Result<Self> {
        let value =
            text::parse_amount_text(text, currency.exponent()).map_err(|error| amount_text_error(error, currency))?;
        Amount::new(value, currency)
    }

    /// The value.
    pub const fn value(self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Why an amount was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// The amount is zero.
    #[error("amount must be greater than zero")]
    Zero,
    /// The amount is below zero.
    #[error("amount must not be negative")]
    Negative,
    /// More decimals than the currency's minor unit.
    #[error("{currency} amounts have at most {max} decimals")]
    TooManyDecimals {
        /// The currency the amount was checked against.
        currency: Currency,
        /// Its exponent.
        max: u32,
    },
    /// Above [`TRANSFER_AMOUNT_MAX`].
    #[error("amount exceeds the maximum of {}", TRANSFER_AMOUNT_MAX)]
    TooLarge,
    /// Not a decimal number.
    #[error("not a decimal number")]
    NotANumber,
    /// A sum or difference left the representable range.
    #[error("arithmetic overflow")]
    Overflow,
}

/// An amount together with its currency: what an entry line, a hold or a transfer moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    /// The positive amount.
    pub amount: Amount,
    /// Its currency.
    pub currency: Currency,
}

impl Money {
    /// Builds a checked value; see [`Amount::new`].
    pub fn new(value: Decimal, currency: Currency) -> Result<Self> {
        Ok(Money { amount: Amount::new(value, currency)?, currency })
    }

    /// Parses `"12.34"` and `"EUR"`.
    pub fn parse(amount: &str, currency: &str) -> Result<Self> {
        let currency: Currency = currency.parse()?;
        Ok(Money { amount: Amount::parse(amount, currency)?, currency })
    }

    /// The value as a `Decimal`.
    pub const fn value(self) -> Decimal {
        self.amount.0
    }

    /// Re-checks the amount against the currency. The fields are public for ergonomic reading,
    /// so a hand-built `Money` could pair an amount checked for one currency with another; every
    /// ledger entry point calls this before trusting a value.
    pub fn check(self) -> Result<Self> {
        Amount::new(self.amount.0, self.currency)?;
        Ok(self)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", in_minor_units(self.value(), self.currency), self.currency)
    }
}

impl Serialize for Money {
    /// `{"amount": "12.50", "currency": "EUR"}`: always with the currency's number of decimals.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Money", 2)?;
        st.serialize_field("amount", &in_minor_units(self.value(), self.currency).to_string())?;
        st.serialize_field("currency", &self.currency)?;
        st.end()
    }
}

/// `value` written with exactly the currency's decimals (`12.5` USD → `12.50`, `-3` KWD →
/// `-3.000`): how amounts and balances are shown and sent. A value with more decimals than the
/// currency (impossible for a ledger balance) keeps them rather than being rounded. A zero is
/// always written unsigned (`Decimal` negation can make a `-0.00`, which the grammar refuses).
pub fn in_minor_units(value: Decimal, currency: Currency) -> Decimal {
    let mut shown = value;
    if shown.is_zero() {
        shown.set_sign_positive(true);
    }
    if shown.scale() < currency.exponent() {
        shown.rescale(currency.exponent());
    }
    shown
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire<'a> {
            #[serde(borrow)]
            amount: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            currency: std::borrow::Cow<'a, str>,
        }
        let wire = Wire::deserialize(d)?;
        Money::parse(&wire.amount, &wire.currency).map_err(serde::de::Error::custom)
    }
}

/// The amount error of a text the grammar refused.
fn amount_text_error(error: AmountTextError, currency: Currency) -> Error {
    let reason = match error {
        AmountTextError::NotANumber => AmountError::NotANumber,
        AmountTextError::TooManyDecimals { max } => AmountError::TooManyDecimals { currency, max },
        AmountTextError::TooLarge => AmountError::TooLarge,
    };
    Error::InvalidAmount { reason }
}

/// Parses a signed decimal string of any currency (a balance, a limit) with the amount grammar
/// ([`text`]) and at most [`AMOUNT_DECIMALS_MAX`] decimals: no exponent, `+`, `_`, leading zero,
/// bare dot or whitespace, and nothing `Decimal` would have to round.
pub fn parse_decimal(text: &str) -> Result<Decimal> {
    text::parse_decimal_text(text, AMOUNT_DECIMALS_MAX, text::DECIMAL_INTEGER_DIGITS_MAX).map_err(|error| {
        let reason = match error {
            AmountTextError::NotANumber | AmountTextError::TooManyDecimals { .. } => AmountError::NotANumber,
            AmountTextError::TooLarge => AmountError::TooLarge,
        };
        Error::InvalidAmount { reason }
    })
}

/// Checked `a + b`.
pub fn checked_add(a: Decimal, b: Decimal) -> Result<Decimal> {
    a.checked_add(b).ok_or(Error::InvalidAmount { reason: AmountError::Overflow })
}

/// Checked `a - b`.
pub fn checked_sub(a: Decimal, b: Decimal) -> Result<Decimal> {
    a.checked_sub(b).ok_or(Error::InvalidAmount { reason: AmountError::Overflow })
}

/// Serde helpers for signed `Decimal` balances as strings (`"-12.30"`).
pub mod decimal_string {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the decimal as a string.
    pub fn serialize<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    /// Reads a decimal string, refusing anything `parse_decimal` refuses.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_decimal(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde helpers for optional decimals as strings or `null`.
pub mod decimal_string_option {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the decimal as a string, or `null`.
    pub fn serialize<S: Serializer>(value: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    /// Reads a decimal string or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        text.map(|t| super::parse_decimal(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

/// Keeps error messages bounded when echoing user input.
pub(crate) fn truncate_for_error(text: &str) -> String {
    const ECHO_CHARS_MAX: usize = 16;
    text.chars().take(ECHO_CHARS_MAX).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn currencies_parse_with_their_exponents() {
        assert_eq!("USD".parse::<Currency>().unwrap().exponent(), 2);
        assert_eq!("JPY".parse::<Currency>().unwrap().exponent(), 0);
        assert_eq!("KWD".parse::<Currency>().unwrap().exponent(), 3);
        assert_eq!("BHD".parse::<Currency>().unwrap().exponent(), 3);
        for c in Currency::ALL {
            assert_eq!(c.code().parse::<Currency>().unwrap(), c);
        }
    }

    #[test]
    fn unknown_or_lowercase_currency_is_refused() {
        for code in ["XXX", "usd", "", "US", "USDD", "€"] {
            assert!(matches!(code.parse::<Currency>(), Err(Error::UnknownCurrency { .. })), "{code}");
        }
    }

    #[test]
    fn amounts_are_checked_never_rounded() {
        let usd = Currency::Usd;
        assert_eq!(Amount::parse("12.34", usd).unwrap().value(), dec!(12.34));
        assert_eq!(Amount::parse("12.50", usd).unwrap().value(), dec!(12.5));
        assert!(matches!(
            Amount::parse("12.345", usd),
            Err(Error::InvalidAmount { reason: AmountError::TooManyDecimals { .. } })
        ));
        assert!(matches!(Amount::parse("1.5", Currency::Jpy), Err(Error::InvalidAmount { .. })));
        assert!(Amount::parse("100", Currency::Jpy).is_ok());
        // Zeros past the currency's exponent are digits too: refused, as "1.000" USD.
        for (text, currency) in
            [("100.000", Currency::Jpy), ("100.0", Currency::Jpy), ("1.000", usd), ("1.0000", Currency::Kwd)]
        {
            assert!(
                matches!(
                    Amount::parse(text, currency),
                    Err(Error::InvalidAmount { reason: AmountError::TooManyDecimals { .. } })
                ),
                "{text} {currency}"
            );
        }
        assert!(Amount::parse("1.234", Currency::Kwd).is_ok());
        assert!(Amount::parse("1.2345", Currency::Bhd).is_err());
        assert!(matches!(Amount::parse("0", usd), Err(Error::InvalidAmount { reason: AmountError::Zero })));
        assert!(matches!(Amount::parse("0.00", usd), Err(Error::InvalidAmount { reason: AmountError::Zero })));
        assert!(matches!(Amount::parse("-1", usd), Err(Error::InvalidAmount { reason: AmountError::Negative })));
        assert!(matches!(
            Amount::parse("1000000000000.01", usd),
            Err(Error::InvalidAmount { reason: AmountError::TooLarge })
        ));
        assert!(Amount::parse("1000000000000", usd).is_ok());
        assert!(matches!(
            Amount::parse("99999999999999999999999999999999", usd),
            Err(Error::InvalidAmount { reason: AmountError::TooLarge })
        ));
        for bad in [
            "", "abc", "1e3", "1E3", "1e-2", "0.1e1", "1_0", "1_000.00", "+1", "+1.00", " 1", "1 ", "1.", ".5",
            "1.2.3", "NaN", "inf", "0x10", "１", "00001.00", "01", "-01", "--1", "-", "-.5", "1.-5", "\u{7f}1", "1\n",
            "1,00", "-0", "-0.00", "-0.0",
        ] {
            assert!(
                matches!(Amount::parse(bad, usd), Err(Error::InvalidAmount { reason: AmountError::NotANumber })),
                "{bad:?}"
            );
        }
    }

    /// The inputs of issue 19: refused, never rounded to the nearest cent.
    #[test]
    fn long_texts_are_refused_not_rounded() {
        for text in [
            "0.00999999999999999999999999999999",
            "12.340000000000000000000000000009",
            "1.0000000000000000000000000000001",
            "0.001",
        ] {
            assert!(
                matches!(
                    Amount::parse(text, Currency::Usd),
                    Err(Error::InvalidAmount { reason: AmountError::TooManyDecimals { .. } })
                ),
                "{text}"
            );
            assert!(Money::parse(text, "USD").is_err(), "{text}");
        }
        assert!(parse_decimal("0.00999999999999999999999999999999").is_err());
        assert_eq!(parse_decimal("-12.30").unwrap().to_string(), "-12.30");
        assert!(parse_decimal("12345678901234567890123456").is_err(), "26 integer digits");
    }

    #[test]
    fn max_constant_is_one_trillion() {
        assert_eq!(TRANSFER_AMOUNT_MAX, dec!(1_000_000_000_000));
    }

    #[test]
    fn money_round_trips_as_strings() {
        let m = Money::parse("12.34", "EUR").unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"amount":"12.34","currency":"EUR"}"#);
        let whole = Money::parse("12.50", "USD").unwrap();
        assert_eq!(serde_json::to_string(&whole).unwrap(), r#"{"amount":"12.50","currency":"USD"}"#);
        assert_eq!(whole.to_string(), "12.50 USD");
        assert_eq!(Money::parse("7", "KWD").unwrap().to_string(), "7.000 KWD");
        assert_eq!(Money::parse("7", "JPY").unwrap().to_string(), "7 JPY");
        assert!(Money::parse("7.00", "JPY").is_err(), "no decimals past the currency's");
        assert_eq!(in_minor_units(Decimal::new(-3, 0), Currency::Bhd).to_string(), "-3.000");
        assert_eq!(in_minor_units(-Decimal::ZERO, Currency::Usd).to_string(), "0.00");
        assert_eq!(in_minor_units(-Decimal::new(0, 2), Currency::Jpy).to_string(), "0.00");
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
        assert!(serde_json::from_str::<Money>(r#"{"amount":12.34,"currency":"EUR"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1.001","currency":"EUR"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1","currency":"XYZ"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1.000","currency":"EUR"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1e3","currency":"EUR"}"#).is_err());
    }

    /// A model of the grammar written independently of the parser: digits, an optional minus
    /// (not on a zero), no leading zero, at most `max` decimals, at most 13 integer digits.
    fn grammar_accepts(text: &str, max: usize) -> bool {
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let negative_zero = unsigned.len() < text.len() && unsigned.chars().all(|c| c == '0' || c == '.');
        let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let has_point = unsigned.contains('.');
        let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
        !integer.is_empty()
            && !negative_zero
            && all_digits(integer)
            && all_digits(fraction)
            && !(has_point && fraction.is_empty())
            && !(integer.len() > 1 && integer.starts_with('0'))
            && fraction.len() <= max
            && integer.len() <= AMOUNT_INTEGER_DIGITS_MAX
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any text: accepted exactly when the model accepts it; an accepted text prints back
        /// byte for byte (nothing rounded, no digit dropped or added).
        #[test]
        fn the_grammar_is_exact(text in "[-+ ._e0-9]{0,20}|-?[0-9]{1,14}(\\.[0-9]{0,5})?|-0(\\.0{0,3})?", currency in 0..Currency::ALL.len()) {
            let currency = Currency::ALL[currency];
            let max = usize::try_from(currency.exponent()).unwrap();
            let parsed = text::parse_amount_text(&text, currency.exponent());
            proptest::prop_assert_eq!(parsed.is_ok(), grammar_accepts(&text, max), "{:?} {}", text, currency);
            if let Ok(value) = parsed {
                proptest::prop_assert_eq!(value.to_string(), text.clone());
                let amount = Amount::parse(&text, currency);
                if value > Decimal::ZERO && value <= TRANSFER_AMOUNT_MAX {
                    let amount = amount.unwrap();
                    proptest::prop_assert_eq!(amount.value(), value);
                    // The wire form of the amount is the text, padded to the currency's decimals.
                    proptest::prop_assert_eq!(in_minor_units(amount.value(), currency), value);
                } else {
                    proptest::prop_assert!(amount.is_err());
                }
            } else {
                proptest::prop_assert!(Amount::parse(&text, currency).is_err());
                proptest::prop_assert!(Money::parse(&text, currency.code()).is_err());
            }
        }

        /// [`AMOUNT_PATTERN`], as the OpenAPI document states it, accepts exactly the texts the
        /// grammar accepts (with room for every digit the generated texts have).
        #[test]
        fn the_pattern_states_the_grammar(text in "[-+ ._e0-9]{0,12}|-?[0-9]{1,12}(\\.[0-9]{0,8})?|-0(\\.0{0,3})?") {
            static PATTERN: std::sync::LazyLock<regex::Regex> =
                std::sync::LazyLock::new(|| regex::Regex::new(AMOUNT_PATTERN).expect("the pattern compiles"));
            let grammar = text::parse_decimal_text(&text, 12, 12);
            proptest::prop_assert_eq!(PATTERN.is_match(&text), grammar.is_ok(), "{:?}", text);
        }

        /// A valid amount followed by more digits (zeros included) past the currency's scale is
        /// refused, never rounded or truncated to the valid prefix.
        #[test]
        fn extra_digits_are_refused(units in 1u64..1_000_000, extra in "[0-9]{1,40}", currency in 0..Currency::ALL.len()) {
            let currency = Currency::ALL[currency];
            let decimals = usize::try_from(currency.exponent()).unwrap();
            let text = if decimals == 0 {
                format!("{units}.{extra}")
            } else {
                format!("{units}.{}{extra}", "0".repeat(decimals))
            };
            proptest::prop_assert!(Amount::parse(&text, currency).is_err(), "{}", text);
        }
    }

    #[test]
    fn checked_arithmetic_reports_overflow() {
        assert!(checked_add(Decimal::MAX, Decimal::ONE).is_err());
        assert!(checked_sub(Decimal::MIN, Decimal::ONE).is_err());
        assert_eq!(checked_add(dec!(1.1), dec!(2.2)).unwrap(), dec!(3.3));
    }
}
