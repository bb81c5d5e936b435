//! [`AccountsService`]: what a person may do with accounts — open one, list theirs, view one with
//! its balances, page through its history — with the access rule in one place.
//!
//! The rule: an account is readable by its owner and by operators; to anyone else it does not
//! exist — a foreign account answers exactly like a missing one ([`Error::AccountNotFound`]), so
//! ids cannot be probed. Servers and clients translate; they decide nothing here.

use std::sync::Arc;

use tracing::instrument;

use crate::account::{Account, Balance, NewAccount};
use crate::error::{Error, Result};
use crate::ids::{AccountId, CustomerId};
use crate::ledger::HistoryItem;
use crate::money::Currency;
use crate::page::{Page, PageQuery};
use crate::ports::LedgerStore;

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    /// The person (a customer's id is the owner of their accounts).
    pub user: CustomerId,
    /// Operators may read every account.
    pub operator: bool,
}

impl Viewer {
    /// A customer.
    pub const fn customer(user: CustomerId) -> Self {
        Viewer { user, operator: false }
    }

    /// An operator.
    pub const fn operator(user: CustomerId) -> Self {
        Viewer { user, operator: true }
    }

    /// Whether this viewer may read `account`.
    pub fn may_read(&self, account: &Account) -> bool {
        self.operator || account.owner == self.user
    }
}

/// An account with its balances as of now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountWithBalance {
    /// The account.
    pub account: Account,
    /// Posted, pending and available.
    pub balance: Balance,
}

/// Accounts as people see them.
#[derive(Debug, Clone)]
pub struct AccountsService {
    ledger: Arc<dyn LedgerStore>,
}

impl AccountsService {
    /// A service over `ledger`.
    pub fn new(ledger: Arc<dyn LedgerStore>) -> Self {
        AccountsService { ledger }
    }

    /// Opens a customer account owned by `viewer`. Refused: to an operator (separation of
    /// duties: an operator who owned a customer account could credit it), and past
    /// [`crate::ports::ACCOUNTS_PER_OWNER_MAX`] accounts (`TooManyAccounts`, decided atomically by
    /// the ledger).
    #[instrument(skip_all, fields(owner = %viewer.user))]
    pub async fn open(&self, viewer: &Viewer, name: String, currency: Currency) -> Result<AccountWithBalance> {
        if viewer.operator {
            return Err(Error::SeparationOfDuties("operators may not own customer accounts".into()));
        }
        let account = self.ledger.open_account(NewAccount::customer(viewer.user, name, currency)).await?;
        tracing::info!(account_id = %account.id, "account opened");
        self.with_balance(account).await
    }

    /// The viewer's own accounts, oldest first.
    pub async fn list(&self, viewer: &Viewer) -> Result<Vec<AccountWithBalance>> {
        let accounts = self.ledger.accounts_of(viewer.user).await?;
        let mut out = Vec::with_capacity(accounts.len());
        for account in accounts {
            out.push(self.with_balance(account).await?);
        }
        Ok(out)
    }

    /// Account `id` if the viewer may read it; otherwise `AccountNotFound`, as if it did not exist.
    pub async fn readable(&self, viewer: &Viewer, id: AccountId) -> Result<Account> {
        match self.ledger.account(id).await {
            Ok(account) if viewer.may_read(&account) => Ok(account),
            Ok(_) | Err(Error::AccountNotFound(_)) => Err(Error::AccountNotFound(id)),
            Err(other) => Err(other),
        }
    }

    /// One account with its balances.
    pub async fn view(&self, viewer: &Viewer, id: AccountId) -> Result<AccountWithBalance> {
        let account = self.readable(viewer, id).await?;
        self.with_balance(account).await
    }

    /// One page of an account's posted entries, newest first.
    pub async fn history(&self, viewer: &Viewer, id: AccountId, query: PageQuery) -> Result<Page<HistoryItem>> {
        let account = self.readable(viewer, id).await?;
        self.ledger.history(account.id, query).await
    }

    async fn with_balance(&self, account: Account) -> Result<AccountWithBalance> {
        let balance = self.ledger.balance(account.id).await?;
        Ok(AccountWithBalance { account, balance })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::memory::MemoryLedger;
    use crate::ports::ACCOUNTS_PER_OWNER_MAX;

    #[tokio::test]
    async fn owners_and_operators_read_others_find_nothing() {
        let ledger: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::new(Arc::new(ManualClock::at_epoch())));
        let service = AccountsService::new(ledger);
        let (alice, bob) = (CustomerId::new(), CustomerId::new());
        let opened = service.open(&Viewer::customer(alice), "main".into(), Currency::Usd).await.expect("open");
        assert!(matches!(
            service.open(&Viewer::operator(bob), "mine".into(), Currency::Usd).await,
            Err(Error::SeparationOfDuties(_))
        ));
        let id = opened.account.id;
        assert!(opened.balance.posted.is_zero());
        assert_eq!(service.view(&Viewer::customer(alice), id).await.expect("view").account.id, id);
        assert_eq!(service.view(&Viewer::operator(bob), id).await.expect("operator view").account.id, id);
        for missing in [id, AccountId::new()] {
            let viewer = if missing == id { Viewer::customer(bob) } else { Viewer::customer(alice) };
            assert!(
                matches!(service.view(&viewer, missing).await, Err(Error::AccountNotFound(found)) if found == missing),
                "a foreign account reads exactly like a missing one"
            );
            assert!(matches!(
                service.history(&viewer, missing, PageQuery::first_page()).await,
                Err(Error::AccountNotFound(_))
            ));
        }
        assert_eq!(service.list(&Viewer::customer(alice)).await.expect("list").len(), 1);
        assert!(service.list(&Viewer::customer(bob)).await.expect("list").is_empty());
        assert!(
            service.history(&Viewer::customer(alice), id, PageQuery::first_page()).await.expect("h").items.is_empty()
        );
    }
    #[tokio::test]
    async fn an_owner_holds_at_most_the_cap() {
        let ledger: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::new(Arc::new(ManualClock::at_epoch())));
        let service = AccountsService::new(ledger);
        let owner = Viewer::customer(CustomerId::new());
        for i in 0..ACCOUNTS_PER_OWNER_MAX {
            service.open(&owner, format!("a{i}"), Currency::Usd).await.expect("open");
        }
        assert!(matches!(
            service.open(&owner, "one too many".into(), Currency::Usd).await,
            Err(Error::TooManyAccounts { max: ACCOUNTS_PER_OWNER_MAX })
        ));
        assert_eq!(service.list(&owner).await.expect("list").len(), ACCOUNTS_PER_OWNER_MAX);
    }
}
