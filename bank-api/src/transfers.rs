//! Transfers (`/v1/transfers`) and operator deposits (`/v1/admin/deposits`).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A payee outside this bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "tsify", derive(tsify::Tsify))]
pub struct ExternalBeneficiary {
    #[cfg_attr(
        feature = "utoipa",
        schema(
            min_length = 1,
            max_length = 140,
            pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
        )
    )]
    pub name: String,
    /// An IBAN with a valid check digit (spaces allowed; the check digit itself cannot be stated
    /// as a pattern: a wrong one answers 400).
    #[cfg_attr(
        feature = "utoipa",
        schema(min_length = 15, max_length = 42, pattern = "^[A-Za-z]{2}[0-9]{2}[A-Za-z0-9 ]{11,38}$")
    )]
    pub iban: String,
}

/// `POST /v1/transfers` (with an `Idempotency-Key` header).
///
/// Exactly one of `to_account_id` (an account of this bank) and `to_external` must be set; the
/// constructors [`TransferRequest::internal`] and [`TransferRequest::external`] guarantee it, and
/// [`TransferRequest::has_one_destination`] checks a request built otherwise. `None` is left out of
/// the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "tsify", derive(tsify::Tsify))]
pub struct TransferRequest {
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub from_account_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub to_account_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_external: Option<ExternalBeneficiary>,
    /// A positive plain decimal string with at most the currency's decimals.
    #[serde(with = "crate::amount_str")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "12.34", pattern = r"^([1-9][0-9]{0,11}(\.[0-9]{1,3})?|0\.([1-9][0-9]{0,2}|0[1-9][0-9]?|00[1-9]))$"))]
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub amount: Decimal,
    /// ISO 4217 code; must be the currency of both accounts.
    pub currency: String,
    #[cfg_attr(feature = "utoipa", schema(max_length = 140, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"))]
    pub reference: String,
}

impl TransferRequest {
    /// A transfer to another account of this bank.
    pub fn internal(
        from_account_id: Uuid,
        to_account_id: Uuid,
        amount: Decimal,
        currency: impl Into<String>,
        reference: impl Into<String>,
    ) -> Self {
        Self {
            from_account_id,
            to_account_id: Some(to_account_id),
            to_external: None,
            amount,
            currency: currency.into(),
            reference: reference.into(),
        }
    }

    /// A transfer to a payee outside this bank.
    pub fn external(
        from_account_id: Uuid,
        to: ExternalBeneficiary,
        amount: Decimal,
        currency: impl Into<String>,
        reference: impl Into<String>,
    ) -> Self {
        Self {
            from_account_id,
            to_account_id: None,
            to_external: Some(to),
            amount,
            currency: currency.into(),
            reference: reference.into(),
        }
    }

    /// Whether exactly one destination is set, as the server requires.
    pub fn has_one_destination(&self) -> bool {
        self.to_account_id.is_some() != self.to_external.is_some()
    }
}

/// Life cycle: `accepted` → `processing` → `settled` | `failed`, with `pending` while the rail is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "tsify", derive(tsify::Tsify))]
pub enum TransferStatus {
    Accepted,
    Processing,
    Pending,
    Settled,
    Failed,
}

impl TransferStatus {
    /// Whether the transfer can no longer change.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Settled | Self::Failed)
    }
}

