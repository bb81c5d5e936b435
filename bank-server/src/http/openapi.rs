//! The OpenAPI document, built from the handlers' `#[utoipa::path]` and bank-api's schemas, then
//! completed by [`state_the_rules`] with what the derive cannot say but the server enforces: the
//! currency enum, exactly one destination of a transfer, the `Idempotency-Key` pattern, `limit`
//! 1–100, uuid formats of ids passed as text, the answers every route can give because of the
//! layers in front of it (401, 413, 415, 429, 503), and links from created resources to their
//! reads.

use bank_api::paths;
use bank_core::idempotency::IDEMPOTENCY_KEY_LEN_MAX;
use bank_core::money::Currency;
use serde_json::{Value, json};
use utoipa::Modify;
use utoipa::OpenApi as _;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::routes::{accounts, admin, auth, ops, statements, transfers};

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// The pattern the document states is the one checked with hypothesis; and the cursors the
    /// server writes start with the prefixes it names.
    #[test]
    fn cursor_patterns() {
        assert_eq!(
            super::cursor_pattern("aDEu"),
            "^aDEu(((M[DTjz]|N[DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]){0,5}((M[AQgw]|N[AQgw]|O[AQ])|(M[DTjz]|N[DTjz]|O[DT])[AEIMQUYcgk])|((M[DTjz]|N[DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]){1,6})$"
        );
        assert_eq!(URL_SAFE_NO_PAD.encode("h1."), "aDEu");
        assert_eq!(super::cursor_prefix(), "YzEu");
        // Every cursor the server writes starts with the prefix the document states.
        assert!(bank_core::page::Cursor { before: 42 }.to_string().starts_with(&super::cursor_prefix()));
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Bank API", version = "1", description = "The bank's HTTP API (v1). Amounts are decimal strings; errors are RFC 9457 problems."),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout, auth::jwks,
        accounts::open, accounts::list, accounts::get_one, accounts::transactions,
        transfers::create, transfers::list, transfers::get_one,
        admin::deposit, admin::pending_deposits, admin::deposit_request, admin::approve_deposit, admin::audit,
        statements::list, statements::download, statements::run, statements::file,
        admin::audit_checkpoint, admin::audit_proof, admin::audit_verify, admin::audit_key,
        ops::live, ops::ready, ops::metrics, ops::openapi_json,
    ),
    components(schemas(
        bank_api::Problem, bank_api::Health,
        bank_api::RegisterRequest, bank_api::Registered, bank_api::LoginRequest, bank_api::Tokens,
        bank_api::RefreshRequest, bank_api::LogoutRequest,
        bank_api::OpenAccountRequest, bank_api::Account, bank_api::AccountStatus, bank_api::HistoryEntry,
        bank_api::Direction,
        bank_api::TransferRequest, bank_api::Transfer, bank_api::TransferStatus, bank_api::ExternalBeneficiary,
        bank_api::DepositRequest, bank_api::Deposit, bank_api::PendingDeposit, bank_api::PendingDepositStatus,
        bank_api::AuditEntry, bank_api::AuditOutcome,
        bank_api::StatementSummary, bank_api::StatementLink, bank_api::StatementRun,
        bank_api::AuditEntry, bank_api::AuditOutcome, bank_api::AuditProof, bank_api::AuditVerification,
    )),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The OpenAPI document of every route [`super::router`] serves, as JSON (utoipa's typed model
/// has no place for some of what [`state_the_rules`] writes, such as a schema's `oneOf` beside its
/// properties).
pub fn openapi() -> Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|error| {
        // The derived document is plain data; this cannot fail, and if it did the route would
        // answer an empty document rather than crash.
        tracing::error!(%error, "cannot serialize the OpenAPI document");
        Value::Null
    });
    state_the_rules(&mut document);
    document
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// Writes the server's rules the derive cannot state into the document (see the module docs).
fn state_the_rules(document: &mut Value) {
    let codes: Vec<&str> = Currency::ALL.iter().map(|c| c.code()).collect();
    if let Some(schemas) = document.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        for (name, field) in [("OpenAccountRequest", "currency"), ("TransferRequest", "currency")] {
            if let Some(property) = schemas.get_mut(name).and_then(|s| s.pointer_mut(&format!("/properties/{field}"))) {
                property["enum"] = json!(codes);
            }
        }
        if let Some(transfer) = schemas.get_mut("TransferRequest") {
            // Exactly one destination: both or neither answers 400.
            transfer["properties"]["to_account_id"] = json!({"type": "string", "format": "uuid"});
            transfer["properties"]["to_external"] = json!({"$ref": "#/components/schemas/ExternalBeneficiary"});
            transfer["oneOf"] = json!([{"required": ["to_account_id"]}, {"required": ["to_external"]}]);
            transfer["description"] =
                json!("Exactly one of `to_account_id` (an account of this bank) and `to_external` must be set.");
        }
        for (name, field) in [
            ("Account", "posted"),
            ("Account", "pending"),
            ("Account", "available"),
            ("HistoryEntry", "amount"),
            ("HistoryEntry", "balance_after"),
            ("Transfer", "amount"),
            ("Deposit", "amount"),
            ("PendingDeposit", "amount"),
        ] {
            if let Some(property) = schemas.get_mut(name).and_then(|s| s.pointer_mut(&format!("/properties/{field}"))) {
                property["pattern"] = json!(bank_api::patterns::AMOUNT);
            }
        }
    }
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        let Some(operations) = item.as_object_mut() else { continue };
        for (_method, operation) in operations.iter_mut() {
            state_operation_rules(path, operation);
        }
    }
    // A file's bytes: binary, not the array of integers the derive writes for `Vec<u8>`.
    if let Some(schema) = paths_pointer(paths, "/~1files~1{key}/get/responses/200/content/application~1pdf/schema") {
        *schema = json!({"type": "string", "format": "binary"});
    }
    let link = |operation_id: &str| json!({"operationId": operation_id, "parameters": {"id": "$response.body#/id"}});
    for (pointer, name, operation_id) in [
        ("/~1v1~1accounts/post/responses/201", "GetAccount", "get_account"),
        ("/~1v1~1transfers/post/responses/202", "GetTransfer", "get_transfer"),
        ("/~1v1~1admin~1deposits/post/responses/202", "GetDepositRequest", "deposit_request"),
    ] {
        if let Some(response) = paths_pointer(paths, pointer) {
            response["links"] = json!({ name: link(operation_id) });
        }
    }
}

