//! `SqliteUserStore` against the `UserStore` conformance suite, plus what only a durable store
//! must show: users, TOTP steps and refresh-token state survive a reopen.

use std::sync::Arc;

use async_trait::async_trait;
use bank_core::clock::{Clock, ManualClock};
use bank_core::testkit::users::{UsersHarness, new_user};
use bank_core::users::{RefreshToken, RefreshTokenHash, Rotation, User, UserStore};
use bank_local::db::LocalDb;
use bank_local::users::SqliteUserStore;
use chrono::TimeDelta;
use parking_lot::Mutex;
use tempfile::TempDir;
use uuid::Uuid;

/// Builds each case's store in a fresh temporary directory, kept alive for the whole case.
#[derive(Default)]
struct Harness {
    dirs: Mutex<Vec<TempDir>>,
}

#[async_trait]
impl UsersHarness for Harness {
    async fn store(&self, clock: Arc<dyn Clock>) -> Arc<dyn UserStore> {
        let dir = TempDir::new().expect("temp dir");
        let db = LocalDb::open(dir.path()).await.expect("open database");
        self.dirs.lock().push(dir);
        Arc::new(SqliteUserStore::new(&db, clock))
    }
}

bank_core::users_conformance_tests!(Harness::default());

#[tokio::test]
async fn users_and_refresh_tokens_survive_a_reopen() {
    let dir = TempDir::new().expect("temp dir");
    let clock = ManualClock::at_epoch();
    let user = new_user("Reopen@Example.com", clock.now());
    let first = RefreshTokenHash::of("first");
    let second = RefreshTokenHash::of("second");
    let family = Uuid::now_v7();
    let expires = clock.now() + TimeDelta::days(30);
    {
        let db = LocalDb::open(dir.path()).await.expect("open");
        let store = SqliteUserStore::new(&db, Arc::new(clock.clone()));
        store.create(user.clone()).await.expect("create");
        assert!(store.use_totp_step(user.id, 42).await.expect("claim"));
        store.insert_refresh(RefreshToken::new(first, family, user.id, expires)).await.expect("insert");
        let rotation = store.rotate_refresh(&first, &second, expires).await.expect("rotate");
        assert_eq!(rotation, Rotation::Rotated { user: user.id, family });
        db.close().await;
    }
    let db = LocalDb::open(dir.path()).await.expect("reopen");
    let store = SqliteUserStore::new(&db, Arc::new(clock.clone()));
    let found = store.by_email(&user.email).await.expect("by email").expect("the user survives");
    assert_eq!(found, User { last_totp_step: Some(42), ..user.clone() });
    assert!(!store.use_totp_step(user.id, 42).await.expect("claim"), "a used step stays used after a reopen");
    let rotation = store.rotate_refresh(&first, &RefreshTokenHash::of("replay"), expires).await.expect("rotate");
    assert_eq!(rotation, Rotation::Reused { user: user.id, family }, "a used token stays used after a reopen");
    let successor = store.refresh_token(&second).await.expect("read").expect("kept");
    assert!(successor.revoked, "reuse after a reopen revokes the family");
}
