//! RFC 9457 problem details: the body of every error response, and their stable `type` URIs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Content type of a [`Problem`] body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error response (`application/problem+json`).
///
/// `problem_type` is the stable, machine-readable kind (one of [`problem_types`]); `title` is a
/// short human summary of that kind; `detail` explains this occurrence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "tsify", derive(tsify::Tsify))]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    /// The HTTP status code, repeated in the body.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    /// A problem with no detail, instance or request id.
    pub fn new(problem_type: impl Into<String>, title: impl Into<String>, status: u16) -> Self {
        Self {
            problem_type: problem_type.into(),
            title: title.into(),
            status,
            detail: None,
            instance: None,
            request_id: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {})", self.title, self.status, self.problem_type)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

/// The stable `type` URIs of [`Problem`]; clients match on these, never on `title` or `detail`.
///
/// Every URI is [`BASE`] followed by a kebab-case suffix; a `bank_core::Error`'s `code()` is
/// exactly the suffix of the type a server answers it with ([`by_code`] finds the URI).
pub mod problem_types {
    /// The prefix of every type below except [`ABOUT_BLANK`].
    pub const BASE: &str = "https://bank.example/problems/";

    /// RFC 9457's default when the status code says it all.
    pub const ABOUT_BLANK: &str = "about:blank";
    /// 400/422: the request is well-formed JSON but a field is invalid.
    pub const INVALID_REQUEST: &str = "https://bank.example/problems/invalid-request";
    /// 400: the body is not valid JSON for the route (syntax, wrong type, unknown field).
    pub const MALFORMED_BODY: &str = "https://bank.example/problems/malformed-body";
    /// 401: missing, invalid or expired access token.
    pub const UNAUTHORIZED: &str = "https://bank.example/problems/unauthorized";
    /// 403: authenticated but not allowed (e.g. an operator route).
    pub const FORBIDDEN: &str = "https://bank.example/problems/forbidden";
    /// 404: no such resource, or it belongs to someone else.
    pub const NOT_FOUND: &str = "https://bank.example/problems/not-found";
    /// 422: the source account's available balance is too low.
    pub const INSUFFICIENT_FUNDS: &str = "https://bank.example/problems/insufficient-funds";
    /// 422: an account is frozen or closed.
    pub const ACCOUNT_NOT_OPEN: &str = "https://bank.example/problems/account-not-open";
    /// 422: the amount's currency differs from an account's.
    pub const CURRENCY_MISMATCH: &str = "https://bank.example/problems/currency-mismatch";
    /// 400: a route that needs `Idempotency-Key` got none.
    pub const IDEMPOTENCY_KEY_MISSING: &str = "https://bank.example/problems/idempotency-key-missing";
    /// 422: the key was used before with a different request.
    pub const IDEMPOTENCY_KEY_REUSED: &str = "https://bank.example/problems/idempotency-key-reused";
    /// 409: a request with the same key is still being processed; retry later with the same key.
    pub const IDEMPOTENCY_IN_FLIGHT: &str = "https://bank.example/problems/idempotency-in-flight";
    /// 409: the request conflicts with the resource's current state.
    pub const CONFLICT: &str = "https://bank.example/problems/conflict";
    /// 429: too many requests; see `Retry-After`.
    pub const RATE_LIMITED: &str = "https://bank.example/problems/rate-limited";
    /// 413: the body is larger than the server accepts.
    pub const PAYLOAD_TOO_LARGE: &str = "https://bank.example/problems/payload-too-large";
    /// 415: a body that is not `application/json` (or `application/*+json`), or has no
    /// `Content-Type`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "https://bank.example/problems/unsupported-media-type";
    /// 405: the route exists but not with this method (see `Allow`).
    pub const METHOD_NOT_ALLOWED: &str = "https://bank.example/problems/method-not-allowed";
    /// 414: the request target (path and query) is longer than the server accepts.
    pub const URI_TOO_LONG: &str = "https://bank.example/problems/uri-too-long";
    /// 403: the action would break separation of duties (an operator owning an account,
    /// crediting one they own, or approving their own deposit request).
    pub const SEPARATION_OF_DUTIES: &str = "https://bank.example/problems/separation-of-duties";
    /// 503/504: the server gave up waiting.
    pub const TIMEOUT: &str = "https://bank.example/problems/timeout";
    /// 503: a backend is unavailable; retry later.
    pub const UNAVAILABLE: &str = "https://bank.example/problems/unavailable";
    /// 500: an internal error (details are logged under the request id, never returned).
    pub const INTERNAL: &str = "https://bank.example/problems/internal";

    /// Every type above except [`ABOUT_BLANK`].
    pub const ALL: [&str; 21] = [
        INVALID_REQUEST,
        MALFORMED_BODY,
        UNAUTHORIZED,
        FORBIDDEN,
        NOT_FOUND,
        INSUFFICIENT_FUNDS,
        ACCOUNT_NOT_OPEN,
        CURRENCY_MISMATCH,
        IDEMPOTENCY_KEY_MISSING,
        IDEMPOTENCY_KEY_REUSED,
        IDEMPOTENCY_IN_FLIGHT,
        CONFLICT,
        RATE_LIMITED,
        PAYLOAD_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        METHOD_NOT_ALLOWED,
        URI_TOO_LONG,
        SEPARATION_OF_DUTIES,
        TIMEOUT,
        UNAVAILABLE,
        INTERNAL,
    ];

    /// The type in [`ALL`] whose suffix after [`BASE`] is `code` (e.g. `"not-found"` →
    /// [`NOT_FOUND`]), or `None`.
    pub fn by_code(code: &str) -> Option<&'static str> {
        ALL.into_iter().find(|uri| uri.strip_prefix(BASE) == Some(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn problem_serializes_type_and_skips_absent_fields() {
        let problem = Problem::new(problem_types::NOT_FOUND, "Not found", 404).with_request_id("req-1");
        let value = serde_json::to_value(&problem).expect("serialize");
        assert_eq!(
            value,
            json!({"type": "https://bank.example/problems/not-found", "title": "Not found", "status": 404, "request_id": "req-1"})
        );
        assert_eq!(serde_json::from_value::<Problem>(value).expect("deserialize"), problem);
    }

    #[test]
    fn problem_round_trips_every_field() {
        let problem = Problem::new(problem_types::INSUFFICIENT_FUNDS, "Insufficient funds", 422)
            .with_detail("available 1.00 USD")
            .with_instance("/v1/transfers")
            .with_request_id("r");
        let value = serde_json::to_value(&problem).expect("serialize");
        assert_eq!(value["type"], json!(problem_types::INSUFFICIENT_FUNDS));
        assert_eq!(value["detail"], json!("available 1.00 USD"));
        assert_eq!(value["instance"], json!("/v1/transfers"));
        assert_eq!(serde_json::from_value::<Problem>(value).expect("deserialize"), problem);
        assert_eq!(
            problem.to_string(),
            format!("Insufficient funds (422, {}): available 1.00 USD", problem.problem_type)
        );
        assert_eq!(PROBLEM_JSON, "application/problem+json");
    }

    #[test]
    fn problem_types_are_distinct_and_under_one_base() {
        let mut seen = std::collections::BTreeSet::new();
        for uri in problem_types::ALL {
            assert!(uri.starts_with("https://bank.example/problems/"), "{uri}");
            assert!(uri.starts_with(problem_types::BASE), "{uri}");
            assert!(seen.insert(uri), "duplicate {uri}");
        }
        assert_eq!(problem_types::INVALID_REQUEST, "https://bank.example/problems/invalid-request");
        for uri in problem_types::ALL {
            let code = uri.strip_prefix(problem_types::BASE).expect("under BASE");
            assert_eq!(problem_types::by_code(code), Some(uri));
        }
        assert_eq!(problem_types::by_code("account-not-found"), None);
        assert_eq!(problem_types::by_code(""), None);
        assert_eq!(problem_types::by_code(problem_types::NOT_FOUND), None, "a code is a suffix, not a URI");
        assert_eq!(problem_types::IDEMPOTENCY_IN_FLIGHT, "https://bank.example/problems/idempotency-in-flight");
    }
}
