//! Accounts, their balances and their history (`/v1/accounts/*`).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /v1/accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct OpenAccountRequest {
    /// ISO 4217 code, e.g. `"USD"`.
    pub currency: String,
    #[cfg_attr(
        feature = "utoipa",
        schema(
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
        )
    )]
    pub name: String,
}

/// Whether an account may move money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "tsify", derive(tsify::Tsify))]
pub enum AccountStatus {
    Open,
    Frozen,
    Closed,
}

/// An account and its balances: `available = posted − pending + limit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "tsify", derive(tsify::Tsify))]
pub struct Account {
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub id: Uuid,
    pub name: String,
    pub currency: String,
    pub status: AccountStatus,
    #[serde(with = "crate::decimal_str")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "100.00"))]
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub posted: Decimal,
    /// Sum of the open holds.
    #[serde(with = "crate::decimal_str")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "10.00"))]
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub pending: Decimal,
    #[serde(with = "crate::decimal_str")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "90.00"))]
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub available: Decimal,
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub created_at: DateTime<Utc>,
}

/// Side of a ledger line, seen from the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "tsify", derive(tsify::Tsify))]
pub enum Direction {
    Debit,
    Credit,
}

/// One posted line of an account's history (`GET /v1/accounts/{id}/transactions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "tsify", derive(tsify::Tsify))]
pub struct HistoryEntry {
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub entry_id: Uuid,
    /// Gap-free, increasing per account, starting at 1.
    pub sequence: u64,
    #[cfg_attr(feature = "tsify", tsify(type = "string | null"))]
    pub transfer_id: Option<Uuid>,
    pub direction: Direction,
    /// Always positive; `direction` gives the sign.
    #[serde(with = "crate::amount_str")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "12.34"))]
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub amount: Decimal,
    #[serde(with = "crate::decimal_str")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "87.66"))]
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub balance_after: Decimal,
    pub reference: String,
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub posted_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{at, dec};
    use serde_json::json;

    #[test]
    fn account_round_trips_with_decimal_strings() {
        let account = Account {
            id: Uuid::nil(),
            name: "Main".to_owned(),
            currency: "USD".to_owned(),
            status: AccountStatus::Frozen,
            posted: dec("100.00"),
            pending: dec("12.34"),
            available: dec("87.66"),
            created_at: at(),
        };
        let value = serde_json::to_value(&account).expect("serialize");
        assert_eq!(
            value,
            json!({
                "id": "00000000-0000-0000-0000-000000000000",
                "name": "Main",
                "currency": "USD",
                "status": "frozen",
                "posted": "100.00",
                "pending": "12.34",
                "available": "87.66",
                "created_at": "2026-01-02T03:04:05Z"
            })
        );
        assert_eq!(serde_json::from_value::<Account>(value).expect("deserialize"), account);
    }

    #[test]
    fn amounts_as_json_numbers_are_refused() {
        let value = json!({
            "id": Uuid::nil(), "name": "Main", "currency": "USD", "status": "open",
            "posted": 100.1, "pending": "0", "available": "0", "created_at": "2026-01-02T03:04:05Z"
        });
        assert!(serde_json::from_value::<Account>(value).is_err());
    }

    #[test]
    fn statuses_and_directions_are_lowercase() {
        for (status, text) in
            [(AccountStatus::Open, "open"), (AccountStatus::Frozen, "frozen"), (AccountStatus::Closed, "closed")]
        {
            assert_eq!(serde_json::to_value(status).expect("serialize"), json!(text));
        }
        assert_eq!(serde_json::to_value(Direction::Debit).expect("serialize"), json!("debit"));
        assert_eq!(serde_json::from_value::<Direction>(json!("credit")).expect("deserialize"), Direction::Credit);
        assert!(serde_json::from_value::<AccountStatus>(json!("Open")).is_err());
    }

    #[test]
    fn history_entry_round_trips() {
        let entry = HistoryEntry {
            entry_id: Uuid::nil(),
            sequence: 7,
            transfer_id: None,
            direction: Direction::Debit,
            amount: dec("12.34"),
            balance_after: dec("87.66"),
            reference: "rent".to_owned(),
            posted_at: at(),
        };
        let value = serde_json::to_value(&entry).expect("serialize");
        assert_eq!(
            value,
            json!({
                "entry_id": Uuid::nil(), "sequence": 7, "transfer_id": null, "direction": "debit",
                "amount": "12.34", "balance_after": "87.66", "reference": "rent",
                "posted_at": "2026-01-02T03:04:05Z"
            })
        );
        assert_eq!(serde_json::from_value::<HistoryEntry>(value).expect("deserialize"), entry);
    }

    #[test]
    fn open_account_request_refuses_unknown_fields() {
        let ok = json!({"currency": "USD", "name": "Main"});
        assert!(serde_json::from_value::<OpenAccountRequest>(ok).is_ok());
        let unknown = json!({"currency": "USD", "name": "Main", "limit": "10"});
        assert!(serde_json::from_value::<OpenAccountRequest>(unknown).is_err());
    }
}
