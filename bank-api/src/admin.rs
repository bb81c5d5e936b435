//! Operator routes beyond the deposit itself: deposit requests waiting for a second operator
//! (four eyes), the audit log, its inclusion proofs and its verification.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a deposit request is: waiting for a second operator, or approved (and posted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub enum PendingDepositStatus {
    PendingApproval,
    Approved,
}

/// A deposit above the four-eyes threshold (`POST /v1/admin/deposits` answers it with 202;
/// `GET /v1/admin/deposits/{id}` reads it). Once approved it is posted under `id` as its transfer
/// id, exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct PendingDeposit {
    pub id: Uuid,
    pub status: PendingDepositStatus,
    pub account_id: Uuid,
    #[serde(with = "crate::amount_str")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "25000.00"))]
    pub amount: Decimal,
    pub currency: String,
    pub reference: String,
    /// The operator who asked.
    pub requested_by: Uuid,
    pub requested_at: DateTime<Utc>,
    /// The second operator, once approved.
    pub approved_by: Option<Uuid>,
    pub approved_at: Option<DateTime<Utc>>,
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub enum AuditOutcome {
    Done,
    Refused,
}

/// One record of the audit log (`GET /v1/admin/audit`). Never holds a password, token, TOTP code
/// or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// 1, 2, 3, … with no gap.
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// Who acted (a user id, or `cli`).
    pub subject: String,
    /// `deposit.posted`, `deposit.requested`, `deposit.approved`, `account.open`, `user.created`, …
    pub action: String,
    /// `account:<id>`, `deposit-request:<id>`, `user:<id>`.
    pub target: String,
    pub outcome: AuditOutcome,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    /// Hex SHA-256 of the previous record (64 zeros for record 1).
    pub prev_hash: String,
    /// Hex SHA-256 of this record's canonical bytes (which include `prev_hash`).
    pub hash: String,
}

/// `GET /v1/admin/audit/proof?seq=N`: the RFC 6962 inclusion proof (audit path) of record `seq`
/// in the tree of the latest signed checkpoint. To check it: verify `checkpoint` with the key of
/// `/.well-known/audit-key`, take its size and root, compute the leaf hash
/// `SHA-256(0x00 || record_bytes)` and walk `audit_path` (RFC 9162 §2.1.3.2) to that root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct AuditProof {
    /// The record's seq; its leaf index is `seq - 1`.
    pub seq: u64,
    pub leaf_index: u64,
    /// The tree size the proof is for (the checkpoint's).
    pub tree_size: u64,
    pub record: AuditEntry,
    /// Base64 of the record's canonical bytes (encoding version 1).
    pub record_bytes: String,
    /// Base64 of `SHA-256(0x00 || record_bytes)`.
    pub leaf_hash: String,
    /// Base64 hashes of the audit path, leaf to root.
    pub audit_path: Vec<String>,
    /// The signed checkpoint (C2SP signed note, tlog-checkpoint body) the proof leads to.
    pub checkpoint: String,
}

/// `GET /v1/admin/audit/verify`: the verdict on the chain, every checkpoint and every sealed
/// segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct AuditVerification {
    /// Whether every check passed.
    pub ok: bool,
    /// The first seq walked.
    pub from_seq: u64,
    pub records_checked: u64,
    pub checkpoints_checked: u64,
    pub segments_checked: u64,
    /// The first bad record, if any.
    pub first_bad_seq: Option<u64>,
    /// What is wrong with it.
    pub problem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{at, dec};
    use serde_json::json;

    #[test]
    fn pending_deposit_round_trips_with_snake_case_status() {
        let pending = PendingDeposit {
            id: Uuid::nil(),
            status: PendingDepositStatus::PendingApproval,
            account_id: Uuid::nil(),
            amount: dec("25000.00"),
            currency: "USD".into(),
            reference: "cash".into(),
            requested_by: Uuid::nil(),
            requested_at: at(),
            approved_by: None,
            approved_at: None,
        };
        let value = serde_json::to_value(&pending).expect("serialize");
        assert_eq!(value["status"], json!("pending_approval"));
        assert_eq!(value["amount"], json!("25000.00"));
        assert_eq!(serde_json::from_value::<PendingDeposit>(value).expect("deserialize"), pending);
        let entry = AuditEntry {
            seq: 1,
            at: at(),
            subject: "cli".into(),
            action: "user.created".into(),
            target: "user:x".into(),
            outcome: AuditOutcome::Refused,
            request_id: None,
            client_ip: Some("192.0.2.1".into()),
            prev_hash: "0".repeat(64),
            hash: "ab".repeat(32),
        };
        let value = serde_json::to_value(&entry).expect("serialize");
        assert_eq!(value["outcome"], json!("refused"));
        assert_eq!(serde_json::from_value::<AuditEntry>(value).expect("deserialize"), entry);
    }
}
