//! The demo seed of `serve --demo`: two customers with funded USD accounts and an operator,
//! idempotent across restarts, and the banner that prints their credentials.

use bank_core::account::{AccountKind, NewAccount};
use bank_core::ids::{AccountId, CustomerId, TransferId};
use bank_core::ledger::{EntryKey, NewEntry};
use bank_core::money::{Currency, Money};
use bank_core::users::{Email, Role};

use uuid::Uuid;

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

/// Seeds the demo (idempotent: users found by email are reused, the account is opened once and
/// the deposit is posted under a key derived from the account, so a restart credits nothing more).
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
        let account_id = match role {
            Role::Customer => Some(seed_demo_account(backend, user.id, email).await?),
            Role::Operator => None,
        };
        seeded.push(DemoUser {
            email,
            password,
            role,
            user_id: user.id,
            totp_secret: user.totp_secret.clone(),
            account_id,
        });
    }
    Ok(seeded)
}

async fn seed_demo_account(backend: &Backend, owner: CustomerId, email: &str) -> Result<AccountId, RunError> {
    let existing = backend.ledger.accounts_of(owner).await?;
    let account = match existing.into_iter().find(|a| a.currency == Currency::Usd && a.kind == AccountKind::Customer) {
        Some(account) => account,
        None => {
            let id = AccountId::from_uuid(derived_uuid("demo-account", &owner.to_string()))?;
            let name = format!("{} checking", email.split('@').next().unwrap_or(email));
            backend.ledger.open_account(NewAccount { id, ..NewAccount::customer(owner, name, Currency::Usd) }).await?
        }
    };
    let key = EntryKey::new(TransferId::from_uuid(derived_uuid("demo-deposit", &account.id.to_string()))?, 0);
    let money = Money::parse(DEMO_DEPOSIT, Currency::Usd.code())?;
    let deposit = NewEntry::transfer(key, backend.system.deposits(Currency::Usd)?, account.id, money, "demo deposit")?;
    // Posting a used key answers the first entry and moves no money.
    backend.ledger.post(deposit).await?;
    Ok(account.id)
}

/// A UUID v8 fixed by `(purpose, name)`: the same demo seed names the same ids on every start.
fn derived_uuid(purpose: &str, name: &str) -> Uuid {
    bank_core::ids::derived_uuid(format!("bank-server/{purpose}/{name}").as_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        assert_eq!(derived_uuid("a", "x"), derived_uuid("a", "x"));
        assert_ne!(derived_uuid("a", "x"), derived_uuid("b", "x"));
        assert_eq!(derived_uuid("a", "x").get_version_num(), 8);
    }
}
