-- Users of the built-in token issuer and their refresh tokens (see bank_core::users). Refresh
-- tokens are stored as their SHA-256, never in clear. Times are TIMESTAMPTZ (microseconds; the
-- store hands back what it kept).

CREATE TABLE users (
    id             UUID PRIMARY KEY,
    -- Trimmed and lowercased by bank_core::users::Email.
    email          TEXT NOT NULL UNIQUE,
    -- PHC string ($argon2id$...).
    password_hash  TEXT NOT NULL,
    -- Base32 TOTP secret.
    totp_secret    TEXT NOT NULL,
    -- Role names, never empty.
    roles          TEXT[] NOT NULL
        CHECK (cardinality(roles) >= 1 AND roles <@ ARRAY['customer', 'operator']::TEXT[]),
    created_at     TIMESTAMPTZ NOT NULL,
    -- The last TOTP step accepted; NULL before the first login.
    last_totp_step BIGINT CHECK (last_totp_step >= 0)
);

CREATE TABLE refresh_tokens (
    id_hash    BYTEA PRIMARY KEY CHECK (length(id_hash) = 32),
    -- The login session: every rotation adds a token to it; reuse revokes all of it.
    family     UUID NOT NULL,
    user_id    UUID NOT NULL REFERENCES users (id),
    expires_at TIMESTAMPTZ NOT NULL,
    used       BOOLEAN NOT NULL,
    revoked    BOOLEAN NOT NULL
);

-- `revoke_family`.
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
-- `purge_expired_refresh`.
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);
