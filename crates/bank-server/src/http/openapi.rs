//! The OpenAPI document, built from the handlers' `#[utoipa::path]` and bank-api's schemas.

use utoipa::Modify;
use utoipa::OpenApi as _;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::routes::{accounts, admin, auth, ops, transfers};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Bank API", version = "1", description = "The bank's HTTP API (v1). Amounts are decimal strings; errors are RFC 9457 problems."),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout, auth::jwks,
        accounts::open, accounts::list, accounts::get_one, accounts::transactions,
        transfers::create, transfers::list, transfers::get_one,
        admin::deposit, admin::pending_deposits, admin::deposit_request, admin::approve_deposit, admin::audit,
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

/// The OpenAPI document of every route [`super::router`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
