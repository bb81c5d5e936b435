//! [`WebhookNotifier`]: the `webhook` notification channel — each notification is POSTed as
//! JSON to one configured endpoint (the bank's notification gateway, `BANK_WEBHOOK_URL`), signed
//! with HMAC-SHA256 so the receiver can tell it came from this bank and was not altered or
//! replayed late.
//!
//! # The request
//! - Body: `{"event_id", "channel", "recipient", "subject", "body"}` (the [`Notification`]).
//! - `X-Bank-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` — the
//!   receiver recomputes it over the raw body and refuses a timestamp older than its tolerance
//!   ([`verify_signature`] does exactly that).
//! - `Idempotency-Key: <event_id>:<recipient>`, so a receiver can drop a repeat.
//!
//! # Outcomes ([`Notifier`]'s contract: never double a message)
//! 2xx → sent. 408, 429 and 5xx → retryable (the receiver said it did not take it; the key lets it
//! drop a repeat anyway). Other 4xx → refused for good. The connection failing before the request
//! was sent → retryable. A timeout or a broken connection once the request may have left →
//! recorded as failed ("outcome unknown"), never retried: a missed message beats a doubled one.
//! Error texts never contain the URL's query, the secret or the message.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bank_core::notifications::{Channel, Notification, Notifier, NotifyError};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Shortest accepted signing secret.
pub const WEBHOOK_SECRET_BYTES_MIN: usize = 32;
/// How long one delivery may take.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Bank-Signature";

type HmacSha256 = Hmac<Sha256>;

/// Sends `webhook` notifications to one endpoint, signed.
pub struct WebhookNotifier {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Vec<u8>,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry credentials in its query: show its origin only; never the secret.
        f.debug_struct("WebhookNotifier").field("origin", &self.url.origin().ascii_serialization()).finish()
    }
}

/// Why a webhook configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookConfigError {
    /// Not an absolute http(s) URL.
    #[error("the webhook URL must be an absolute http or https URL")]
    BadUrl,
    /// Too short to resist guessing.
    #[error("the webhook secret must have at least {WEBHOOK_SECRET_BYTES_MIN} bytes")]
    WeakSecret,
    /// The HTTP client could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

impl WebhookNotifier {
    /// A notifier POSTing to `url`, signing with `secret` (at least 32 bytes).
    pub fn new(url: &str, secret: &[u8]) -> Result<Self, WebhookConfigError> {
        let url = reqwest::Url::parse(url).map_err(|_| WebhookConfigError::BadUrl)?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(WebhookConfigError::BadUrl);
        }
        if secret.len() < WEBHOOK_SECRET_BYTES_MIN {
            return Err(WebhookConfigError::WeakSecret);
        }
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WebhookConfigError::Client(e.to_string()))?;
        Ok(WebhookNotifier { client, url, secret: secret.to_vec() })
    }
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature_header(secret: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    format!("t={unix_seconds},v1={}", hex::encode(mac(secret, unix_seconds, body).finalize().into_bytes()))
}

fn mac(secret: &[u8], unix_seconds: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not `t=<unix>,v1=<hex>`.
    #[error("malformed signature header")]
    Malformed,
    /// Signed longer ago (or further ahead) than the tolerance.
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// Does not match the body and secret.
    #[error("signature does not match")]
    Mismatch,
}

/// What a receiver does: checks `header` against the raw `body` and `secret` (in constant time),
/// and that its timestamp is within `tolerance_seconds` of `now_unix`.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut tag = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => tag = hex::decode(value).ok(),
            _ => return Err(SignatureError::Malformed),
        }
    }
    let (Some(timestamp), Some(tag)) = (timestamp, tag) else { return Err(SignatureError::Malformed) };
    if (now_unix - timestamp).abs() > tolerance_seconds {
        return Err(SignatureError::Stale);
    }
    mac(secret, timestamp, body).verify_slice(&tag).map_err(|_| SignatureError::Mismatch)
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn channel(&self) -> Channel {
        Channel::Webhook
    }

    async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(notification)
            .map_err(|e| NotifyError::Permanent(format!("cannot encode the notification: {e}")))?;
        let signature = signature_header(&self.secret, unix_now(), &body);
        let sent = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header("Idempotency-Key", format!("{}:{}", notification.event_id, notification.recipient))
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else if status.is_server_error()
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                {
                    Err(NotifyError::Retryable(format!("the webhook endpoint answered {status}")))
                } else {
                    Err(NotifyError::Permanent(format!("the webhook endpoint refused it: {status}")))
                }
            }
            // Never connected: the request certainly did not leave.
            Err(e) if e.is_connect() => Err(NotifyError::Retryable("cannot connect to the webhook endpoint".into())),
            // It may have left (timeout, connection lost mid-way): do not risk a second copy.
            Err(e) if e.is_timeout() => {
                Err(NotifyError::Permanent("the webhook endpoint timed out; outcome unknown".into()))
            }
            Err(_) => Err(NotifyError::Permanent("the webhook call failed after it may have been sent".into())),
        }
    }
}

