//! Authentication end to end over the in-memory user store: registration, login with a real TOTP
//! code, refresh rotation and reuse detection, throttling, key persistence, JWT attacks, and
//! external (Cognito-shaped) tokens verified against a JWKS served by a local axum server.
//!
//! The fixture `tests/server/fixtures/cognito-test-rsa.pem` is a throwaway RSA key made for these tests.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bank_core::clock::{Clock, ManualClock};
use bank_core::memory::users::MemoryUserStore;
use bank_core::users::{Role, UserStore};
use bank_server::auth::issuer::{ACCOUNT_FAILURES_MAX, IP_FAILURES_PER_IP_DEFAULT, PAIR_FAILURES_MAX, TokenIssuer};
use bank_server::auth::keys::SigningKeys;
use bank_server::auth::verify::TokenVerifier;
use bank_server::auth::{AccessClaims, AuthConfig, AuthError, totp};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tempfile::TempDir;

const PASSWORD: &str = "correct horse battery";
const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

struct World {
    dir: TempDir,
    clock: ManualClock,
    store: Arc<dyn UserStore>,
    issuer: TokenIssuer,
}

impl World {
    fn new() -> World {
        let dir = TempDir::new().expect("temp dir");
        let clock = ManualClock::at_epoch();
        let store: Arc<dyn UserStore> = Arc::new(MemoryUserStore::new(Arc::new(clock.clone())));
        let issuer =
            TokenIssuer::new(AuthConfig::new(dir.path()), Arc::clone(&store), Arc::new(clock.clone())).expect("issuer");
        World { dir, clock, store, issuer }
    }

    fn now_secs(&self) -> u64 {
        u64::try_from(self.clock.now().timestamp()).expect("after 1970")
    }

    fn code(&self, secret: &str) -> String {
        totp::code_at(secret, self.now_secs()).expect("code")
    }

    /// Registers `email` and logs in; answers the TOTP secret and the tokens.
    async fn registered_login(&self, email: &str) -> (String, bank_server::auth::issuer::Tokens) {
        let registered = self.issuer.register(email, PASSWORD).await.expect("register");
        let tokens = self.issuer.login(email, PASSWORD, &self.code(&registered.totp_secret), IP).await.expect("login");
        (registered.totp_secret, tokens)
    }

    fn claims(&self) -> AccessClaims {
        let now = self.clock.now().timestamp();
        AccessClaims {
            iss: "http://127.0.0.1:8080".into(),
            aud: "bank-api".into(),
            sub: bank_core::ids::CustomerId::new().to_string(),
            exp: now + 600,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            roles: vec![Role::Customer],
            amr: vec!["pwd".into(), "otp".into()],
        }
    }

    fn sign(&self, claims: &AccessClaims) -> String {
        let keys = self.issuer.keys();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.kid().into());
        jsonwebtoken::encode(&header, claims, keys.encoding_key()).expect("sign")
    }
}

