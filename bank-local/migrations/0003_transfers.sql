-- Transfers (see bank_core::ports::TransferStore) and the outbox written with them.
--
-- Conventions as in 0001: ids are UUIDs stored as 16-byte BLOBs; times are INTEGER nanoseconds
-- since the Unix epoch, UTC. The columns other than `body` are what the store queries by; `body`
-- is the whole transfer as JSON (its `seq` and `version` are those of the columns).

CREATE TABLE transfers (
    id              BLOB PRIMARY KEY NOT NULL,
    -- Acceptance order, assigned on insert (last + 1); never reused, transfers are never deleted.
    seq             INTEGER NOT NULL UNIQUE CHECK (seq >= 1),
    owner           BLOB NOT NULL,
    -- The accounts a transfer is listed under, fixed at insert: the source, and the destination
    -- when it is internal (NULL for an external one).
    from_account    BLOB NOT NULL,
    to_account      BLOB,
    status          TEXT NOT NULL CHECK (status IN ('accepted', 'processing', 'pending', 'settled', 'failed')),
    next_attempt_at INTEGER,
    -- Optimistic-concurrency version, bumped by every update.
    version         INTEGER NOT NULL CHECK (version >= 0),
    created_at      INTEGER NOT NULL,
    body            TEXT NOT NULL
);

-- `list_for_account`: from and into an account, by seq.
CREATE INDEX transfers_by_from_account ON transfers (from_account, seq);
CREATE INDEX transfers_by_to_account ON transfers (to_account, seq) WHERE to_account IS NOT NULL;
-- `due`: non-final transfers by deadline, then acceptance order.
CREATE INDEX transfers_due ON transfers (next_attempt_at, seq)
    WHERE status NOT IN ('settled', 'failed') AND next_attempt_at IS NOT NULL;
-- `count_by_status` (a covering index scan, not a scan of the bodies).
CREATE INDEX transfers_by_status ON transfers (status);

-- Messages to relay, in write order. AUTOINCREMENT: a position is never reused, even after
-- `outbox_done` deleted every row.
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The OutboxMessage as JSON.
    message    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
