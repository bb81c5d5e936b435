//! Route paths of the API, so the server's router and the clients cannot drift apart.
//!
//! Paths with an id are given as a prefix and built by the helper functions; the server's router
//! writes the same path with an `{id}` placeholder.

use uuid::Uuid;

pub const HEALTH_LIVE: &str = "/health/live";
pub const HEALTH_READY: &str = "/health/ready";
pub const METRICS: &str = "/metrics";
pub const OPENAPI: &str = "/openapi.json";
pub const JWKS: &str = "/.well-known/jwks.json";

pub const AUTH_REGISTER: &str = "/v1/auth/register";
pub const AUTH_LOGIN: &str = "/v1/auth/login";
pub const AUTH_REFRESH: &str = "/v1/auth/refresh";
pub const AUTH_LOGOUT: &str = "/v1/auth/logout";

/// `GET` lists the caller's accounts, `POST` opens one.
pub const ACCOUNTS: &str = "/v1/accounts";
/// `POST` submits a transfer (with `Idempotency-Key`), `GET ?account_id=` lists an account's transfers.
pub const TRANSFERS: &str = "/v1/transfers";
/// Operator only: `POST` credits a customer account (with `Idempotency-Key`); above the four-eyes
/// threshold it makes a pending request instead. `GET ?status=pending` lists pending requests.
pub const ADMIN_DEPOSITS: &str = "/v1/admin/deposits";
/// Operator only: `GET ?from_seq=&limit=` pages through the audit log.
pub const ADMIN_AUDIT: &str = "/v1/admin/audit";
pub const ADMIN_AUDIT_CHECKPOINT: &str = "/v1/admin/audit/checkpoint";
pub const ADMIN_AUDIT_PROOF: &str = "/v1/admin/audit/proof";
pub const ADMIN_AUDIT_VERIFY: &str = "/v1/admin/audit/verify";
/// The audit log's verifier key, in the signed-note format (public).
pub const AUDIT_KEY: &str = "/.well-known/audit-key";

/// Operator only: `POST ?period=YYYY-MM[&account_id=]` makes the period's statements.
pub const ADMIN_STATEMENTS: &str = "/v1/admin/statements";
/// `GET /v1/statements/{id}/download`: a short-lived link to a statement's PDF.
pub const STATEMENTS: &str = "/v1/statements";
/// Where the server serves signed links to stored files (statements), outside `/v1`: the link's
/// signature is the credential, not a bearer token.
pub const FILES: &str = "/files";

/// `/v1/accounts/{id}/statements`: an account's statements.
pub fn account_statements(id: Uuid) -> String {
    format!("{ACCOUNTS}/{id}/statements")
}

/// `/v1/statements/{id}/download` (`id` is `<account id>_<YYYY-MM>`).
pub fn statement_download(id: &str) -> String {
    format!("{STATEMENTS}/{id}/download")
}

/// `/v1/admin/deposits/{id}`: a deposit request.
pub fn admin_deposit(id: Uuid) -> String {
    format!("{ADMIN_DEPOSITS}/{id}")
}

/// `/v1/admin/deposits/{id}/approve`: a second operator approves (and posts) a request.
pub fn admin_deposit_approve(id: Uuid) -> String {
    format!("{ADMIN_DEPOSITS}/{id}/approve")
}

/// `/v1/accounts/{id}`
pub fn account(id: Uuid) -> String {
    format!("{ACCOUNTS}/{id}")
}

/// `/v1/accounts/{id}/transactions`
pub fn account_transactions(id: Uuid) -> String {
    format!("{ACCOUNTS}/{id}/transactions")
}

/// `/v1/transfers/{id}`
pub fn transfer(id: Uuid) -> String {
    format!("{TRANSFERS}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_ids() {
        let id = Uuid::nil();
        assert_eq!(account(id), "/v1/accounts/00000000-0000-0000-0000-000000000000");
        assert_eq!(account_transactions(id), "/v1/accounts/00000000-0000-0000-0000-000000000000/transactions");
        assert_eq!(transfer(id), "/v1/transfers/00000000-0000-0000-0000-000000000000");
        assert_eq!(admin_deposit(id), "/v1/admin/deposits/00000000-0000-0000-0000-000000000000");
        assert_eq!(admin_deposit_approve(id), "/v1/admin/deposits/00000000-0000-0000-0000-000000000000/approve");
        assert_eq!(account_statements(id), "/v1/accounts/00000000-0000-0000-0000-000000000000/statements");
        assert_eq!(statement_download("a_2026-01"), "/v1/statements/a_2026-01/download");
    }
}