fn invalid(result: Result<impl std::fmt::Debug, AuthError>) -> &'static str {
    match result {
        Err(AuthError::InvalidToken(reason)) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[tokio::test]
async fn register_login_and_verify_a_principal() {
    let world = World::new();
    let registered = world.issuer.register("  Alice@Example.com", PASSWORD).await.expect("register");
    assert!(
        registered.otpauth_uri.starts_with("otpauth://totp/Bank:alice%40example.com?"),
        "{}",
        registered.otpauth_uri
    );
    assert!(registered.otpauth_uri.contains("issuer=Bank"));
    let code = world.code(&registered.totp_secret);
    let tokens = world.issuer.login("alice@example.com", PASSWORD, &code, IP).await.expect("login");
    assert_eq!(tokens.expires_in, 900);
    let principal = world.issuer.verifier().verify(&tokens.access_token).await.expect("verify");
    assert_eq!(principal.user, registered.user_id);
    assert_eq!(principal.roles, vec![Role::Customer]);
    assert_eq!(principal.expires_at, world.clock.now() + TimeDelta::minutes(15));
    let payload = tokens.access_token.split('.').nth(1).expect("payload");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp"]));
    assert_eq!(claims["sub"], registered.user_id.to_string());
    let err = world.issuer.register("ALICE@example.com", PASSWORD).await.expect_err("taken");
    assert!(matches!(err, AuthError::EmailTaken), "{err:?}");
}

#[tokio::test]
async fn operator_created_and_weak_password_refused() {
    let world = World::new();
    let err = world.issuer.register("bob@example.com", "short").await.expect_err("weak");
    assert!(matches!(err, AuthError::WeakPassword(_)), "{err:?}");
    let err = world.issuer.register("bob@example.com", &"x".repeat(129)).await.expect_err("too long");
    assert!(matches!(err, AuthError::WeakPassword(_)), "{err:?}");
    let op = world.issuer.create_user("ops@example.com", PASSWORD, Role::Operator).await.expect("operator");
    let tokens =
        world.issuer.login("ops@example.com", PASSWORD, &world.code(&op.totp_secret), IP).await.expect("login");
    let principal = world.issuer.verifier().verify(&tokens.access_token).await.expect("verify");
    assert!(principal.has_role(Role::Operator));
}

#[tokio::test]
async fn wrong_totp_wrong_password_and_unknown_email_look_the_same() {
    let world = World::new();
    let registered = world.issuer.register("carol@example.com", PASSWORD).await.expect("register");
    let code = world.code(&registered.totp_secret);
    let wrong_code = if code == "000000" { "111111" } else { "000000" };
    for (email, password, code) in [
        ("carol@example.com", PASSWORD, wrong_code),
        ("carol@example.com", "wrong password!!", code.as_str()),
        ("nobody@example.com", PASSWORD, code.as_str()),
    ] {
        let err = world.issuer.login(email, password, code, IP).await.expect_err("refused");
        assert!(matches!(err, AuthError::InvalidCredentials), "{err:?}");
    }
}

#[tokio::test]
async fn a_totp_code_works_once() {
    let world = World::new();
    let registered = world.issuer.register("dan@example.com", PASSWORD).await.expect("register");
    let code = world.code(&registered.totp_secret);
    world.issuer.login("dan@example.com", PASSWORD, &code, IP).await.expect("first login");
    let err = world.issuer.login("dan@example.com", PASSWORD, &code, IP).await.expect_err("replayed code");
    assert!(matches!(err, AuthError::InvalidCredentials), "{err:?}");
    world.clock.advance(TimeDelta::seconds(30));
    let next = world.code(&registered.totp_secret);
    world.issuer.login("dan@example.com", PASSWORD, &next, IP).await.expect("the next step's code works");
}

#[tokio::test]
async fn failed_logins_are_throttled_per_ip_and_account() {
    let world = World::new();
    let registered = world.issuer.register("erin@example.com", PASSWORD).await.expect("register");
    for _ in 0..PAIR_FAILURES_MAX {
        let err = world.issuer.login("erin@example.com", "wrong password!!", "123456", IP).await.expect_err("wrong");
        assert!(matches!(err, AuthError::InvalidCredentials), "{err:?}");
    }
    let code = world.code(&registered.totp_secret);
    let err = world.issuer.login("ERIN@example.com", PASSWORD, &code, IP).await.expect_err("throttled");
    let AuthError::Throttled { retry_after_secs } = err else { panic!("expected throttling, got {err:?}") };
    assert!(retry_after_secs > 0 && retry_after_secs <= 900, "{retry_after_secs}");
    world.clock.advance(TimeDelta::minutes(15));
    let code = world.code(&registered.totp_secret);
    world.issuer.login("erin@example.com", PASSWORD, &code, IP).await.expect("allowed after the window");
}

/// A guesser spread over many addresses: the account's own counter stops it, from every IP.
#[tokio::test]
async fn failed_logins_are_throttled_per_account_across_ips() {
    let world = World::new();
    let registered = world.issuer.register("fay@example.com", PASSWORD).await.expect("register");
    for i in 0..ACCOUNT_FAILURES_MAX {
        let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, u8::try_from(i).expect("small")));
        let err = world.issuer.login("fay@example.com", "wrong password!!", "123456", ip).await.expect_err("wrong");
        assert!(matches!(err, AuthError::InvalidCredentials), "{err:?}");
    }
    let code = world.code(&registered.totp_secret);
    let err = world.issuer.login("fay@example.com", PASSWORD, &code, IP).await.expect_err("throttled");
    assert!(matches!(err, AuthError::Throttled { .. }), "{err:?}");
}