/// The notifiers the configuration asks for beside the log: the signed webhook of
/// `BANK_WEBHOOK_URL` (checked when the configuration was read).
pub fn configured(config: &crate::config::Config) -> Result<Vec<Arc<dyn Notifier>>, crate::run::RunError> {
    let mut notifiers: Vec<Arc<dyn Notifier>> = Vec::new();
    if let Some((url, secret)) = &config.webhook {
        let webhook = WebhookNotifier::new(url, secret.expose().as_bytes())
            .map_err(|e| crate::run::RunError::Refused(format!("webhook notifier: {e}")))?;
        notifiers.push(Arc::new(webhook));
    }
    Ok(notifiers)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn signatures_verify_and_refuse_changes() {
        let body = br#"{"event_id":"x"}"#;
        let header = signature_header(SECRET, 1_000, body);
        assert_eq!(verify_signature(SECRET, &header, body, 1_010, 300), Ok(()));
        assert_eq!(
            verify_signature(SECRET, &header, br#"{"event_id":"y"}"#, 1_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"another secret of enough length!!", &header, body, 1_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify_signature(SECRET, &header, body, 1_400, 300), Err(SignatureError::Stale));
        let retimed = header.replacen("t=1000", "t=1300", 1);
        assert_eq!(verify_signature(SECRET, &retimed, body, 1_310, 300), Err(SignatureError::Mismatch));
        for bad in ["", "t=1000", "v1=00", "t=x,v1=00", "t=1000,v1=zz", "t=1000;v1=00"] {
            assert!(verify_signature(SECRET, bad, body, 1_000, 300).is_err(), "{bad:?}");
        }
    }

    /// A receiver on loopback answering each call with the next status of `statuses`, keeping
    /// what it received.
    async fn receiver(statuses: Vec<u16>) -> (String, std::sync::Arc<parking_lot::Mutex<Vec<(String, Vec<u8>)>>>) {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        let received = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let statuses = std::sync::Arc::new(parking_lot::Mutex::new(statuses));
        let (kept, answers) = (received.clone(), statuses.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (kept, answers) = (kept.clone(), answers.clone());
                async move {
                    let signature =
                        headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    kept.lock().push((signature, body.to_vec()));
                    let status = answers.lock().remove(0);
                    StatusCode::from_u16(status).expect("status")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        (format!("http://{address}/hook"), received)
    }

    fn notification() -> Notification {
        Notification {
            event_id: bank_core::ids::EventId::new(),
            channel: Channel::Webhook,
            recipient: bank_core::ids::CustomerId::new(),
            subject: "Transfer settled".into(),
            body: "Your transfer of 30.00 USD settled.".into(),
        }
    }

    #[tokio::test]
    async fn deliveries_are_signed_and_outcomes_follow_the_contract() {
        let (url, received) = receiver(vec![204, 503, 429, 400]).await;
        let notifier = WebhookNotifier::new(&url, SECRET).expect("notifier");
        let sent = notification();
        notifier.send(&sent).await.expect("2xx is sent");
        assert!(matches!(notifier.send(&sent).await, Err(NotifyError::Retryable(_))), "503 is retried");
        assert!(matches!(notifier.send(&sent).await, Err(NotifyError::Retryable(_))), "429 is retried");
        assert!(matches!(notifier.send(&sent).await, Err(NotifyError::Permanent(_))), "400 is refused for good");
        let (signature, body) = received.lock()[0].clone();
        verify_signature(SECRET, &signature, &body, unix_now(), 300).expect("the receiver can verify it");
        let decoded: Notification = serde_json::from_slice(&body).expect("the body is the notification");
        assert_eq!(decoded, sent);
        // Nobody listening: the request never left, so it may be retried.
        let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("a").port();
        let closed = WebhookNotifier::new(&format!("http://127.0.0.1:{port}/hook"), SECRET).expect("notifier");
        assert!(matches!(closed.send(&sent).await, Err(NotifyError::Retryable(_))));
    }

    #[test]
    fn configuration_is_checked() {
        assert_eq!(WebhookNotifier::new("ftp://example.com", SECRET).err(), Some(WebhookConfigError::BadUrl));
        assert_eq!(WebhookNotifier::new("not a url", SECRET).err(), Some(WebhookConfigError::BadUrl));
        assert_eq!(
            WebhookNotifier::new("https://example.com/hook", b"short").err(),
            Some(WebhookConfigError::WeakSecret)
        );
        let notifier = WebhookNotifier::new("https://example.com/hook?token=hidden", SECRET).expect("valid");
        let debug = format!("{notifier:?}");
        assert!(!debug.contains("hidden") && !debug.contains("0123"), "{debug}");
    }
}
