//! Wire types of the bank HTTP API (v1), shared by the server and every client.
//!
//! This crate owns the JSON shapes of requests and responses, the header names, the route paths,
//! the stable problem `type` URIs and the page size limit: the contract between `bank-server`,
//! `bank-client` and `bank-wasm`. It must not hold business rules (they live in `bank-core`) and
//! must keep building for `wasm32-unknown-unknown`, so it depends only on serde, serde_json, uuid,
//! chrono and rust_decimal, with no clock and no random number generator.
//!
//! - [`auth`]: registration, login and tokens;
//! - [`accounts`]: accounts, balances and their history;
//! - [`transfers`]: transfers and operator deposits;
//! - [`admin`]: deposit requests waiting for a second operator, and the audit log;
//! - [`statements`]: monthly statements, their download links and operator runs;
//! - [`problem`]: RFC 9457 errors and their [`problem_types`];
//! - [`paths`]: the route paths; [`Page`] and [`Health`] are shared by several routes.
//!
//! Amounts are [`rust_decimal::Decimal`] and always travel as JSON strings (`"12.34"`); a JSON
//! number is refused, so a float can never silently round money. Every amount string is read with
//! the one amount grammar of `bank-core` ([`amount_text`], the same source file compiled here):
//! `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, checked on the text before it becomes a `Decimal`, so `"1e3"`,
//! `"+1"`, `"1_0"`, `"00001.00"` or 32 decimals are refused instead of being read as something
//! else. The `Decimal` keeps the decimals as written (`"1.000"` stays three decimals) for the server
//! to check against the account's currency. Request types refuse unknown fields, so a misspelt
//! field is an error instead of being ignored.
//!
//! With the `utoipa` feature (off by default) every type derives `utoipa::ToSchema`. With the
//! `tsify` feature (off by default; `bank-wasm` turns it on) the types the JS client exchanges
//! derive `tsify::Tsify`, which writes their TypeScript declarations into `bank-wasm`'s `.d.ts`:
//! the declarations come from these types, never from a hand-written copy.

pub mod accounts;
pub mod admin;
// The one amount grammar is owned by bank-core; this crate cannot depend on bank-core (it must
// build for wasm32 without a clock or an RNG), so it compiles the same dependency-free file.
#[path = "../../bank-core/src/amount_text.rs"]
pub mod amount_text;
pub mod auth;
pub mod paths;
pub mod problem;
pub mod statements;
pub mod transfers;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use accounts::{Account, AccountStatus, Direction, HistoryEntry, OpenAccountRequest};
pub use admin::{AuditEntry, AuditOutcome, AuditProof, AuditVerification, PendingDeposit, PendingDepositStatus};
pub use auth::{LoginRequest, LogoutRequest, RefreshRequest, RegisterRequest, Registered, TOKEN_TYPE_BEARER, Tokens};
pub use problem::{PROBLEM_JSON, Problem, problem_types};
pub use statements::{StatementLink, StatementRun, StatementSummary};
pub use transfers::{Deposit, DepositRequest, ExternalBeneficiary, Transfer, TransferRequest, TransferStatus};

/// Header carrying the client's idempotency key on `POST /v1/transfers` and `POST /v1/admin/deposits`.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// Response header set to `true` when the response replays the first response under the same key.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "Idempotent-Replayed";
/// Request and response header carrying the request id (echoed in [`Problem::request_id`]).
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Largest `limit` a list route accepts; larger values are clamped or refused by the server.
pub const PAGE_LIMIT_MAX: u32 = 100;

/// One page of a list, ordered; `next_cursor` is `None` on the last page.
///
/// The cursor is opaque: pass it back unchanged as `cursor=` to get the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "tsify", derive(tsify::Tsify))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page with a cursor to the next one (`None` on the last page).
    pub fn new(items: Vec<T>, next_cursor: Option<String>) -> Self {
        Self { items, next_cursor }
    }
}

/// Body of `GET /health/ready`: an overall status and one status per checked backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Health {
    /// `"ok"` when every check passed.
    pub status: String,
    /// Backend name → its status (`"ok"` or a short reason).
    pub checks: BTreeMap<String, String>,
}