/// The NAT case of issue 19: one attacker behind a shared address fails far past the per-IP cap
/// on other accounts; a colleague behind the same address, whose account has not failed, signs
/// in at once.
#[tokio::test]
async fn an_attacker_behind_a_shared_ip_cannot_lock_out_the_others() {
    let world = World::new();
    let registered = world.issuer.register("colleague@example.com", PASSWORD).await.expect("register");
    for i in 0..(IP_FAILURES_PER_IP_DEFAULT + 50) {
        let email = format!("victim{}@example.com", i % 40);
        let err = world.issuer.login(&email, "wrong password!!", "123456", IP).await.expect_err("refused");
        assert!(matches!(err, AuthError::InvalidCredentials | AuthError::Throttled { .. }), "{err:?}");
    }
    let code = world.code(&registered.totp_secret);
    world.issuer.login("colleague@example.com", PASSWORD, &code, IP).await.expect("a clean account is never refused");
}

/// The brute-force case: one account from one IP is locked after a few failures; an address
/// spraying many accounts hits the per-IP cap, after which every account that failed from it is
/// refused, even with the right password, while other addresses are not affected.
#[tokio::test]
async fn a_sprayer_hits_the_per_ip_cap() {
    let world = World::new();
    let target = world.issuer.register("target@example.com", PASSWORD).await.expect("register");
    // One failure for the target, then a spray of one failure per other account up to the cap.
    world.issuer.login("target@example.com", "wrong password!!", "123456", IP).await.expect_err("wrong");
    for i in 1..IP_FAILURES_PER_IP_DEFAULT {
        let email = format!("sprayed{i}@example.com");
        let err = world.issuer.login(&email, "wrong password!!", "123456", IP).await.expect_err("refused");
        assert!(matches!(err, AuthError::InvalidCredentials), "under the cap: {err:?}");
    }
    // Over the cap: an account that failed from this IP is refused, right password or not.
    let code = world.code(&target.totp_secret);
    let err = world.issuer.login("target@example.com", PASSWORD, &code, IP).await.expect_err("capped");
    assert!(matches!(err, AuthError::Throttled { .. }), "{err:?}");
    let err = world.issuer.login("sprayed1@example.com", "guess!!!!!!!!", "123456", IP).await.expect_err("capped");
    assert!(matches!(err, AuthError::Throttled { .. }), "{err:?}");
    // From another address the target logs in.
    let other = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    world.issuer.login("target@example.com", PASSWORD, &code, other).await.expect("another IP is not capped");
}