/// A transfer as the server reports it (`POST /v1/transfers`, `GET /v1/transfers/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "tsify", derive(tsify::Tsify))]
pub struct Transfer {
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub id: Uuid,
    pub status: TransferStatus,
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub from_account_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub to_account_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_external: Option<ExternalBeneficiary>,
    #[serde(with = "crate::amount_str")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "12.34"))]
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub amount: Decimal,
    pub currency: String,
    pub reference: String,
    /// Set when `status` is `failed`.
    pub failure_reason: Option<String>,
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub created_at: DateTime<Utc>,
    #[cfg_attr(feature = "tsify", tsify(type = "string"))]
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/admin/deposits` (operator, with an `Idempotency-Key` header): credit a customer account
/// from the bank's settlement account, in the account's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct DepositRequest {
    pub account_id: Uuid,
    /// A positive plain decimal string with at most the account currency's decimals.
    #[serde(with = "crate::amount_str")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "100.00", pattern = r"^([1-9][0-9]{0,11}(\.[0-9]{1,3})?|0\.([1-9][0-9]{0,2}|0[1-9][0-9]?|00[1-9]))$"))]
    pub amount: Decimal,
    #[cfg_attr(feature = "utoipa", schema(max_length = 140, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"))]
    pub reference: String,
}

/// A posted deposit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Deposit {
    pub entry_id: Uuid,
    pub account_id: Uuid,
    #[serde(with = "crate::amount_str")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "100.00"))]
    pub amount: Decimal,
    pub currency: String,
    pub reference: String,
    pub posted_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{at, dec};
    use serde_json::json;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn internal_transfer_request_omits_external_and_keeps_decimal_string() {
        let request = TransferRequest::internal(id(1), id(2), dec("12.30"), "USD", "rent");
        assert!(request.has_one_destination());
        let value = serde_json::to_value(&request).expect("serialize");
        assert_eq!(
            value,
            json!({
                "from_account_id": id(1), "to_account_id": id(2), "amount": "12.30",
                "currency": "USD", "reference": "rent"
            })
        );
        assert_eq!(serde_json::from_value::<TransferRequest>(value).expect("deserialize"), request);
    }

    #[test]
    fn external_transfer_request_omits_to_account_id() {
        let to = ExternalBeneficiary { name: "Bob".to_owned(), iban: "DE89370400440532013000".to_owned() };
        let request = TransferRequest::external(id(1), to, dec("5"), "EUR", "gift");
        let value = serde_json::to_value(&request).expect("serialize");
        assert!(value.get("to_account_id").is_none(), "{value}");
        assert_eq!(value["to_external"], json!({"name": "Bob", "iban": "DE89370400440532013000"}));
        assert_eq!(value["amount"], json!("5"));
        assert_eq!(serde_json::from_value::<TransferRequest>(value).expect("deserialize"), request);
    }

    #[test]
    fn transfer_request_refuses_unknown_fields_and_numbers() {
        let base = json!({"from_account_id": id(1), "to_account_id": id(2), "amount": "1.00", "currency": "USD", "reference": "r"});
        assert!(serde_json::from_value::<TransferRequest>(base.clone()).is_ok());

        let mut unknown = base.clone();
        unknown["to_acount_id"] = json!(id(3));
        assert!(serde_json::from_value::<TransferRequest>(unknown).is_err());

        let mut number = base;
        number["amount"] = json!(1.1);
        assert!(serde_json::from_value::<TransferRequest>(number).is_err());

        let to = ExternalBeneficiary { name: "B".to_owned(), iban: "X".to_owned() };
        let mut both = TransferRequest::external(id(1), to, dec("1"), "USD", "r");
        both.to_account_id = Some(id(2));
        assert!(!both.has_one_destination());
    }

    /// The inputs of issue 19 and the rest of what the grammar refuses: every request with one
    /// fails to deserialize, with an error that names the `amount` field.
    #[test]
    fn request_amounts_follow_the_grammar() {
        let refused = [
            "1e3",
            "1E3",
            "1_0",
            "1e-2",
            "0.1e1",
            "+1.00",
            ".5",
            "1.",
            "00001.00",
            " 1",
            "1 ",
            "",
            "-",
            "0.00999999999999999999999999999999",
            "12.340000000000000000000000000009",
            "1.0000000000000000000000000000001",
            "1.0000",
            "12345678901234.00",
            "0x10",
            "NaN",
            "1,00",
            "-0",
            "-0.00",
        ];
        for text in refused {
            let transfer = json!({"from_account_id": id(1), "to_account_id": id(2), "amount": text, "currency": "USD", "reference": "r"});
            let error = serde_json::from_value::<TransferRequest>(transfer).expect_err(text).to_string();
            assert!(error.starts_with(crate::INVALID_AMOUNT_PREFIX) && error.contains("`amount`"), "{text:?}: {error}");
            let deposit = json!({"account_id": id(1), "amount": text, "reference": "r"});
            assert!(serde_json::from_value::<DepositRequest>(deposit).is_err(), "{text:?}");
        }
        for text in ["1", "0", "-1", "1.5", "12.34", "1.000", "1000000000000.00", "0.001"] {
            let deposit = json!({"account_id": id(1), "amount": text, "reference": "r"});
            let request = serde_json::from_value::<DepositRequest>(deposit).expect(text);
            // The decimals are kept as written: the server checks them against the currency.
            assert_eq!(request.amount.to_string(), text);
            assert_eq!(serde_json::to_value(&request).expect("serialize")["amount"], json!(text));
        }
    }

    proptest::proptest! {
        /// Whatever the text, the wire type agrees with bank-core's grammar (the same file) and an
        /// accepted text round-trips byte for byte.
        #[test]
        fn wire_amounts_round_trip_byte_for_byte(text in "[-+ ._e0-9]{0,16}|-?[1-9][0-9]{0,12}(\\.[0-9]{1,4})?") {
            let deposit = json!({"account_id": id(1), "amount": text, "reference": "r"});
            let grammar = crate::amount_text::parse_amount_text(&text, crate::amount_text::AMOUNT_DECIMALS_MAX);
            match serde_json::from_value::<DepositRequest>(deposit) {
                Ok(request) => {
                    proptest::prop_assert!(grammar.is_ok());
                    proptest::prop_assert_eq!(serde_json::to_value(&request).expect("serialize")["amount"].clone(), json!(text));
                }
                Err(_) => proptest::prop_assert!(grammar.is_err()),
            }
        }
    }

    #[test]
    fn transfer_round_trips_with_exact_field_names() {
        let transfer = Transfer {
            id: id(9),
            status: TransferStatus::Failed,
            from_account_id: id(1),
            to_account_id: Some(id(2)),
            to_external: None,
            amount: dec("0.01"),
            currency: "USD".to_owned(),
            reference: "r".to_owned(),
            failure_reason: Some("rejected by rail".to_owned()),
            created_at: at(),
            updated_at: at(),
        };
        let value = serde_json::to_value(&transfer).expect("serialize");
        assert_eq!(
            value,
            json!({
                "id": id(9), "status": "failed", "from_account_id": id(1), "to_account_id": id(2),
                "amount": "0.01", "currency": "USD", "reference": "r", "failure_reason": "rejected by rail",
                "created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05Z"
            })
        );
        assert_eq!(serde_json::from_value::<Transfer>(value).expect("deserialize"), transfer);
        assert!(TransferStatus::Failed.is_final() && !TransferStatus::Pending.is_final());
        for (status, text) in [
            (TransferStatus::Accepted, "accepted"),
            (TransferStatus::Processing, "processing"),
            (TransferStatus::Pending, "pending"),
            (TransferStatus::Settled, "settled"),
        ] {
            assert_eq!(serde_json::to_value(status).expect("serialize"), json!(text));
        }
    }

    #[test]
    fn deposit_round_trips_and_request_refuses_unknown_fields() {
        let request = DepositRequest { account_id: id(1), amount: dec("100.00"), reference: "cash".to_owned() };
        let value = serde_json::to_value(&request).expect("serialize");
        assert_eq!(value, json!({"account_id": id(1), "amount": "100.00", "reference": "cash"}));
        assert_eq!(serde_json::from_value::<DepositRequest>(value.clone()).expect("deserialize"), request);
        let mut unknown = value;
        unknown["currency"] = json!("USD");
        assert!(serde_json::from_value::<DepositRequest>(unknown).is_err());

        let deposit = Deposit {
            entry_id: id(5),
            account_id: id(1),
            amount: dec("100.00"),
            currency: "USD".to_owned(),
            reference: "cash".to_owned(),
            posted_at: at(),
        };
        let value = serde_json::to_value(&deposit).expect("serialize");
        assert_eq!(
            value,
            json!({
                "entry_id": id(5), "account_id": id(1), "amount": "100.00", "currency": "USD",
                "reference": "cash", "posted_at": "2026-01-02T03:04:05Z"
            })
        );
        assert_eq!(serde_json::from_value::<Deposit>(value).expect("deserialize"), deposit);
    }
}
