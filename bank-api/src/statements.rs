//! Monthly statements: the list of an account's statements, a download link, and the answer of
//! an operator's run.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One stored statement (`GET /v1/accounts/{id}/statements`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "tsify", derive(tsify::Tsify))]
pub struct StatementSummary {
    /// `<account id>_<YYYY-MM>`: what `GET /v1/statements/{id}/download` takes.
    #[cfg_attr(feature = "utoipa", schema(example = "01890a5d-ac96-774b-bcce-b302099a8057_2026-01"))]
    pub id: String,
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub account_id: Uuid,
    /// The month, `YYYY-MM` (UTC).
    #[cfg_attr(feature = "utoipa", schema(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])$", example = "2026-01"))]
    pub period: String,
    /// Hex SHA-256 of the PDF (also in the audit log).
    #[cfg_attr(feature = "utoipa", schema(pattern = "^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// Size of the PDF in bytes.
    pub size: u64,
    /// When it was stored.
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub created_at: DateTime<Utc>,
    /// Until when it cannot be deleted or changed.
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub retain_until: DateTime<Utc>,
}

/// A short-lived link to a statement's PDF (`GET /v1/statements/{id}/download`). Anyone holding
/// the link can read that one PDF until it expires (at most five minutes): treat it as a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "tsify", derive(tsify::Tsify))]
pub struct StatementLink {
    pub url: String,
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub expires_at: DateTime<Utc>,
    /// Hex SHA-256 the downloaded bytes must have.
    pub sha256: String,
}

/// What an operator's run of a period did (`POST /v1/admin/statements`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct StatementRun {
    pub period: String,
    /// Statements made and stored now.
    pub created: u64,
    /// Statements that were already stored (left untouched).
    pub existing: u64,
    /// Accounts without a statement for the period (the bank's own, opened after it, closed).
    pub skipped: u64,
    /// Statements that could not be made (logged; the run can be repeated).
    pub failed: u64,
}
