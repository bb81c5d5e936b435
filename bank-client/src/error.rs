//! The one error type of the client, and how an error response becomes one.
//!
//! Each variant says what the caller can do: fix the request (`Problem` with a 4xx status), log in
//! (`NotLoggedIn`, 401), retry later ([`ClientError::is_retryable`]) or give up.

use bank_api::{PROBLEM_JSON, Problem, problem_types};
use reqwest::StatusCode;

/// Longest piece of a non-problem error body kept in a synthesized [`Problem`]'s `detail`.
pub const ERROR_BODY_CHARS_MAX: usize = 512;

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error status. `problem` is its problem+json body, or one made
    /// up from the status and the start of the body when the server sent something else.
    /// (Boxed to keep `Result<_, ClientError>` small.)
    #[error("HTTP {status}: {problem}")]
    Problem { status: u16, problem: Box<Problem> },
    /// The request did not get an answer (connection, TLS, timeout) or the body could not be read.
    #[error("transport error: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server answered 2xx but the body is not what the API promises.
    #[error("cannot decode the response: {0}")]
    Decode(String),
    /// The call needs an access token and the client has none: call `login` or `with_access_token`.
    #[error("not logged in")]
    NotLoggedIn,
    /// The base URL or a URL built from it is not a usable http(s) URL.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The deposit is above the four-eyes threshold: nothing was posted, the server stored this
    /// pending request (202), which another operator approves with
    /// [`crate::BankClient::approve_deposit`]. Calling again with the same key answers it again.
    #[error("the deposit waits for a second operator's approval (request {})", .0.id)]
    PendingApproval(Box<bank_api::PendingDeposit>),
}

impl ClientError {
    /// The HTTP status of an error response, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Problem { status, .. } => Some(*status),
            Self::Transport(error) => error.status().map(|s| s.as_u16()),
            _ => None,
        }
    }

    /// The problem `type` URI of an error response (see [`bank_api::problem_types`]).
    pub fn problem_type(&self) -> Option<&str> {
        match self {
            Self::Problem { problem, .. } => Some(&problem.problem_type),
            _ => None,
        }
    }

    /// The decoded problem body of an error response.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Problem { problem, .. } => Some(problem),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::NotLoggedIn) || self.status() == Some(401)
    }

    /// Whether the same request may succeed later unchanged: no answer, 408, 429, 5xx, or a 409
    /// because a request with the same idempotency key is still in flight.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(error) => !error.is_builder() && !error.is_decode(),
            Self::Problem { status, problem } => {
                matches!(status, 408 | 429 | 500..=599)
                    || (*status == 409 && problem.problem_type == problem_types::IDEMPOTENCY_IN_FLIGHT)
            }
            Self::Decode(_) | Self::NotLoggedIn | Self::InvalidUrl(_) | Self::PendingApproval(_) => false,
        }
    }
}

/// Problem `type` URIs of the failures that happen in the client itself, with no error answer from
/// the server (see [`ClientError::to_problem`]). Stable: callers match on them.
pub mod client_problem_types {
    /// No usable answer: connection refused or lost, TLS, timeout, or the body could not be read.
    pub const TRANSPORT: &str = "https://bank.example/problems/client/transport";
    /// A 2xx answer whose body is not what the API promises.
    pub const DECODE: &str = "https://bank.example/problems/client/decode";
    /// The call needs a signed-in client.
    pub const NOT_LOGGED_IN: &str = "https://bank.example/problems/client/not-logged-in";
    /// The base URL is not a usable http(s) URL.
    pub const INVALID_URL: &str = "https://bank.example/problems/client/invalid-url";
    /// A deposit above the four-eyes threshold was stored, not posted (status 202).
    pub const PENDING_APPROVAL: &str = "https://bank.example/problems/client/pending-approval";
}

