//! The demo seed of `serve --demo`: two customers with funded USD accounts and an operator,
//! idempotent across restarts, and the banner that prints their credentials.

use std::sync::Arc;

use bank_core::account::AccountKind;
use bank_core::accounts::{AccountWithBalance, AccountsService, Viewer};
use bank_core::approvals::DepositPolicy;
use bank_core::deposits::{Actor, DepositsService};
use bank_core::ids::{AccountId, CustomerId};
use bank_core::money::{Currency, Money};
use bank_core::users::{Email, Role};

use crate::auth::issuer::TokenIssuer;
use crate::state::Backend;

use super::RunError;

/// A demo user as `serve --demo` prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct DemoUser {
    /// Login email.
    pub email: &'static str,
    /// Login password (a published demo password).
    pub password: &'static str,
    /// Role.
    pub role: Role,
    /// The user (and customer) id.
    pub user_id: CustomerId,
    /// The TOTP secret to enrol an authenticator with (base32).
    pub totp_secret: String,
    /// The user's USD account (customers only).
    pub account_id: Option<AccountId>,
}

impl std::fmt::Debug for DemoUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoUser").field("email", &self.email).field("user_id", &self.user_id).finish_non_exhaustive()
    }
}

/// The demo users: `(email, password, role)`. Their passwords are public: demo data only.
pub const DEMO_USERS: [(&str, &str, Role); 3] = [
    ("alice@demo.bank", "alice-demo-password", Role::Customer),
    ("bob@demo.bank", "bob-demo-password", Role::Customer),
    ("operator@demo.bank", "operator-demo-password", Role::Operator),
];
/// What each demo customer is credited once.
pub const DEMO_DEPOSIT: &str = "1000.00";

/// Seeds the demo through the same services the API runs (idempotent: users found by email are
/// reused, the account is opened once, and the deposit is an operator's deposit under a key
/// derived from the account, so a restart credits nothing more; an account that already holds
/// money — a data directory seeded by an earlier version — is not credited again). The deposit
/// follows the default four-eyes threshold, which it is below.
pub async fn seed_demo(backend: &Backend, issuer: &TokenIssuer) -> Result<Vec<DemoUser>, RunError> {
    let users = backend.users.clone().ok_or_else(|| RunError::Refused("the demo needs built-in users".into()))?;
    let mut seeded = Vec::with_capacity(DEMO_USERS.len());
    for (email, password, role) in DEMO_USERS {
        let user = match users.by_email(&Email::parse(email)?).await? {
            Some(user) => user,
            None => {
                issuer.create_user(email, password, role).await?;
                users.by_email(&Email::parse(email)?).await?.ok_or_else(|| {
                    RunError::Storage(bank_core::Error::Storage {
                        message: format!("demo user {email} vanished after creation"),
                        retryable: true,
                    })
                })?
            }
        };
        seeded.push(DemoUser {
            email,
            password,
            role,
            user_id: user.id,
            totp_secret: user.totp_secret.clone(),
            account_id: None,
        });
    }
    let operator = seeded
        .iter()
        .find(|u| u.role == Role::Operator)
        .map(|u| u.user_id)
        .ok_or_else(|| RunError::Refused("the demo needs an operator".into()))?;
    for user in seeded.iter_mut().filter(|u| u.role == Role::Customer) {
        user.account_id = Some(seed_demo_account(backend, operator, user.user_id, user.email).await?);
    }
    Ok(seeded)
}

async fn seed_demo_account(
    backend: &Backend,
    operator: CustomerId,
    owner: CustomerId,
    email: &str,
) -> Result<AccountId, RunError> {
    let accounts = AccountsService::new(backend.ledger.clone());
    let customer = Viewer::customer(owner);
    let existing = accounts.list(&customer).await?;
    let usd = |a: &&AccountWithBalance| a.account.currency == Currency::Usd && a.account.kind == AccountKind::Customer;
    let account = match existing.iter().find(usd) {
        Some(found) => found.clone(),
        None => {
            let name = format!("{} checking", email.split('@').next().unwrap_or(email));
            accounts.open(&customer, name, Currency::Usd).await?
        }
    };
    if account.balance.sequence > 0 {
        return Ok(account.account.id);
    }
    let deposits = DepositsService::new(
        backend.ledger.clone(),
        backend.deposit_requests.clone(),
        backend.audit.clone(),
        backend.system.clone(),
        DepositPolicy::default(),
        Arc::clone(&backend.payments.clock),
    );
    let actor = Actor { user: operator, request_id: None, client_ip: None };
    let key = format!("demo-deposit:{}", account.account.id);
    let money = Money::parse(DEMO_DEPOSIT, Currency::Usd.code())?;
    deposits.deposit(&actor, &key, &account.account, money, "demo deposit".into()).await?;
    Ok(account.account.id)
}

/// The text `serve --demo` prints: credentials, TOTP secrets and a curl session.
pub fn demo_banner(users: &[DemoUser], public_url: &str) -> String {
    let mut text = String::from("Demo data (built-in auth; these passwords are public, demo only):\n");
    for user in users {
        text.push_str(&format!(
            "  {:<20} password {:<24} role {:<9} totp_secret {}{}\n",
            user.email,
            user.password,
            user.role.as_str(),
            user.totp_secret,
            user.account_id.map(|a| format!("  USD account {a}")).unwrap_or_default(),
        ));
    }
    let alice = users.first().map(|u| (u.email, u.password, u.totp_secret.as_str()));
    if let Some((email, password, secret)) = alice {
        text.push_str(&format!(
            "\nTry it (needs curl and jq; `bank-server totp SECRET` prints the current code):\n  TOKEN=$(curl -s -X POST {public_url}{login} \
             -H 'content-type: application/json' \\\n    -d \"{{\\\"email\\\":\\\"{email}\\\",\\\"password\\\":\\\"{password}\\\",\
             \\\"totp_code\\\":\\\"$(cargo run -q -p bank-server -- totp {secret})\\\"}}\" | jq -r .access_token)\n  \
             curl -s {public_url}{accounts} -H \"authorization: Bearer $TOKEN\" | jq\n",
            login = "/v1/auth/login",
            accounts = "/v1/accounts",
        ));
    }
    text
}
