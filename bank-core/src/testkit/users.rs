//! The [`UserStore`] conformance suite.
//!
//! Every case builds a fresh store through a [`UsersHarness`] with a [`ManualClock`] and checks
//! the contract written on [`UserStore`]: unique normalized emails, TOTP steps that only move
//! forward (one winner among concurrent claims), refresh rotation, reuse detection revoking the
//! whole family, expiry, revocation and purging.
//!
//! Use it from an adapter's tests:
//!
//! ```ignore
//! struct Harness;
//! #[async_trait::async_trait]
//! impl bank_core::testkit::users::UsersHarness for Harness {
//!     async fn store(&self, clock: Arc<dyn Clock>) -> Arc<dyn UserStore> { /* fresh store */ }
//! }
//! bank_core::users_conformance_tests!(Harness);
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::clock::{Clock, ManualClock};
use crate::error::Error;
use crate::ids::CustomerId;
use crate::users::{Email, RefreshToken, RefreshTokenHash, Role, Rotation, User, UserStore};

/// How to build a fresh, empty store for one test case.
#[async_trait]
pub trait UsersHarness: Send + Sync {
    /// A new empty store that reads time from `clock`.
    async fn store(&self, clock: Arc<dyn Clock>) -> Arc<dyn UserStore>;
}

/// Expands to one `#[tokio::test]` per conformance case, each calling `$harness` (an expression
/// implementing [`UsersHarness`]).
#[macro_export]
macro_rules! users_conformance_tests {
    ($harness:expr) => {
        $crate::conformance_cases!(users, $harness;
            created_user_is_found_by_email_and_id,
            duplicate_email_is_refused_case_insensitively,
            totp_steps_only_move_forward,
            concurrent_totp_claims_succeed_once,
            rotation_replaces_the_token,
            reuse_revokes_the_whole_family,
            concurrent_rotations_rotate_once,
            expired_refresh_is_invalid,
            unknown_refresh_is_invalid,
            revoked_family_is_invalid,
            purge_deletes_only_expired_tokens,
        );
    };
}

/// The harness for [`crate::memory::users::MemoryUserStore`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryUsersHarness;

#[async_trait]
impl UsersHarness for MemoryUsersHarness {
    async fn store(&self, clock: Arc<dyn Clock>) -> Arc<dyn UserStore> {
        Arc::new(crate::memory::users::MemoryUserStore::new(clock))
    }
}

/// Tasks racing in the concurrency cases.
const RACERS: usize = 32;

struct World {
    store: Arc<dyn UserStore>,
    clock: ManualClock,
}

impl World {
    async fn new(harness: &dyn UsersHarness) -> World {
        let clock = ManualClock::at_epoch();
        let store = harness.store(Arc::new(clock.clone())).await;
        World { store, clock }
    }

    async fn user(&self, email: &str) -> User {
        let user = new_user(email, self.clock.now());
        self.store.create(user.clone()).await.expect("create a user")
    }

    fn later(&self, days: i64) -> DateTime<Utc> {
        self.clock.now() + TimeDelta::days(days)
    }

    /// Stores the first token of a new family for `user`; returns its hash and family.
    async fn login(&self, user: CustomerId, token: &str) -> (RefreshTokenHash, Uuid) {
        let hash = RefreshTokenHash::of(token);
        let family = Uuid::now_v7();
        self.store.insert_refresh(RefreshToken::new(hash, family, user, self.later(30))).await.expect("insert refresh");
        (hash, family)
    }
}

