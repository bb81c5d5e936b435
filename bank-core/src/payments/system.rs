//! The bank's own accounts the pipeline books against, with stable ids so every process (and
//! every restart) finds the same ones.

use rustc_hash::FxHashMap;

use crate::account::{AccountKind, NewAccount};
use crate::error::{Error, Result};
use crate::ids::{AccountId, CustomerId};
use crate::money::Currency;
use crate::ports::LedgerStore;

/// The bank's settlement accounts, per currency.
#[derive(Debug, Clone)]
pub struct SystemAccounts {
    /// The bank's owner id.
    pub owner: CustomerId,
    /// Where deposits come from (money entering the bank).
    deposits: FxHashMap<Currency, AccountId>,
    /// Where external payments go (money leaving through a rail).
    rail: FxHashMap<Currency, AccountId>,
    /// Where money the bank had to book without a customer to debit waits for an operator.
    suspense: FxHashMap<Currency, AccountId>,
}

impl SystemAccounts {
    /// The bank's owner id.
    pub fn bank_owner() -> CustomerId {
        CustomerId::derived(b"bank:system-owner")
    }

    /// Opens (idempotently) the settlement accounts of every currency in `currencies`.
    pub async fn ensure(ledger: &dyn LedgerStore, currencies: &[Currency]) -> Result<Self> {
        let owner = Self::bank_owner();
        let mut deposits = FxHashMap::default();
        let mut rail = FxHashMap::default();
        let mut suspense = FxHashMap::default();
        for &currency in currencies {
            for (kind, map, label) in [
                (AccountKind::Settlement, &mut deposits, "deposits"),
                (AccountKind::Clearing, &mut rail, "rail"),
                (AccountKind::Suspense, &mut suspense, "suspense"),
            ] {
                let name = format!("{currency} {label}");
                let id = AccountId::derived(format!("bank:{label}:{currency}").as_bytes());
                let mut new = NewAccount::internal(owner, name, currency, kind);
                new.id = id;
                ledger.open_account(new).await?;
                map.insert(currency, id);
            }
        }
        Ok(SystemAccounts { owner, deposits, rail, suspense })
    }

    /// The deposits settlement account of `currency`.
    pub fn deposits(&self, currency: Currency) -> Result<AccountId> {
        self.deposits.get(&currency).copied().ok_or_else(|| Error::invalid(format!("{currency} is not enabled")))
    }

    /// The suspense account of `currency`.
    pub fn suspense(&self, currency: Currency) -> Result<AccountId> {
        self.suspense.get(&currency).copied().ok_or_else(|| Error::invalid(format!("{currency} is not enabled")))
    }

    /// The outgoing rail settlement account of `currency`.
    pub fn rail(&self, currency: Currency) -> Result<AccountId> {
        self.rail.get(&currency).copied().ok_or_else(|| Error::invalid(format!("{currency} is not enabled")))
    }
}