fn paths_pointer<'a>(paths: &'a mut serde_json::Map<String, Value>, pointer: &str) -> Option<&'a mut Value> {
    let (path, rest) = pointer.trim_start_matches('/').split_once('/')?;
    let path = path.replace("~1", "/").replace("~0", "~");
    paths.get_mut(&path)?.pointer_mut(&format!("/{rest}"))
}

/// The base64url of the cursors' 3-byte prefix ([`bank_core::page::CURSOR_PREFIX`], one for every
/// list: `c1.` → `YzEu`).
fn cursor_prefix() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bank_core::page::CURSOR_PREFIX)
}

/// The pattern of a cursor: `prefix` is the base64url of the 3-byte prefix (`h1.` → `aDEu`,
/// `c1.` → `YzEu`), then base64url of 1 to 18 ASCII digits: each full group of 3 digits is 4
/// characters, the last 1 or 2 digits 2 or 3 (checked against every digit string, and every string
/// the pattern admits against the decoder, with Python's hypothesis).
fn cursor_pattern(prefix: &str) -> String {
    const FIRST_TWO: &str = "(M[DTjz]|N[DTjz]|O[DT])";
    let three = format!("({FIRST_TWO}[AEIMQUYcgk][w-z0-5])");
    let one = "(M[AQgw]|N[AQgw]|O[AQ])";
    let two = format!("{FIRST_TWO}[AEIMQUYcgk]");
    format!("^{prefix}({three}{{0,5}}({one}|{two})|{three}{{1,6}})$")
}

/// The answers and parameter rules of one operation.
fn state_operation_rules(path: &str, operation: &mut Value) {
    let exempt_from_rate_limit = path.starts_with("/health/") || path == paths::METRICS;
    let secured = operation.get("security").is_some();
    let has_body = operation.get("requestBody").is_some();
    if let Some(parameters) = operation.get_mut("parameters").and_then(Value::as_array_mut) {
        for parameter in parameters.iter_mut() {
            let name = parameter["name"].as_str().unwrap_or_default().to_owned();
            let schema = &mut parameter["schema"];
            match name.as_str() {
                "Idempotency-Key" => {
                    schema["pattern"] = json!(bank_api::patterns::IDEMPOTENCY_KEY);
                    schema["minLength"] = json!(1);
                    schema["maxLength"] = json!(IDEMPOTENCY_KEY_LEN_MAX);
                }
                "limit" => {
                    schema["minimum"] = json!(1);
                    schema["maximum"] = json!(bank_api::PAGE_LIMIT_MAX);
                }
                "account_id" | "id" => schema["format"] = json!("uuid"),
                // The opaque cursors are base64url (no padding) of a prefix and a decimal
                // sequence number; the pattern admits exactly those (and at most 18 digits).
                "cursor" => schema["pattern"] = json!(cursor_pattern(&cursor_prefix())),
                _ => {}
            }
        }
    }
    let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { return };
    let mut add = |status: &str, description: &str| {
        responses.entry(status.to_owned()).or_insert_with(|| problem_response(description));
    };
    if secured {
        add("401", "Missing, invalid or expired access token");
    }
    if has_body {
        add("400", "Malformed body or invalid field");
        add("413", "Body larger than 16 KiB");
        add("415", "Body not sent as application/json");
    }
    if !exempt_from_rate_limit {
        add("414", "Path and query longer than 8 KiB");
        add("429", "Rate limited; see Retry-After");
        add("503", "Timeout or backend unavailable; see Retry-After");
    }
}
