-- The ledger: accounts, append-only journal (entries + lines), holds and reversals.
--
-- Conventions: ids are UUIDs stored as 16-byte BLOBs; money is stored as exact decimal TEXT
-- (never REAL); times are INTEGER nanoseconds since the Unix epoch, UTC (exact, and ordered).

CREATE TABLE accounts (
    id              BLOB PRIMARY KEY NOT NULL,
    owner           BLOB NOT NULL,
    name            TEXT NOT NULL,
    currency        TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('customer', 'settlement', 'clearing', 'suspense')),
    status          TEXT NOT NULL CHECK (status IN ('open', 'frozen', 'closed')),
    -- NULL = unlimited (the bank's own accounts only).
    overdraft_limit TEXT,
    posted          TEXT NOT NULL,
    held            TEXT NOT NULL,
    -- Sequence number of the last entry posted to the account (0 = none).
    sequence        INTEGER NOT NULL CHECK (sequence >= 0),
    created_at      INTEGER NOT NULL
);
CREATE INDEX accounts_by_owner ON accounts (owner);

CREATE TABLE entries (
    id                   INTEGER PRIMARY KEY,
    entry_id             BLOB NOT NULL,
    transfer_id          BLOB NOT NULL,
    leg                  INTEGER NOT NULL CHECK (leg BETWEEN 0 AND 65535),
    reference            TEXT NOT NULL,
    posted_at            INTEGER NOT NULL,
    reverses_transfer_id BLOB,
    reverses_leg         INTEGER,
    UNIQUE (transfer_id, leg)
);

CREATE TABLE entry_lines (
    entry         INTEGER NOT NULL REFERENCES entries (id),
    line_no       INTEGER NOT NULL,
    account_id    BLOB NOT NULL REFERENCES accounts (id),
    side          TEXT NOT NULL CHECK (side IN ('debit', 'credit')),
    amount        TEXT NOT NULL,
    currency      TEXT NOT NULL,
    sequence      INTEGER NOT NULL CHECK (sequence >= 1),
    balance_after TEXT NOT NULL,
    PRIMARY KEY (entry, line_no),
    -- Gap-free per-account numbering; also the index history pages walk.
    UNIQUE (account_id, sequence)
) WITHOUT ROWID;

CREATE TABLE holds (
    id                 BLOB PRIMARY KEY NOT NULL,
    account_id         BLOB NOT NULL REFERENCES accounts (id),
    amount             TEXT NOT NULL,
    currency           TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('active', 'posted', 'voided', 'expired')),
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    reference          TEXT NOT NULL,
    posted_transfer_id BLOB,
    posted_leg         INTEGER
);
CREATE INDEX holds_active_by_account ON holds (account_id, expires_at) WHERE status = 'active';
CREATE INDEX holds_active_by_expiry ON holds (expires_at) WHERE status = 'active';

-- Each entry is reversed at most once: the original's key is the primary key.
CREATE TABLE reversals (
    original_transfer_id BLOB NOT NULL,
    original_leg         INTEGER NOT NULL,
    reversal_transfer_id BLOB NOT NULL,
    reversal_leg         INTEGER NOT NULL,
    PRIMARY KEY (original_transfer_id, original_leg),
    FOREIGN KEY (original_transfer_id, original_leg) REFERENCES entries (transfer_id, leg),
    FOREIGN KEY (reversal_transfer_id, reversal_leg) REFERENCES entries (transfer_id, leg)
) WITHOUT ROWID;

-- Append-only, enforced by the database itself: a posted entry is corrected by a reversing entry,
-- never edited or deleted.
CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'entries are append-only'); END;
CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'entries are append-only'); END;
CREATE TRIGGER entry_lines_no_update BEFORE UPDATE ON entry_lines
BEGIN SELECT RAISE(ABORT, 'entry lines are append-only'); END;
CREATE TRIGGER entry_lines_no_delete BEFORE DELETE ON entry_lines
BEGIN SELECT RAISE(ABORT, 'entry lines are append-only'); END;
CREATE TRIGGER reversals_no_update BEFORE UPDATE ON reversals
BEGIN SELECT RAISE(ABORT, 'reversals are append-only'); END;
CREATE TRIGGER reversals_no_delete BEFORE DELETE ON reversals
BEGIN SELECT RAISE(ABORT, 'reversals are append-only'); END;
