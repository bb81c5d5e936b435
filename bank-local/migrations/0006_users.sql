-- Users of the built-in token issuer and their refresh tokens (see bank_core::users).
--
-- Conventions as in 0001: ids are UUIDs stored as 16-byte BLOBs; times are INTEGER nanoseconds
-- since the Unix epoch, UTC. Refresh tokens are stored as their SHA-256, never in clear.

CREATE TABLE users (
    id             BLOB PRIMARY KEY CHECK (length(id) = 16),
    -- Trimmed and lowercased by bank_core::users::Email.
    email          TEXT NOT NULL UNIQUE,
    -- PHC string ($argon2id$...).
    password_hash  TEXT NOT NULL,
    -- Base32 TOTP secret.
    totp_secret    TEXT NOT NULL,
    -- Comma-separated role names ("customer", "operator").
    roles          TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    -- The last TOTP step accepted; NULL before the first login.
    last_totp_step INTEGER
) WITHOUT ROWID;

CREATE TABLE refresh_tokens (
    id_hash    BLOB PRIMARY KEY CHECK (length(id_hash) = 32),
    family     BLOB NOT NULL CHECK (length(family) = 16),
    user_id    BLOB NOT NULL REFERENCES users (id),
    expires_at INTEGER NOT NULL,
    used       INTEGER NOT NULL CHECK (used IN (0, 1)),
    revoked    INTEGER NOT NULL CHECK (revoked IN (0, 1))
) WITHOUT ROWID;

-- `revoke_family`.
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
-- `purge_expired_refresh`.
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);
