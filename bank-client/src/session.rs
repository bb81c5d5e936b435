//! The tokens of one signed-in identity, kept so that they never reach `Debug` output or logs.
//!
//! A session is shared by the clones of a [`crate::BankClient`]; refreshing it is serialized so
//! that concurrent calls holding the same expiring token refresh it once, not once each.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bank_api::Tokens;
use parking_lot::Mutex;

use crate::time::Instant;

/// Refresh the access token before a call when it expires within this margin.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// A token: compared and sent, never printed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(Arc<str>);

impl Secret {
    pub(crate) fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TokenState {
    pub(crate) access: Secret,
    /// `None` for a token issued elsewhere (`with_access_token`): it cannot be refreshed.
    pub(crate) refresh: Option<Secret>,
    /// `None` when unknown: never refreshed ahead of time.
    pub(crate) expires_at: Option<Instant>,
}

impl TokenState {
    pub(crate) fn from_tokens(tokens: &Tokens, now: Instant) -> Self {
        Self {
            access: Secret::new(tokens.access_token.as_str()),
            refresh: Some(Secret::new(tokens.refresh_token.as_str())),
            expires_at: Some(now + Duration::from_secs(tokens.expires_in)),
        }
    }

    pub(crate) fn external(access_token: &str) -> Self {
        Self { access: Secret::new(access_token), refresh: None, expires_at: None }
    }

    /// Whether the access token should be refreshed before it is sent.
    pub(crate) fn needs_refresh(&self, now: Instant) -> bool {
        self.refresh.is_some() && self.expires_at.is_some_and(|at| at <= now + REFRESH_MARGIN)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Session {
    tokens: Mutex<Option<TokenState>>,
    /// Held while a refresh request is in flight.
    pub(crate) refreshing: tokio::sync::Mutex<()>,
}

impl Session {
    pub(crate) fn with_tokens(state: TokenState) -> Self {
        Self { tokens: Mutex::new(Some(state)), refreshing: tokio::sync::Mutex::new(()) }
    }

    pub(crate) fn get(&self) -> Option<TokenState> {
        self.tokens.lock().clone()
    }

    pub(crate) fn set(&self, state: TokenState) {
        *self.tokens.lock() = Some(state);
    }

    pub(crate) fn clear(&self) -> Option<TokenState> {
        self.tokens.lock().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_printed() {
        let state = TokenState::external("eyJ.secret.token");
        assert!(!format!("{state:?}").contains("eyJ"));
    }

    #[test]
    fn refresh_margin() {
        let now = Instant::now();
        let tokens = |expires_in| Tokens {
            access_token: "a".to_owned(),
            refresh_token: "r".to_owned(),
            expires_in,
            token_type: "Bearer".to_owned(),
        };
        assert!(TokenState::from_tokens(&tokens(29), now).needs_refresh(now));
        assert!(!TokenState::from_tokens(&tokens(60), now).needs_refresh(now));
        assert!(!TokenState::external("a").needs_refresh(now + Duration::from_secs(3_600)));
    }
}
