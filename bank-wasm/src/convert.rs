//! JS values ⇄ `bank-api`'s wire types, through their JSON form, and the binding's own small
//! option and answer types (with their TypeScript declarations).
//!
//! Values cross as JSON, so a JS caller sees exactly the HTTP API's shapes: snake_case fields,
//! amounts, ids and instants as strings. Input is read with the wire types' own deserializers (the
//! amount grammar, unknown fields refused): a JS number as an amount, a misspelt field or a
//! malformed id is refused here, before anything is sent, with a [`BankError`] naming it.

use bank_api::Transfer;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tsify::Tsify;
use uuid::Uuid;
use wasm_bindgen::JsValue;

use crate::BankError;

/// Options of a paginated call: page size (1–100, default 50) and the `next_cursor` of the
/// previous page (absent for the first page).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(default, deny_unknown_fields)]
pub struct PageOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The answer to `createTransfer`: the transfer, the `Idempotency-Key` it was sent under (keep it to
/// retry the same transfer later, e.g. after a reload), and whether the server replayed an earlier
/// answer under that key (`true`: nothing new happened).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Tsify)]
pub struct SubmittedTransfer {
    pub transfer: Transfer,
    pub idempotency_key: String,
    pub replayed: bool,
}

/// `value` as a JS value, through `JSON.parse` of its JSON text.
pub(crate) fn to_js<T: Serialize>(value: &T) -> Result<JsValue, BankError> {
    let text = serde_json::to_string(value).map_err(|e| decode_error(&e.to_string()))?;
    js_sys::JSON::parse(&text).map_err(|_| decode_error("JSON.parse refused the answer"))
}

/// A JS argument (`what` names it in the error) read as `T`; `undefined` and `null` are `None`.
pub(crate) fn from_js<T: DeserializeOwned>(what: &str, value: &JsValue) -> Result<Option<T>, BankError> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    let text = js_sys::JSON::stringify(value)
        .ok()
        .and_then(|text| JsValue::from(text).as_string())
        .ok_or_else(|| BankError::invalid_input(format!("{what} is not a JSON value")))?;
    from_json(what, &text).map(Some)
}

/// `text` (the JSON of argument `what`) read as `T`, with serde's message minus the position.
pub(crate) fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, BankError> {
    serde_json::from_str(text).map_err(|error| {
        let message = error.to_string();
        let message = message.rfind(" at line ").map_or(message.as_str(), |at| &message[..at]);
        BankError::invalid_input(format!("{what}: {message}"))
    })
}

/// An id argument (`what` names it) as a UUID.
pub(crate) fn parse_id(what: &str, text: &str) -> Result<Uuid, BankError> {
    Uuid::parse_str(text.trim())
        .map_err(|_| BankError::invalid_input(format!("{what} is not an id (a UUID): {text:?}")))
}

fn decode_error(detail: &str) -> BankError {
    BankError::from(bank_client::ClientError::Decode(detail.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bank_api::{TransferRequest, problem_types};

    #[test]
    fn transfer_requests_are_read_with_the_wire_rules() {
        let ok = r#"{"from_account_id":"00000000-0000-0000-0000-000000000001","to_account_id":"00000000-0000-0000-0000-000000000002","amount":"12.34","currency":"USD","reference":"rent"}"#;
        let request: TransferRequest = from_json("request", ok).expect("valid");
        assert_eq!(request.amount.to_string(), "12.34");

        for (bad, hint) in [
            (ok.replace(r#""12.34""#, "12.34"), "string"),
            (ok.replace("12.34", "1e3"), "amount"),
            (ok.replace("12.34", "12,34"), "amount"),
            (ok.replace("to_account_id", "to_acount_id"), "unknown field"),
        ] {
            let error = from_json::<TransferRequest>("request", &bad).expect_err(&bad);
            assert_eq!((error.problem_type().as_str(), error.status()), (problem_types::INVALID_REQUEST, 400));
            let detail = error.detail().expect("detail");
            assert!(detail.starts_with("request: ") && detail.contains(hint), "{detail}");
            assert!(!detail.contains(" at line "), "{detail}");
        }
    }

    #[test]
    fn page_options_are_optional_and_strict() {
        assert_eq!(from_json::<PageOptions>("options", "{}").expect("empty"), PageOptions::default());
        let options: PageOptions = from_json("options", r#"{"limit":5,"cursor":"c"}"#).expect("full");
        assert_eq!((options.limit, options.cursor.as_deref()), (Some(5), Some("c")));
        assert!(from_json::<PageOptions>("options", r#"{"limit":-1}"#).is_err());
        assert!(from_json::<PageOptions>("options", r#"{"size":5}"#).is_err());
    }

    #[test]
    fn ids_must_be_uuids() {
        let id = parse_id("accountId", "018f2b6e-0000-7000-8000-000000000001").expect("uuid");
        assert_eq!(id.to_string(), "018f2b6e-0000-7000-8000-000000000001");
        let error = parse_id("accountId", "../admin").expect_err("not a uuid");
        assert_eq!(error.status(), 400);
        assert!(error.detail().expect("detail").contains("accountId"));
    }
}
