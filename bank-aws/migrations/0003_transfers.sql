-- Transfers (see bank_core::ports::TransferStore), the outbox written with them, and the claims
-- through which several relays share the outbox.
--
-- The columns other than `body` are what the store queries by; `body` is the whole transfer as
-- JSONB, exact to the nanosecond (its `seq` and `version` are those of the columns). Times in
-- columns are TIMESTAMPTZ, so microseconds: the query columns round nothing a caller can see.

-- Acceptance order. A sequence, so concurrent batches do not queue on one counter: positions
-- increase in the order they are drawn and may have gaps (an insert that found its id taken, a
-- rolled-back batch).
CREATE SEQUENCE transfer_seq AS BIGINT;

CREATE TABLE transfers (
    id              UUID PRIMARY KEY,
    -- From `transfer_seq`, so unique without an index of its own (every index is written again by
    -- every update: none is kept that no query needs).
    seq             BIGINT NOT NULL CHECK (seq >= 1),
    -- The accounts a transfer is listed under, fixed at insert: the source, and the destination
    -- when it is internal (NULL for an external one).
    from_account    UUID NOT NULL,
    to_account      UUID,
    status          TEXT NOT NULL CHECK (status IN ('accepted', 'processing', 'pending', 'settled', 'failed')),
    next_attempt_at TIMESTAMPTZ,
    -- A rail call may have reached the rail without a definite answer (`unresolved`).
    outcome_unknown BOOLEAN NOT NULL,
    -- Optimistic-concurrency version, bumped by every update.
    version         BIGINT NOT NULL CHECK (version >= 0),
    created_at      TIMESTAMPTZ NOT NULL,
    body            JSONB NOT NULL
);

-- `list_for_account`: from and into an account, by seq (each side reads its rows from its index).
CREATE INDEX transfers_by_from_account ON transfers (from_account, seq);
CREATE INDEX transfers_by_to_account ON transfers (to_account, seq) WHERE to_account IS NOT NULL;
-- `due`: non-final transfers by deadline, then acceptance order.
CREATE INDEX transfers_due ON transfers (next_attempt_at, seq)
    WHERE status NOT IN ('settled', 'failed') AND next_attempt_at IS NOT NULL;
-- `unresolved`: few rows, in acceptance order.
CREATE INDEX transfers_unresolved ON transfers (seq) WHERE status = 'pending' AND outcome_unknown;

-- `count_by_status` without scanning the transfers: each write batch adds its changes to one of
-- 64 shards (chosen by the writing connection), so concurrent batches rarely wait on one row;
-- a count is the sum over the shards (a shard alone may be negative).
CREATE TABLE transfer_counts (
    shard      SMALLINT PRIMARY KEY CHECK (shard BETWEEN 0 AND 63),
    accepted   BIGINT NOT NULL DEFAULT 0,
    processing BIGINT NOT NULL DEFAULT 0,
    pending    BIGINT NOT NULL DEFAULT 0,
    settled    BIGINT NOT NULL DEFAULT 0,
    failed     BIGINT NOT NULL DEFAULT 0
);
INSERT INTO transfer_counts (shard) SELECT generate_series(0, 63);

-- Messages to relay, in write order (identity positions increase in the order drawn and are never
-- reused). A row is deleted once delivered.
CREATE TABLE outbox (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- OutboxMessage::group (the transfer's source account): a group is claimed in order, by one
    -- claim at a time.
    grp           UUID NOT NULL,
    -- The OutboxMessage as JSON (written once, read once: text, not JSONB).
    message       TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    -- The claim holding the row (the relay's token) and the instant its lease runs out; both NULL
    -- or neither. Neither is indexed, so claiming a row is a HOT update (no index written):
    -- `outbox_claims` says which rows a live claim holds.
    claim         UUID,
    claimed_until TIMESTAMPTZ,
    CHECK ((claim IS NULL) = (claimed_until IS NULL))
) WITH (
    -- Room on every page for the claimed version of each row (a HOT update stays on its page).
    fillfactor = 50,
    -- A queue: every row is written three times (insert, claim, delete). Vacuum it after a fixed
    -- number of dead rows, not a fraction of a size that swings, and without pauses, so claims
    -- do not wade through dead rows.
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 10000
);

-- The claim's "nothing of a group behind a record the claim does not take" check.
CREATE INDEX outbox_by_group ON outbox (grp, seq);

-- One row per claim not yet done, released or expired: what a claim needs to know of the others
-- without an index on the outbox's claim columns. `grps`: the groups it holds (a later claim takes
-- nothing of them while it is live); `seqs`: the positions it holds (`outbox_release` gives them
-- back).
CREATE TABLE outbox_claims (
    token UUID PRIMARY KEY,
    until TIMESTAMPTZ NOT NULL,
    grps  UUID[] NOT NULL,
    seqs  BIGINT[] NOT NULL
);