/// Schema patterns the OpenAPI document states (the server enforces each). The schema attributes
/// repeat them as literals (utoipa takes no constant there); a test checks they agree.
pub mod patterns {
    /// A positive request amount: the amount grammar, without sign or zero, at most 12 integer
    /// digits (below the one-trillion cap) and 3 decimals. The account's currency may allow fewer
    /// decimals (2 for most, 0 for JPY): more are refused, never rounded.
    pub const POSITIVE_AMOUNT: &str = r"^([1-9][0-9]{0,11}(\.[0-9]{1,3})?|0\.([1-9][0-9]{0,2}|0[1-9][0-9]?|00[1-9]))$";
    /// Any amount or balance as the server writes it: the amount grammar's own pattern (never a
    /// negative zero), which the server sets on those schemas itself.
    pub const AMOUNT: &str = crate::amount_text::AMOUNT_PATTERN;
    /// A display name: no control character, not only spaces.
    pub const NAME: &str =
        r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";
    /// A reference: no control character.
    pub const REFERENCE: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
    /// An `Idempotency-Key`: 1 to 255 printable ASCII characters, not starting or ending with a
    /// space (HTTP trims those off a header value).
    pub const IDEMPOTENCY_KEY: &str = r"^[\x21-\x7E]([\x20-\x7E]{0,253}[\x21-\x7E])?$";
    /// An email address as the server checks it: text, one `@`, text, no whitespace or control
    /// character (internationalized addresses are accepted).
    pub const EMAIL: &str = r"^[^@\s\u0000-\u001F\u007F-\u009F]+@[^@\s\u0000-\u001F\u007F-\u009F]+$";
    /// A TOTP code: six digits.
    pub const TOTP_CODE: &str = r"^[0-9]{6}$";
}

/// Start of the message of an amount the grammar refused; the server answers such a body with a
/// 400 `invalid-request` problem naming the field instead of `malformed-body`.
pub const INVALID_AMOUNT_PREFIX: &str = "invalid amount: ";

/// `amount` fields: a JSON string both ways, never a number, read with the amount grammar
/// ([`amount_text::parse_amount_text`], at most [`amount_text::AMOUNT_DECIMALS_MAX`] decimals; the
/// server then checks the decimals against the currency). The error names the field.
pub(crate) mod amount_str {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let text = String::deserialize(d)?;
        crate::amount_text::parse_amount_text(&text, crate::amount_text::AMOUNT_DECIMALS_MAX)
            .map_err(|error| serde::de::Error::custom(format!("{}`amount` is {error}", crate::INVALID_AMOUNT_PREFIX)))
    }
}

/// Signed balances (`posted`, `available`, `balance_after`): a JSON string both ways, read with
/// the amount grammar (more integer digits allowed, as a balance sums many amounts).
pub(crate) mod decimal_str {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        use crate::amount_text::{AMOUNT_DECIMALS_MAX, DECIMAL_INTEGER_DIGITS_MAX, parse_decimal_text};
        let text = String::deserialize(d)?;
        parse_decimal_text(&text, AMOUNT_DECIMALS_MAX, DECIMAL_INTEGER_DIGITS_MAX)
            .map_err(|error| serde::de::Error::custom(format!("invalid balance: {error}")))
    }
}

/// Values the wire types' tests share.
#[cfg(test)]
pub(crate) mod fixtures {
    use chrono::{DateTime, Utc};
    use rust_decimal::Decimal;

    /// An exact decimal from its text.
    pub(crate) fn dec(s: &str) -> Decimal {
        s.parse().expect("decimal")
    }

    /// A fixed instant, 2026-01-02T03:04:05Z.
    pub(crate) fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").expect("time").with_timezone(&Utc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn page_round_trips_with_exact_field_names() {
        let page = Page::new(vec![1, 2], Some("c2".to_owned()));
        let value = serde_json::to_value(&page).expect("serialize");
        assert_eq!(value, json!({"items": [1, 2], "next_cursor": "c2"}));
        let back: Page<i32> = serde_json::from_value(value).expect("deserialize");
        assert_eq!(back, page);

