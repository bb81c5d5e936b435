-- The hash-chained audit log (bank_core::audit), kept in its own file (audit.sqlite; like every
-- file it gets the whole schema, and the other files leave these tables empty).
--
-- Conventions as in 0001: times are INTEGER nanoseconds since the Unix epoch, UTC; hashes are
-- 32-byte BLOBs.
--
-- Append-only: the triggers refuse every UPDATE and DELETE of the three tables. They stop
-- mistakes and the application, not someone who can write the file (they can drop them): that is
-- what the hash chain, the signed checkpoints and the sealed segments are for
-- (`bank-server audit verify`).

-- Records: `seq` 1, 2, 3, … assigned by the one writer; `prev_hash` is the previous record's
-- `hash`, `hash` the SHA-256 of the record's canonical bytes (bank_core::audit::encoding).
-- `once_key`: the key of an `append_once` (NULL for the others), so a retried append is one record.
CREATE TABLE audit_records (
    seq        INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    subject    TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    request_id TEXT,
    client_ip  TEXT,
    prev_hash  BLOB NOT NULL,
    hash       BLOB NOT NULL,
    once_key   TEXT UNIQUE
);

-- The RFC 6962 tree's stored hashes, at their tlog stored-hash index (about two per record).
CREATE TABLE audit_tree (
    idx  INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);

-- Signed checkpoints, 1, 2, 3, … each over more records than the one before.
CREATE TABLE audit_checkpoints (
    ordinal INTEGER PRIMARY KEY,
    size    INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    note    TEXT NOT NULL
);

CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN
    SELECT RAISE(ABORT, 'audit_records is append-only');
END;

CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN
    SELECT RAISE(ABORT, 'audit_records is append-only');
END;

CREATE TRIGGER audit_tree_no_update BEFORE UPDATE ON audit_tree
BEGIN
    SELECT RAISE(ABORT, 'audit_tree is append-only');
END;

CREATE TRIGGER audit_tree_no_delete BEFORE DELETE ON audit_tree
BEGIN
    SELECT RAISE(ABORT, 'audit_tree is append-only');
END;

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
