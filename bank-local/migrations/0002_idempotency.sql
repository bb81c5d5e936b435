-- Idempotency keys (see bank_core::idempotency): one row per caller-scoped key.
--
-- Conventions as in 0001: lease tokens are UUIDs stored as 16-byte BLOBs; times are INTEGER
-- nanoseconds since the Unix epoch, UTC. A row with `expires_at <= now` counts as absent.

CREATE TABLE idempotency_keys (
    caller      TEXT NOT NULL,
    key         TEXT NOT NULL,
    -- SHA-256 of the first request.
    fingerprint BLOB NOT NULL CHECK (length(fingerprint) = 32),
    resource    TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('in_flight', 'completed')),
    -- In flight: the current lease's token. Completed: the token whose `complete` stored the
    -- response (so the same `complete` again is a no-op).
    lease_token BLOB NOT NULL CHECK (length(lease_token) = 16),
    -- End of the current lease (meaningful in flight only).
    lease_until INTEGER NOT NULL,
    -- The stored response; NULL while in flight.
    response    BLOB,
    created_at  INTEGER NOT NULL,
    -- created_at + retention.
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (caller, key)
) WITHOUT ROWID;

-- `abandoned`: in-flight keys, oldest first.
CREATE INDEX idempotency_in_flight_by_age ON idempotency_keys (created_at, caller, key) WHERE state = 'in_flight';
-- `purge_expired`.
CREATE INDEX idempotency_by_expiry ON idempotency_keys (expires_at);
