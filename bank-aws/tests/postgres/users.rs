//! `PgUserStore` against the `UserStore` conformance suite, plus what PostgreSQL adds: times are
//! kept to the microsecond, and what `create` answers is what later reads return.

use std::sync::Arc;

use async_trait::async_trait;
use bank_aws::postgres::PgDb;
use bank_aws::postgres::testing::test_db;
use bank_aws::postgres::users::PgUserStore;
use bank_core::clock::{Clock, ManualClock};
use bank_core::testkit::users::{UsersHarness, new_user};
use bank_core::users::UserStore;
use chrono::TimeDelta;

/// Builds each case's store on the case's own fresh schema.
struct Harness(PgDb);

#[async_trait]
impl UsersHarness for Harness {
    async fn store(&self, clock: Arc<dyn Clock>) -> Arc<dyn UserStore> {
        Arc::new(PgUserStore::new(&self.0, clock))
    }
}

bank_core::users_conformance_tests!(match test_db().await {
    Some(db) => Harness(db),
    None => return,
});

/// A creation time finer than a microsecond comes back from `create` as stored, and every read
/// agrees with it.
#[tokio::test]
async fn create_answers_the_user_as_stored() {
    let Some(db) = test_db().await else { return };
    let clock = ManualClock::at_epoch();
    clock.advance(TimeDelta::days(20_000) + TimeDelta::nanoseconds(123_456_789));
    let store = PgUserStore::new(&db, Arc::new(clock.clone()));
    let user = new_user("nano@example.com", clock.now());
    let created = store.create(user.clone()).await.expect("create");
    assert_eq!(created.created_at, clock.now() - TimeDelta::nanoseconds(789), "truncated to the microsecond");
    assert_eq!(created, bank_core::users::User { created_at: created.created_at, ..user });
    assert_eq!(store.by_id(created.id).await.expect("by id"), Some(created.clone()));
    assert_eq!(store.by_email(&created.email).await.expect("by email"), Some(created));
}