/// The per-IP cap is configurable (`BANK_LOGIN_FAILURES_PER_IP`).
#[tokio::test]
async fn the_per_ip_cap_is_configurable() {
    let dir = TempDir::new().expect("temp dir");
    let clock = ManualClock::at_epoch();
    let store: Arc<dyn UserStore> = Arc::new(MemoryUserStore::new(Arc::new(clock.clone())));
    let config = AuthConfig { login_failures_per_ip: 3, ..AuthConfig::new(dir.path()) };
    let issuer = TokenIssuer::new(config, store, Arc::new(clock)).expect("issuer");
    for i in 0..3 {
        issuer.login(&format!("u{i}@example.com"), "wrong password!!", "123456", IP).await.expect_err("wrong");
    }
    let err = issuer.login("u0@example.com", "wrong password!!", "123456", IP).await.expect_err("capped");
    assert!(matches!(err, AuthError::Throttled { .. }), "{err:?}");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let world = World::new();
    let (_, first) = world.registered_login("fay@example.com").await;
    let second = world.issuer.refresh(&first.refresh_token).await.expect("refresh");
    assert_ne!(second.refresh_token, first.refresh_token);
    world.issuer.verifier().verify(&second.access_token).await.expect("new access token verifies");
    let err = world.issuer.refresh(&first.refresh_token).await.expect_err("reuse");
    assert!(matches!(err, AuthError::RefreshReused), "{err:?}");
    invalid(world.issuer.refresh(&second.refresh_token).await);
    invalid(world.issuer.refresh("not-a-token").await);
}

#[tokio::test]
async fn refresh_tokens_expire_and_logout_revokes() {
    let world = World::new();
    let (_, tokens) = world.registered_login("gus@example.com").await;
    world.issuer.logout(&tokens.refresh_token).await.expect("logout");
    invalid(world.issuer.refresh(&tokens.refresh_token).await);
    world.issuer.logout("unknown").await.expect("unknown tokens are ignored");
    world.clock.advance(TimeDelta::seconds(31));
    let (_, tokens) = world.registered_login("hal@example.com").await;
    world.clock.advance(TimeDelta::days(30));
    invalid(world.issuer.refresh(&tokens.refresh_token).await);
}

#[tokio::test]
async fn the_key_persists_across_restarts() {
    let world = World::new();
    let (_, tokens) = world.registered_login("ivy@example.com").await;
    let restarted =
        TokenIssuer::new(AuthConfig::new(world.dir.path()), Arc::clone(&world.store), Arc::new(world.clock.clone()))
            .expect("restart");
    assert_eq!(restarted.keys().kid(), world.issuer.keys().kid());
    restarted.verifier().verify(&tokens.access_token).await.expect("an old token verifies after a restart");
    let jwks = restarted.keys().jwks();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    assert_eq!(jwks["keys"][0]["kid"], world.issuer.keys().kid());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(world.dir.path().join("keys").join(bank_server::auth::keys::KEY_FILE_NAME))
            .expect("key file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    let other = TempDir::new().expect("temp dir");
    let fresh = SigningKeys::load_or_create(other.path()).expect("new key");
    assert_ne!(fresh.kid(), world.issuer.keys().kid(), "a new directory gets a new key");
}

#[tokio::test]
async fn forged_and_wrong_tokens_are_refused() {
    let world = World::new();
    let verifier = world.issuer.verifier();
    let kid = world.issuer.keys().kid().to_owned();
    let good = world.sign(&world.claims());
    verifier.verify(&good).await.expect("the control token verifies");

    // alg none.
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#));
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&world.claims()).expect("json"));
    invalid(verifier.verify(&format!("{header}.{payload}.")).await);

    // HS256 with the public key as the HMAC secret.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    let public = URL_SAFE_NO_PAD.decode(world.issuer.keys().public_x()).expect("x");
    let forged = jsonwebtoken::encode(&hs, &world.claims(), &EncodingKey::from_secret(&public)).expect("sign");
    assert_eq!(invalid(verifier.verify(&forged).await), "algorithm not allowed");
    let forged = jsonwebtoken::encode(
        &hs,
        &world.claims(),
        &EncodingKey::from_secret(world.issuer.keys().public_x().as_bytes()),
    )
    .expect("sign");
    invalid(verifier.verify(&forged).await);

    // Expired (past the leeway), wrong issuer, wrong audience.
    let mut claims = world.claims();
    claims.exp = world.clock.now().timestamp() - 31;
    assert_eq!(invalid(verifier.verify(&world.sign(&claims)).await), "expired");
    let mut claims = world.claims();
    claims.iss = "https://evil.example".into();
    assert_eq!(invalid(verifier.verify(&world.sign(&claims)).await), "wrong issuer");
    let mut claims = world.claims();
    claims.aud = "other-api".into();
    assert_eq!(invalid(verifier.verify(&world.sign(&claims)).await), "wrong audience");

    // Unknown kid.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("someone-else".into());
    let token = jsonwebtoken::encode(&header, &world.claims(), world.issuer.keys().encoding_key()).expect("sign");
    assert_eq!(invalid(verifier.verify(&token).await), "unknown key");

    // Altered payload, original signature.
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims = world.claims();
    claims.roles = vec![Role::Operator];
    let altered = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
    assert_eq!(invalid(verifier.verify(&format!("{}.{altered}.{}", parts[0], parts[2])).await), "bad signature");

    // Signed by another Ed25519 key under our kid.
    let other = TempDir::new().expect("temp dir");
    let other_keys = SigningKeys::load_or_create(other.path()).expect("key");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.clone());
    let token = jsonwebtoken::encode(&header, &world.claims(), other_keys.encoding_key()).expect("sign");
    assert_eq!(invalid(verifier.verify(&token).await), "bad signature");

    // No second factor.
    let mut claims = world.claims();
    claims.amr = vec!["pwd".into()];
    let err = verifier.verify(&world.sign(&claims)).await.expect_err("no otp");
    assert!(matches!(err, AuthError::MfaMissing), "{err:?}");
}

