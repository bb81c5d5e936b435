//! bank-core ↔ bank-api conversions. Parsing into bank-core types applies bank-core's rules
//! (amounts are checked for the currency, never rounded); nothing here decides anything else.

use bank_api as api;
use bank_core::account::{Account, AccountStatus, Balance};
use bank_core::ids::{AccountId, TransferId};
use bank_core::ledger::{HistoryItem, Side};
use bank_core::money::{Amount, Currency, Money, checked_sub, in_minor_units};
use bank_core::transfer::{Beneficiary, BeneficiaryAccount, Destination, Transfer, TransferRequest, TransferStatus};

use super::problem::ApiError;

/// An account id from a path segment or a body; anything malformed reads as not found.
pub(crate) fn account_id(text: &str) -> Result<AccountId, ApiError> {
    text.parse().map_err(|_| ApiError::not_found("account"))
}

pub(crate) fn transfer_id(text: &str) -> Result<TransferId, ApiError> {
    text.parse().map_err(|_| ApiError::not_found("transfer"))
}

pub(crate) fn currency(code: &str) -> Result<Currency, ApiError> {
    code.parse().map_err(ApiError::from_core)
}

pub(crate) fn account(account: &Account, balance: &Balance) -> Result<api::Account, ApiError> {
    let currency = account.currency;
    // An unlimited (bank-internal) account has no bound: show what it holds net of holds.
    let available = match balance.available {
        Some(available) => available,
        None => checked_sub(balance.posted, balance.pending)?,
    };
    Ok(api::Account {
        id: *account.id.as_uuid(),
        name: account.name.clone(),
        currency: currency.code().to_owned(),
        status: match account.status {
            AccountStatus::Open => api::AccountStatus::Open,
            AccountStatus::Frozen => api::AccountStatus::Frozen,
            AccountStatus::Closed => api::AccountStatus::Closed,
        },
        posted: in_minor_units(balance.posted, currency),
        pending: in_minor_units(balance.pending, currency),
        available: in_minor_units(available, currency),
        created_at: account.created_at,
    })
}

pub(crate) fn history_entry(item: &HistoryItem) -> api::HistoryEntry {
    let currency = item.money.currency;
    api::HistoryEntry {
        entry_id: *item.entry_id.as_uuid(),
        sequence: item.sequence,
        transfer_id: Some(*item.key.transfer_id.as_uuid()),
        direction: match item.direction {
            Side::Debit => api::Direction::Debit,
            Side::Credit => api::Direction::Credit,
        },
        amount: in_minor_units(item.money.value(), currency),
        balance_after: in_minor_units(item.balance_after, currency),
        reference: item.reference.clone(),
        posted_at: item.posted_at,
    }
}

/// A wire transfer request as bank-core's: exactly one destination, a known currency and an
/// amount valid for it.
pub(crate) fn transfer_request(request: api::TransferRequest) -> Result<TransferRequest, ApiError> {
    let destination = match (request.to_account_id, request.to_external) {
        (Some(to), None) => {
            Destination::Internal { account_id: AccountId::from_uuid(to).map_err(ApiError::from_core)? }
        }
        (None, Some(external)) => Destination::External {
            beneficiary: Beneficiary::iban(external.name, &external.iban).map_err(ApiError::from_core)?,
        },
        _ => return Err(ApiError::invalid("exactly one of to_account_id and to_external must be set")),
    };
    let currency = currency(&request.currency)?;
    let money = money_of(request.amount, currency)?;
    Ok(TransferRequest {
        id: None,
        from_account_id: AccountId::from_uuid(request.from_account_id).map_err(ApiError::from_core)?,
        destination,
        money,
        reference: request.reference,
    })
}

/// A wire amount checked against `currency` by bank-core's amount grammar, from its text: the wire
/// `Decimal` keeps the decimals as written, so `"1.000"` is refused for USD rather than read as
/// `1.00`. The detail names the field.
pub(crate) fn money_of(amount: rust_decimal::Decimal, currency: Currency) -> Result<Money, ApiError> {
    let amount = Amount::parse(&amount.to_string(), currency)
        .map_err(|error| ApiError::invalid(format!("`amount` is invalid: {error}")))?;
    Ok(Money { amount, currency })
}

pub(crate) fn transfer(transfer: &Transfer) -> api::Transfer {
    let (to_account_id, to_external) = match &transfer.destination {
        Destination::Internal { account_id } => (Some(*account_id.as_uuid()), None),
        Destination::External { beneficiary } => {
            let iban = match &beneficiary.account {
                BeneficiaryAccount::Iban { iban } => iban.clone(),
                // The v1 API only creates IBAN payees; a US account (made by other means) is shown
                // by its account number, the closest the wire type has.
                BeneficiaryAccount::Us { account_number, .. } => account_number.clone(),
            };
            (None, Some(api::ExternalBeneficiary { name: beneficiary.name.clone(), iban }))
        }
    };
    let currency = transfer.money.currency;
    api::Transfer {
        id: *transfer.id.as_uuid(),
        status: match transfer.status {
            TransferStatus::Accepted => api::TransferStatus::Accepted,
            TransferStatus::Processing => api::TransferStatus::Processing,
            TransferStatus::Pending => api::TransferStatus::Pending,
            TransferStatus::Settled => api::TransferStatus::Settled,
            TransferStatus::Failed => api::TransferStatus::Failed,
        },
        from_account_id: *transfer.from_account_id.as_uuid(),
        to_account_id,
        to_external,
        amount: in_minor_units(transfer.money.value(), currency),
        currency: currency.code().to_owned(),
        reference: transfer.reference.clone(),
        failure_reason: transfer.failure_reason.as_ref().map(|reason| reason.detail.clone()),
        created_at: transfer.created_at,
        updated_at: transfer.updated_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// The HTTP entry point (bank-api's wire type, then `money_of`) accepts exactly what
        /// bank-core's `Amount::parse` accepts for the account's currency, with the same value:
        /// a text the grammar refuses is refused here too, and nothing is rounded on the way.
        #[test]
        fn the_wire_and_the_server_agree_with_bank_core(
            text in "[-+ ._eE0-9]{0,18}|-?(0|[1-9][0-9]{0,13})(\\.[0-9]{0,5})?|0\\.0{0,30}[0-9]{0,3}",
            currency in 0..Currency::ALL.len(),
        ) {
            let currency = Currency::ALL[currency];
            let core = Amount::parse(&text, currency);
            let body = serde_json::json!({"account_id": Uuid::nil(), "amount": text, "reference": "r"});
            match serde_json::from_value::<api::DepositRequest>(body) {
                Ok(request) => {
                    let server = money_of(request.amount, currency).map(|money| money.amount);
                    proptest::prop_assert_eq!(server.ok(), core.ok(), "{:?} {}", text, currency);
                }
                Err(_) => proptest::prop_assert!(core.is_err(), "{:?} refused on the wire, accepted by bank-core", text),
            }
        }
    }
}