/// A user with the given email (parsed, so normalized).
pub fn new_user(email: &str, now: DateTime<Utc>) -> User {
    User {
        id: CustomerId::new(),
        email: Email::parse(email).expect("test emails are valid"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        totp_secret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into(),
        roles: vec![Role::Customer],
        created_at: now,
        last_totp_step: None,
    }
}

/// Creating a user stores every field; it is found by its (normalized) email and by its id.
pub async fn created_user_is_found_by_email_and_id(harness: &dyn UsersHarness) {
    let world = World::new(harness).await;
    let mut user = new_user("  Alice@Example.COM ", world.clock.now());
    user.roles = vec![Role::Customer, Role::Operator];
    let created = world.store.create(user.clone()).await.expect("create");
    assert_eq!(created, user);
    assert_eq!(created.email.as_str(), "alice@example.com", "emails are trimmed and lowercased");
    let by_email = world.store.by_email(&Email::parse("alice@example.com").expect("email")).await.expect("by email");
    assert_eq!(by_email.as_ref(), Some(&user), "found by email with every field");
    assert_eq!(world.store.by_id(user.id).await.expect("by id"), Some(user));
    let nobody = Email::parse("bob@example.com").expect("email");
    assert_eq!(world.store.by_email(&nobody).await.expect("by email"), None);
    assert_eq!(world.store.by_id(CustomerId::new()).await.expect("by id"), None);
}

/// A second user with the same email, spelled differently, is refused, and the first is kept.
pub async fn duplicate_email_is_refused_case_insensitively(harness: &dyn UsersHarness) {
    let world = World::new(harness).await;
    let first = world.user("carol@example.com").await;
    let second = new_user(" CAROL@example.com", world.clock.now());
    let err = world.store.create(second.clone()).await.expect_err("the email is taken");
    assert!(matches!(err, Error::KeyReused(_)), "a taken email is KeyReused, got {err:?}");
    assert_eq!(world.store.by_id(second.id).await.expect("by id"), None, "nothing stored");
    let mut same_id = new_user("dave@example.com", world.clock.now());
    same_id.id = first.id;
    let err = world.store.create(same_id).await.expect_err("the id is taken");
    assert!(matches!(err, Error::KeyReused(_)), "a taken id is KeyReused, got {err:?}");
    let found = world.store.by_email(&first.email).await.expect("by email");
    assert_eq!(found, Some(first));
}

/// A step is claimed once; an earlier step after a later one is refused; unknown users get false.
pub async fn totp_steps_only_move_forward(harness: &dyn UsersHarness) {
    let world = World::new(harness).await;
    let user = world.user("erin@example.com").await;
    assert!(world.store.use_totp_step(user.id, 100).await.expect("claim"), "first claim");
    assert!(!world.store.use_totp_step(user.id, 100).await.expect("claim"), "the same step again is refused");
    assert!(!world.store.use_totp_step(user.id, 99).await.expect("claim"), "an earlier step is refused");
    assert!(world.store.use_totp_step(user.id, 101).await.expect("claim"), "a later step is accepted");
    let stored = world.store.by_id(user.id).await.expect("by id").expect("user");
    assert_eq!(stored.last_totp_step, Some(101), "the last step is stored");
    assert!(!world.store.use_totp_step(CustomerId::new(), 5).await.expect("claim"), "unknown user");
}

/// Of many concurrent claims of one step, exactly one succeeds.
pub async fn concurrent_totp_claims_succeed_once(harness: &dyn UsersHarness) {
    let world = World::new(harness).await;
    let user = world.user("frank@example.com").await;
    let claims = (0..RACERS).map(|_| {
        let store = Arc::clone(&world.store);
        tokio::spawn(async move { store.use_totp_step(user.id, 7).await.expect("claim") })
    });
    let mut won = 0;
    for claim in claims {
        if claim.await.expect("task") {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one concurrent claim of a step wins");
}

/// A valid token is exchanged once; the new one then rotates in turn, in the same family.
pub async fn rotation_replaces_the_token(harness: &dyn UsersHarness) {
    let world = World::new(harness).await;
    let user = world.user("gina@example.com").await;
    let (first, family) = world.login(user.id, "first").await;
    let second = RefreshTokenHash::of("second");
    let rotation = world.store.rotate_refresh(&first, &second, world.later(30)).await.expect("rotate");
    assert_eq!(rotation, Rotation::Rotated { user: user.id, family });
    let stored = world.store.refresh_token(&first).await.expect("read").expect("old token kept");
    assert!(stored.used && !stored.revoked, "the old token is marked used");
    let new = world.store.refresh_token(&second).await.expect("read").expect("new token stored");
    assert_eq!(new, RefreshToken::new(second, family, user.id, world.later(30)));
    let third = RefreshTokenHash::of("third");
    let rotation = world.store.rotate_refresh(&second, &third, world.later(30)).await.expect("rotate");
    assert_eq!(rotation, Rotation::Rotated { user: user.id, family }, "the new token rotates in turn");
}

/// Presenting a used token revokes the family: its successor stops working too.
pub async fn reuse_revokes_the_whole_family(harness: &dyn UsersHarness) {
    let world = World::new(harness).await;
    let user = world.user("hank@example.com").await;
    let (first, family) = world.login(user.id, "first").await;
    let (other, other_family) = world.login(user.id, "other-session").await;
    let second = RefreshTokenHash::of("second");
    world.store.rotate_refresh(&first, &second, world.later(30)).await.expect("rotate");
    let replay = RefreshTokenHash::of("attacker");
    let rotation = world.store.rotate_refresh(&first, &replay, world.later(30)).await.expect("rotate");
    assert_eq!(rotation, Rotation::Reused { user: user.id, family }, "a used token is reuse");
    assert_eq!(world.store.refresh_token(&replay).await.expect("read"), None, "nothing stored on reuse");
    let stolen = world.store.refresh_token(&second).await.expect("read").expect("kept");
    assert!(stolen.revoked, "the successor is revoked");
    let after = RefreshTokenHash::of("after");
    let rotation = world.store.rotate_refresh(&second, &after, world.later(30)).await.expect("rotate");
    assert_eq!(rotation, Rotation::Invalid, "the successor no longer rotates");
    let rotation = world.store.rotate_refresh(&first, &after, world.later(30)).await.expect("rotate");
    assert_eq!(rotation, Rotation::Invalid, "a revoked family answers invalid from then on");
    let next = RefreshTokenHash::of("other-next");
    let rotation = world.store.rotate_refresh(&other, &next, world.later(30)).await.expect("rotate");
    assert_eq!(rotation, Rotation::Rotated { user: user.id, family: other_family }, "other families are untouched");
}

/// Of many concurrent rotations of one token, one rotates and the others see reuse.
pub async fn concurrent_rotations_rotate_once(harness: &dyn UsersHarness) {
    let world = World::new(harness).await;
    let user = world.user("iris@example.com").await;
    let (first, _) = world.login(user.id, "first").await;
    let expires = world.later(30);
    let rotations = (0..RACERS).map(|i| {
        let store = Arc::clone(&world.store);
        tokio::spawn(async move {
            store.rotate_refresh(&first, &RefreshTokenHash::of(&format!("next-{i}")), expires).await.expect("rotate")
        })
    });
    let mut rotated = 0;
    for rotation in rotations {
        match rotation.await.expect("task") {
            Rotation::Rotated { .. } => rotated += 1,
            Rotation::Reused { .. } | Rotation::Invalid => {}
        }
    }
    assert_eq!(rotated, 1, "exactly one concurrent rotation wins");
}

/// A token is refused from its expiry instant on, and nothing is stored.
pub async fn expired_refresh_is_invalid(harness: &dyn UsersHarness) {
    let world = World::new(harness).await;
    let user = world.user("jack@example.com").await;
    let (first, _) = world.login(user.id, "first").await;
    world.clock.advance(TimeDelta::days(30));
    let second = RefreshTokenHash::of("second");
    let rotation = world.store.rotate_refresh(&first, &second, world.later(30)).await.expect("rotate");
    assert_eq!(rotation, Rotation::Invalid, "at expires_at the token is refused");
    assert_eq!(world.store.refresh_token(&second).await.expect("read"), None);
    let stored = world.store.refresh_token(&first).await.expect("read").expect("kept");
    assert!(!stored.used, "an expired token is not marked used");
}

/// An unknown token is invalid.
pub async fn unknown_refresh_is_invalid(harness: &dyn UsersHarness) {
    let world = World::new(harness).await;
    let rotation = world
        .store
        .rotate_refresh(&RefreshTokenHash::of("nope"), &RefreshTokenHash::of("next"), world.later(30))
        .await
        .expect("rotate");
    assert_eq!(rotation, Rotation::Invalid);
    assert_eq!(world.store.refresh_token(&RefreshTokenHash::of("next")).await.expect("read"), None);
}

/// Revoking a family (logout) makes its tokens invalid; the count says how many were live.
pub async fn revoked_family_is_invalid(harness: &dyn UsersHarness) {
    let world = World::new(harness).await;
    let user = world.user("kate@example.com").await;
    let (first, family) = world.login(user.id, "first").await;
    let second = RefreshTokenHash::of("second");
    world.store.rotate_refresh(&first, &second, world.later(30)).await.expect("rotate");
    assert_eq!(world.store.revoke_family(family).await.expect("revoke"), 2, "both tokens revoked");
    assert_eq!(world.store.revoke_family(family).await.expect("revoke"), 0, "revoking again changes nothing");
    let rotation =
        world.store.rotate_refresh(&second, &RefreshTokenHash::of("third"), world.later(30)).await.expect("rotate");
    assert_eq!(rotation, Rotation::Invalid, "a revoked token does not rotate");
    assert_eq!(world.store.revoke_family(Uuid::now_v7()).await.expect("revoke"), 0, "unknown family");
}

/// Purging deletes tokens at or past expiry and keeps the others.
pub async fn purge_deletes_only_expired_tokens(harness: &dyn UsersHarness) {
    let world = World::new(harness).await;
    let user = world.user("liam@example.com").await;
    let short = RefreshTokenHash::of("short");
    world
        .store
        .insert_refresh(RefreshToken::new(short, Uuid::now_v7(), user.id, world.later(1)))
        .await
        .expect("insert");
    let (long, _) = world.login(user.id, "long").await;
    let err = world
        .store
        .insert_refresh(RefreshToken::new(long, Uuid::now_v7(), user.id, world.later(1)))
        .await
        .expect_err("a stored hash is refused");
    assert!(matches!(err, Error::KeyReused(_)), "got {err:?}");
    assert_eq!(world.store.purge_expired_refresh().await.expect("purge"), 0, "nothing expired yet");
    world.clock.advance(TimeDelta::days(1));
    assert_eq!(world.store.purge_expired_refresh().await.expect("purge"), 1, "the expired token is purged");
    assert_eq!(world.store.refresh_token(&short).await.expect("read"), None);
    assert!(world.store.refresh_token(&long).await.expect("read").is_some(), "the live token is kept");
}