        let last: Page<i32> = serde_json::from_value(json!({"items": [], "next_cursor": null})).expect("last");
        assert_eq!(last.next_cursor, None);
    }

    #[test]
    fn health_round_trips() {
        let health =
            Health { status: "ok".to_owned(), checks: BTreeMap::from([("ledger".to_owned(), "ok".to_owned())]) };
        let value = serde_json::to_value(&health).expect("serialize");
        assert_eq!(value, json!({"status": "ok", "checks": {"ledger": "ok"}}));
        assert_eq!(serde_json::from_value::<Health>(value).expect("deserialize"), health);
    }

    #[test]
    fn header_names_and_limits_are_stable() {
        assert_eq!(IDEMPOTENCY_KEY_HEADER, "Idempotency-Key");
        assert_eq!(IDEMPOTENT_REPLAYED_HEADER, "Idempotent-Replayed");
        assert_eq!(REQUEST_ID_HEADER, "x-request-id");
        assert_eq!(PAGE_LIMIT_MAX, 100);
    }

    /// The patterns written into the schemas are these constants, and they say what the grammar
    /// says.
    #[cfg(feature = "utoipa")]
    #[test]
    fn schema_patterns_are_the_constants() {
        use utoipa::PartialSchema;
        let transfer = serde_json::to_value(TransferRequest::schema()).expect("schema");
        assert_eq!(transfer["properties"]["amount"]["pattern"], json!(patterns::POSITIVE_AMOUNT), "{transfer}");
        assert_eq!(transfer["properties"]["reference"]["pattern"], json!(patterns::REFERENCE));
        let deposit = serde_json::to_value(DepositRequest::schema()).expect("schema");
        assert_eq!(deposit["properties"]["amount"]["pattern"], json!(patterns::POSITIVE_AMOUNT));
        let account = serde_json::to_value(OpenAccountRequest::schema()).expect("schema");
        assert_eq!(account["properties"]["name"]["pattern"], json!(patterns::NAME));
        let external = serde_json::to_value(ExternalBeneficiary::schema()).expect("schema");
        assert_eq!(external["properties"]["name"]["pattern"], json!(patterns::NAME));
        for schema in [RegisterRequest::schema(), LoginRequest::schema()] {
            let value = serde_json::to_value(schema).expect("schema");
            assert_eq!(value["properties"]["email"]["pattern"], json!(patterns::EMAIL));
            assert_eq!(value["properties"]["password"]["minLength"], json!(12));
        }
    }

    proptest::proptest! {
        /// The positive-amount pattern admits only positive amounts the grammar accepts for a
        /// 3-decimal currency, and every such amount below one trillion.
        #[test]
        fn the_positive_amount_pattern_states_the_grammar(text in "[-+ ._e0-9]{0,16}|-?[0-9]{1,14}(\\.[0-9]{0,4})?") {
            static PATTERN: std::sync::LazyLock<regex::Regex> =
                std::sync::LazyLock::new(|| regex::Regex::new(patterns::POSITIVE_AMOUNT).expect("the pattern compiles"));
            let positive = amount_text::parse_amount_text(&text, 3)
                .is_ok_and(|value| value > rust_decimal::Decimal::ZERO && value < rust_decimal::Decimal::new(1_000_000_000_000, 0));
            proptest::prop_assert_eq!(PATTERN.is_match(&text), positive, "{:?}", text);
        }
    }

    /// The OpenAPI schema must show amounts as strings, as they travel.
    #[cfg(feature = "utoipa")]
    #[test]
    fn schemas_show_amounts_as_strings() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(Account::schema()).expect("schema");
        assert_eq!(schema["properties"]["posted"]["type"], json!("string"), "{schema}");
        let schema = serde_json::to_value(Problem::schema()).expect("schema");
        assert!(schema["properties"]["type"].is_object(), "{schema}");
    }
}
