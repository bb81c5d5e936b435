-- The audit log of operator actions (bank_core::audit) and deposit requests waiting for a second
-- operator (bank_core::approvals).
--
-- Conventions as in 0001: ids are UUIDs stored as 16-byte BLOBs; times are INTEGER nanoseconds
-- since the Unix epoch, UTC; amounts are decimal TEXT with exactly the currency's decimals.

-- Append-only: the triggers below refuse every UPDATE and DELETE, so a record, once written,
-- stays as it was. `seq` is the rowid: 1, 2, 3, … in commit order (one writer, no deletes).
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    subject    TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    outcome    TEXT NOT NULL CHECK (outcome IN ('done', 'refused')),
    request_id TEXT,
    client_ip  TEXT
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TABLE deposit_requests (
    -- Also the transfer id of the deposit's ledger entry.
    id           BLOB PRIMARY KEY CHECK (length(id) = 16),
    account_id   BLOB NOT NULL CHECK (length(account_id) = 16),
    amount       TEXT NOT NULL,
    currency     TEXT NOT NULL,
    reference    TEXT NOT NULL,
    requested_by BLOB NOT NULL CHECK (length(requested_by) = 16),
    requested_at INTEGER NOT NULL,
    -- NULL while pending; set once, by the first approval.
    approved_by  BLOB CHECK (approved_by IS NULL OR length(approved_by) = 16),
    approved_at  INTEGER,
    CHECK ((approved_by IS NULL) = (approved_at IS NULL))
) WITHOUT ROWID;

-- `pending`, oldest first.
CREATE INDEX deposit_requests_pending ON deposit_requests (requested_at, id) WHERE approved_by IS NULL;
