//! Registration, login and token bodies of the local issuer (`/v1/auth/*`).
//!
//! Every type holding a secret (password, TOTP secret, token) has a hand-written `Debug` that
//! prints `"<redacted>"` instead, so a stray `{:?}` or `tracing` field cannot leak it.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The only `token_type` the server issues.
pub const TOKEN_TYPE_BEARER: &str = "Bearer";

const REDACTED: &str = "<redacted>";

/// `POST /v1/auth/register`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct RegisterRequest {
    #[cfg_attr(
        feature = "utoipa",
        schema(max_length = 254, pattern = r"^[^@\s\u0000-\u001F\u007F-\u009F]+@[^@\s\u0000-\u001F\u007F-\u009F]+$")
    )]
    pub email: String,
    /// 12 to 128 characters.
    #[cfg_attr(feature = "utoipa", schema(min_length = 12, max_length = 128, format = Password))]
    pub password: String,
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest").field("email", &self.email).field("password", &REDACTED).finish()
    }
}

/// Answer to a registration: the new user and the TOTP secret to enrol in an authenticator app.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Registered {
    pub user_id: Uuid,
    /// Base32 TOTP secret; shown once.
    pub totp_secret: String,
    /// `otpauth://totp/...` URI holding the same secret (for a QR code).
    pub otpauth_uri: String,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered")
            .field("user_id", &self.user_id)
            .field("totp_secret", &REDACTED)
            .field("otpauth_uri", &REDACTED)
            .finish()
    }
}

/// `POST /v1/auth/login`: password and the current TOTP code.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    #[cfg_attr(
        feature = "utoipa",
        schema(max_length = 254, pattern = r"^[^@\s\u0000-\u001F\u007F-\u009F]+@[^@\s\u0000-\u001F\u007F-\u009F]+$")
    )]
    pub email: String,
    #[cfg_attr(feature = "utoipa", schema(min_length = 12, max_length = 128, format = Password))]
    pub password: String,
    #[cfg_attr(feature = "utoipa", schema(pattern = r"^[0-9]{6}$"))]
    pub totp_code: String,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("email", &self.email)
            .field("password", &REDACTED)
            .field("totp_code", &REDACTED)
            .finish()
    }
}

/// Answer to login and refresh.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Lifetime of the access token, in seconds from now.
    pub expires_in: u64,
    /// Always [`TOKEN_TYPE_BEARER`].
    pub token_type: String,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &REDACTED)
            .field("refresh_token", &REDACTED)
            .field("expires_in", &self.expires_in)
            .field("token_type", &self.token_type)
            .finish()
    }
}

/// `POST /v1/auth/refresh`: trade a refresh token for new tokens (the old refresh token is spent).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct RefreshRequest {
    pub refresh_token: String,
}

impl fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRequest").field("refresh_token", &REDACTED).finish()
    }
}

/// `POST /v1/auth/logout`: revoke a refresh token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct LogoutRequest {
    pub refresh_token: String,
}

impl fmt::Debug for LogoutRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogoutRequest").field("refresh_token", &REDACTED).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn login_request_round_trips_and_refuses_unknown_fields() {
        let value = json!({"email": "a@example.com", "password": "pw", "totp_code": "123456"});
        let request: LoginRequest = serde_json::from_value(value.clone()).expect("deserialize");
        assert_eq!(request.totp_code, "123456");
        assert_eq!(serde_json::to_value(&request).expect("serialize"), value);

        let unknown = json!({"email": "a@example.com", "password": "pw", "totp_code": "1", "otp": "1"});
        let error = serde_json::from_value::<LoginRequest>(unknown).expect_err("unknown field");
        assert!(error.to_string().contains("unknown field"), "{error}");
    }

    #[test]
    fn request_types_refuse_unknown_fields() {
        assert!(serde_json::from_value::<RegisterRequest>(json!({"email": "e", "password": "p", "x": 1})).is_err());
        assert!(serde_json::from_value::<RefreshRequest>(json!({"refresh_token": "r", "x": 1})).is_err());
        assert!(serde_json::from_value::<LogoutRequest>(json!({"refresh_token": "r", "x": 1})).is_err());
    }

    #[test]
    fn tokens_and_registered_have_exact_field_names() {
        let tokens = Tokens {
            access_token: "at".to_owned(),
            refresh_token: "rt".to_owned(),
            expires_in: 900,
            token_type: TOKEN_TYPE_BEARER.to_owned(),
        };
        let value = serde_json::to_value(&tokens).expect("serialize");
        assert_eq!(
            value,
            json!({"access_token": "at", "refresh_token": "rt", "expires_in": 900, "token_type": "Bearer"})
        );
        assert_eq!(serde_json::from_value::<Tokens>(value).expect("deserialize"), tokens);

        let registered = Registered {
            user_id: Uuid::nil(),
            totp_secret: "JBSWY3DPEHPK3PXP".to_owned(),
            otpauth_uri: "otpauth://totp/bank:a".to_owned(),
        };
        let value = serde_json::to_value(&registered).expect("serialize");
        assert_eq!(
            value,
            json!({"user_id": Uuid::nil(), "totp_secret": "JBSWY3DPEHPK3PXP", "otpauth_uri": "otpauth://totp/bank:a"})
        );
        assert_eq!(serde_json::from_value::<Registered>(value).expect("deserialize"), registered);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let tokens = Tokens {
            access_token: "hunter2-access".to_owned(),
            refresh_token: "hunter2-refresh".to_owned(),
            expires_in: 1,
            token_type: TOKEN_TYPE_BEARER.to_owned(),
        };
        let login = LoginRequest {
            email: "a@example.com".to_owned(),
            password: "hunter2-password".to_owned(),
            totp_code: "hunter2-code".to_owned(),
        };
        let registered = Registered {
            user_id: Uuid::nil(),
            totp_secret: "hunter2-totp".to_owned(),
            otpauth_uri: "otpauth://hunter2".to_owned(),
        };
        let printed = format!("{tokens:?} {login:?} {registered:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("a@example.com"));
    }
}
