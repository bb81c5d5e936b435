//! The demo seed: two funded customers and an operator, the same after a restart.

use bank_core::users::Role;
use bank_server::run::{self, DEMO_USERS};
use rust_decimal::Decimal;

use crate::config_in;

#[tokio::test]
async fn the_demo_seed_is_idempotent_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(dir.path(), &[]);
    let mut runs = Vec::new();
    for _ in 0..2 {
        // Each run opens the data directory afresh, as a restarted process would.
        let app = bank_server::app::App::build(&config).await.expect("app");
        let (backend, issuer) = (app.backend, app.auth.issuer.expect("built-in issuer"));
        let users = run::seed_demo(&backend, &issuer).await.expect("seed");
        assert_eq!(users.len(), DEMO_USERS.len());
        for user in &users {
            match user.role {
                Role::Customer => {
                    let account = user.account_id.expect("customers get a USD account");
                    assert_eq!(backend.ledger.accounts_of(user.user_id).await.expect("accounts").len(), 1);
                    let balance = backend.ledger.balance(account).await.expect("balance");
                    assert_eq!(balance.posted, Decimal::new(100_000, 2), "{} is credited once", user.email);
                }
                Role::Operator => assert_eq!(user.account_id, None),
            }
        }
        let banner = run::demo_banner(&users, &config.public_url);
        for user in &users {
            assert!(
                banner.contains(user.email) && banner.contains(user.password) && banner.contains(&user.totp_secret)
            );
        }
        assert!(banner.contains("curl") && banner.contains("/v1/auth/login"), "{banner}");
        runs.push(users);
        drop(backend);
    }
    assert_eq!(runs[0], runs[1], "the same users, secrets and accounts after a restart");
}