/// A verified token is remembered (its signature is not checked again), but what time decides is:
/// the same token stops verifying once it expires.
#[tokio::test]
async fn a_remembered_token_still_expires() {
    let world = World::new();
    let verifier = world.issuer.verifier();
    let token = world.sign(&world.claims());
    let first = verifier.verify(&token).await.expect("verifies");
    assert_eq!(verifier.verify(&token).await.expect("verifies again"), first);
    world.clock.advance(TimeDelta::seconds(600 + 29));
    verifier.verify(&token).await.expect("within the leeway");
    world.clock.advance(TimeDelta::seconds(1));
    assert_eq!(invalid(verifier.verify(&token).await), "expired");
    assert_eq!(invalid(verifier.verify(&token).await), "expired", "and stays refused");
}

mod external {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    use serde_json::json;

    const PEM: &str = include_str!("fixtures/cognito-test-rsa.pem");
    const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TEST";
    const CLIENT_ID: &str = "test-client-id";
    const KID: &str = "cognito-kid-1";

    /// The fixture's public key as a JWKS under `kid`.
    fn jwks_of(kid: &str) -> serde_json::Value {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(PEM).expect("fixture key");
        json!({"keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        }]})
    }

    /// Serves the fixture's public key as a JWKS; counts requests.
    async fn jwks_server() -> (String, Arc<AtomicUsize>) {
        let (url, hits, _) = jwks_server_serving(jwks_of(KID)).await;
        (url, hits)
    }

    /// Serves `jwks` (replaceable through the answered handle); counts requests.
    async fn jwks_server_serving(
        jwks: serde_json::Value,
    ) -> (String, Arc<AtomicUsize>, Arc<parking_lot::Mutex<serde_json::Value>>) {
        let served = Arc::new(parking_lot::Mutex::new(jwks));
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let handle = Arc::clone(&served);
        let app = Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let jwks = handle.lock().clone();
                async move { axum::Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        (format!("http://{addr}/.well-known/jwks.json"), hits, served)
    }

    fn cognito_token(clock: &ManualClock, kid: &str, groups: &[&str]) -> (String, uuid::Uuid) {
        let sub = uuid::Uuid::new_v4();
        let now = clock.now().timestamp();
        let claims = json!({
            "sub": sub.to_string(), "iss": ISSUER, "client_id": CLIENT_ID, "token_use": "access",
            "scope": "aws.cognito.signin.user.admin", "auth_time": now, "iat": now, "exp": now + 3600,
            "jti": uuid::Uuid::new_v4().to_string(), "username": sub.to_string(), "cognito:groups": groups,
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let key = EncodingKey::from_rsa_pem(PEM.as_bytes()).expect("rsa key");
        (jsonwebtoken::encode(&header, &claims, &key).expect("sign"), sub)
    }

    #[tokio::test]
    async fn cognito_access_tokens_verify_and_unknown_kids_refetch_once() {
        let (url, hits) = jwks_server().await;
        let clock = ManualClock::at_epoch();
        let verifier = TokenVerifier::external(&url, ISSUER, CLIENT_ID, Arc::new(clock.clone())).expect("verifier");

        let (token, sub) = cognito_token(&clock, KID, &["operator"]);
        let principal = verifier.verify(&token).await.expect("a valid Cognito token");
        assert_eq!(principal.user.as_uuid(), &sub);
        assert_eq!(principal.roles, vec![Role::Customer, Role::Operator]);
        let (token, _) = cognito_token(&clock, KID, &[]);
        assert_eq!(verifier.verify(&token).await.expect("verify").roles, vec![Role::Customer]);
        assert_eq!(hits.load(Ordering::SeqCst), 1, "keys are cached");

        clock.advance(TimeDelta::seconds(31));
        let (unknown, _) = cognito_token(&clock, "rotated-kid", &[]);
        assert_eq!(invalid(verifier.verify(&unknown).await), "unknown key");
        assert_eq!(hits.load(Ordering::SeqCst), 2, "an unknown kid refetches the set once");
        assert_eq!(invalid(verifier.verify(&unknown).await), "unknown key");
        assert_eq!(hits.load(Ordering::SeqCst), 2, "at most one fetch per 30 s");

        // Wrong client, id token, HS256 with the modulus as secret, wrong issuer.
        let verifier_other =
            TokenVerifier::external(&url, ISSUER, "other-client", Arc::new(clock.clone())).expect("verifier");
        let (token, _) = cognito_token(&clock, KID, &[]);
        assert_eq!(invalid(verifier_other.verify(&token).await), "wrong audience");
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some(KID.into());
        let forged =
            jsonwebtoken::encode(&hs, &json!({"sub": "x", "iss": ISSUER, "exp": 0}), &EncodingKey::from_secret(b"n"))
                .expect("sign");
        assert_eq!(invalid(verifier.verify(&forged).await), "algorithm not allowed");
        let wrong_iss = TokenVerifier::external(&url, "https://evil", CLIENT_ID, Arc::new(clock.clone())).expect("v");
        assert_eq!(invalid(wrong_iss.verify(&token).await), "wrong issuer");
    }

    /// A remembered token is forgotten when the key set is fetched again: once its key is gone
    /// from the set, it is refused like any token of an unknown key.
    #[tokio::test]
    async fn a_token_whose_key_left_the_set_is_refused_after_the_refetch() {
        let (url, hits, served) = jwks_server_serving(jwks_of(KID)).await;
        let clock = ManualClock::at_epoch();
        let verifier = TokenVerifier::external(&url, ISSUER, CLIENT_ID, Arc::new(clock.clone())).expect("verifier");
        let (token, _) = cognito_token(&clock, KID, &[]);
        verifier.verify(&token).await.expect("verifies");
        verifier.verify(&token).await.expect("verifies again");

        // The issuer rotates: the old key leaves the set; a token of the new key makes the
        // verifier fetch it.
        *served.lock() = jwks_of("rotated-kid");
        clock.advance(TimeDelta::seconds(31));
        let (rotated, _) = cognito_token(&clock, "rotated-kid", &[]);
        verifier.verify(&rotated).await.expect("the new key verifies");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(invalid(verifier.verify(&token).await), "unknown key");
    }
}
