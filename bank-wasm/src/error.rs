//! The one error class JS sees: [`BankError`], an RFC 9457 problem as a JS object.
//!
//! Every rejected promise of the client carries a `BankError` (`err instanceof BankError`), whatever
//! went wrong: the server's problem as it answered it (`requestId` set), a failure in the client
//! (`bank_client::client_problem_types`, status 0), or input refused before anything was sent
//! (`invalid-request`, status 400, exactly what the server would answer, since both read it with
//! `bank-api`'s types). This module only converts; what counts as an error is decided elsewhere.

use bank_api::{Problem, problem_types};
use bank_client::ClientError;
use wasm_bindgen::prelude::wasm_bindgen;

/// An error of the bank client: `{type, title, status, detail, requestId}` of an RFC 9457 problem.
///
/// `type` is the stable, machine-readable kind (`https://bank.example/problems/<kind>`): match on it,
/// never on `title` or `detail`, which are for people. `status` is the HTTP status, or 0 when no
/// HTTP answer was received. `requestId` names the request in the server's logs.
#[wasm_bindgen]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankError {
    /// Boxed to keep `Result<_, BankError>` small.
    problem: Box<Problem>,
    retryable: bool,
}

#[wasm_bindgen]
impl BankError {
    /// The problem's stable `type` URI.
    #[wasm_bindgen(getter, js_name = "type")]
    pub fn problem_type(&self) -> String {
        self.problem.problem_type.clone()
    }

    /// A short summary of the kind of problem, for people.
    #[wasm_bindgen(getter)]
    pub fn title(&self) -> String {
        self.problem.title.clone()
    }

    /// The HTTP status, or 0 when the server gave no answer.
    #[wasm_bindgen(getter)]
    pub fn status(&self) -> u16 {
        self.problem.status
    }

    /// What went wrong this time, for people (may be absent).
    #[wasm_bindgen(getter)]
    pub fn detail(&self) -> Option<String> {
        self.problem.detail.clone()
    }

    /// The server's id of the request, to quote to support (absent when nothing was answered).
    #[wasm_bindgen(getter, js_name = "requestId")]
    pub fn request_id(&self) -> Option<String> {
        self.problem.request_id.clone()
    }

    /// Whether the same call may succeed later unchanged (no answer, 408, 429, 5xx, or a transfer
    /// still in flight under the same key). The client has already retried what it safely could.
    #[wasm_bindgen(getter)]
    pub fn retryable(&self) -> bool {
        self.retryable
    }

    /// `title: detail` (or the title alone), for a log line or a plain message.
    #[wasm_bindgen(getter)]
    pub fn message(&self) -> String {
        match &self.problem.detail {
            Some(detail) => format!("{}: {detail}", self.problem.title),
            None => self.problem.title.clone(),
        }
    }

    /// The same as `message`, with the status when there was one.
    #[wasm_bindgen(js_name = "toString")]
    pub fn to_js_string(&self) -> String {
        match self.problem.status {
            0 => format!("BankError: {}", self.message()),
            status => format!("BankError ({status}): {}", self.message()),
        }
    }
}

impl BankError {
    /// Input the client refused before sending anything: `what` names the argument and says why.
    pub fn invalid_input(what: impl Into<String>) -> Self {
        Self {
            problem: Box::new(Problem::new(problem_types::INVALID_REQUEST, "Invalid request", 400).with_detail(what)),
            retryable: false,
        }
    }

    /// The problem this error carries.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

impl From<ClientError> for BankError {
    fn from(error: ClientError) -> Self {
        Self { retryable: error.is_retryable(), problem: Box::new(error.to_problem()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bank_client::client_problem_types;

    #[test]
    fn a_server_problem_keeps_every_field() {
        let problem = Problem::new(problem_types::INSUFFICIENT_FUNDS, "Insufficient funds", 422)
            .with_detail("available 1.00 USD")
            .with_request_id("req-7");
        let error = BankError::from(ClientError::Problem { status: 422, problem: Box::new(problem) });
        assert_eq!(error.problem_type(), problem_types::INSUFFICIENT_FUNDS);
        assert_eq!((error.title().as_str(), error.status()), ("Insufficient funds", 422));
        assert_eq!(error.detail().as_deref(), Some("available 1.00 USD"));
        assert_eq!(error.request_id().as_deref(), Some("req-7"));
        assert!(!error.retryable());
        assert_eq!(error.message(), "Insufficient funds: available 1.00 USD");
        assert_eq!(error.to_js_string(), "BankError (422): Insufficient funds: available 1.00 USD");
    }

    #[test]
    fn client_failures_have_status_zero_and_a_client_type() {
        let error = BankError::from(ClientError::NotLoggedIn);
        assert_eq!((error.problem_type().as_str(), error.status()), (client_problem_types::NOT_LOGGED_IN, 0));
        assert_eq!(error.request_id(), None);
        assert_eq!(error.to_js_string(), "BankError: Not signed in: not logged in");
    }

    #[test]
    fn retryable_follows_the_client() {
        let busy = Problem::new(problem_types::UNAVAILABLE, "Unavailable", 503);
        assert!(BankError::from(ClientError::Problem { status: 503, problem: Box::new(busy) }).retryable());
        let input = BankError::invalid_input("`amount` is not a decimal");
        assert!(!input.retryable());
        assert_eq!((input.problem_type().as_str(), input.status()), (problem_types::INVALID_REQUEST, 400));
    }
}