impl ClientError {
    /// The error as one RFC 9457 problem, whatever its kind: the server's problem as answered, or
    /// one of [`client_problem_types`] with status 0 (no HTTP answer; 202 for
    /// [`ClientError::PendingApproval`]) and the error's text as `detail`. This is what the JS
    /// client (`bank-wasm`) throws.
    pub fn to_problem(&self) -> Problem {
        let (problem_type, title, status) = match self {
            Self::Problem { problem, .. } => return problem.as_ref().clone(),
            Self::Transport(_) => (client_problem_types::TRANSPORT, "The bank could not be reached", 0),
            Self::Decode(_) => (client_problem_types::DECODE, "The bank's answer could not be read", 0),
            Self::NotLoggedIn => (client_problem_types::NOT_LOGGED_IN, "Not signed in", 0),
            Self::InvalidUrl(_) => (client_problem_types::INVALID_URL, "Invalid bank URL", 0),
            Self::PendingApproval(_) => (client_problem_types::PENDING_APPROVAL, "Waiting for approval", 202),
        };
        Problem::new(problem_type, title, status).with_detail(self.to_string())
    }
}

/// Turns an error response into [`ClientError::Problem`].
pub(crate) fn problem_from_body(status: StatusCode, content_type: Option<&str>, body: &[u8]) -> ClientError {
    let is_json = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .is_some_and(|ct| ct.eq_ignore_ascii_case(PROBLEM_JSON) || ct.eq_ignore_ascii_case("application/json"));
    if is_json && let Ok(problem) = serde_json::from_slice::<Problem>(body) {
        return ClientError::Problem { status: status.as_u16(), problem: Box::new(problem) };
    }
    let title = status.canonical_reason().unwrap_or("Error");
    let mut problem = Problem::new(problem_types::ABOUT_BLANK, title, status.as_u16());
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if !text.is_empty() {
        problem = problem.with_detail(text.chars().take(ERROR_BODY_CHARS_MAX).collect::<String>());
    }
    ClientError::Problem { status: status.as_u16(), problem: Box::new(problem) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_json_is_decoded() {
        let body = br#"{"type":"https://bank.example/problems/not-found","title":"Not found","status":404}"#;
        let error = problem_from_body(StatusCode::NOT_FOUND, Some("application/problem+json"), body);
        assert!(error.is_not_found());
        assert_eq!(error.problem_type(), Some(problem_types::NOT_FOUND));
        assert!(!error.is_retryable());
    }

    #[test]
    fn other_bodies_are_synthesized_and_cut() {
        let body = "x".repeat(2_000);
        let error = problem_from_body(StatusCode::BAD_GATEWAY, Some("text/html"), body.as_bytes());
        let problem = error.problem().expect("problem");
        assert_eq!(problem.status, 502);
        assert_eq!(problem.title, "Bad Gateway");
        assert_eq!(problem.problem_type, problem_types::ABOUT_BLANK);
        assert_eq!(problem.detail.as_deref().map(str::len), Some(ERROR_BODY_CHARS_MAX));
        assert!(error.is_retryable());
    }

    #[test]
    fn every_error_is_a_problem() {
        let answered = problem_from_body(
            StatusCode::NOT_FOUND,
            Some(PROBLEM_JSON),
            br#"{"type":"https://bank.example/problems/not-found","title":"Not found","status":404,"request_id":"r1"}"#,
        );
        let problem = answered.to_problem();
        assert_eq!((problem.problem_type.as_str(), problem.status), (problem_types::NOT_FOUND, 404));
        assert_eq!(problem.request_id.as_deref(), Some("r1"));
        let local = ClientError::NotLoggedIn.to_problem();
        assert_eq!((local.problem_type.as_str(), local.status), (client_problem_types::NOT_LOGGED_IN, 0));
        assert_eq!(local.detail.as_deref(), Some("not logged in"));
        let decode = ClientError::Decode("bad".to_owned()).to_problem();
        assert_eq!(decode.problem_type, client_problem_types::DECODE);
        assert!(decode.problem_type.starts_with(problem_types::BASE));
    }

    #[test]
    fn in_flight_conflict_is_retryable_but_other_conflicts_are_not() {
        let in_flight = ClientError::Problem {
            status: 409,
            problem: Box::new(Problem::new(problem_types::IDEMPOTENCY_IN_FLIGHT, "In flight", 409)),
        };
        let conflict = ClientError::Problem {
            status: 409,
            problem: Box::new(Problem::new(problem_types::CONFLICT, "Conflict", 409)),
        };
        assert!(in_flight.is_retryable());
        assert!(!conflict.is_retryable());
    }
}
