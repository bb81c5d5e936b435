-- The hash-chained audit log (bank_core::audit): records, the RFC 6962 tree's stored hashes, the
-- signed checkpoints, and the chain's head.
--
-- Several processes append at once, so the chain's next `seq` and previous hash come from the
-- database, under a lock: every append transaction first locks the one row of `audit_head`
-- (`SELECT … FOR UPDATE`), chains its records after it, inserts them and their tree hashes, and
-- moves the head, then commits. Appends of all processes are thereby serialized in commit order;
-- `seq` is gap-free and each `prev_hash` is the hash of the record committed just before.
--
-- Append-only: UPDATE, DELETE and TRUNCATE of records, tree hashes and checkpoints raise
-- "… append-only …". The head is the only row that changes. The database checks the chain's
-- links by itself too (`audit_records_linked`): a record's seq follows a stored record (or is 1)
-- and its `prev_hash` is that record's `hash`. It does not recompute hashes (the canonical
-- encoding is Rust's, bank_core::audit::encoding): `bank-server audit verify` does.
--
-- Times are the record's own, exact: seconds since the Unix epoch and nanoseconds within the
-- second (what the canonical encoding hashes), never now().

CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TABLE audit_records (
    seq        BIGINT PRIMARY KEY CHECK (seq >= 1),
    at_seconds BIGINT NOT NULL,
    at_nanos   INTEGER NOT NULL CHECK (at_nanos BETWEEN 0 AND 1999999999),
    subject    TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    outcome    TEXT NOT NULL CHECK (outcome IN ('done', 'refused')),
    request_id TEXT,
    client_ip  TEXT,
    prev_hash  BYTEA NOT NULL CHECK (length(prev_hash) = 32),
    hash       BYTEA NOT NULL CHECK (length(hash) = 32),
    -- The key of an `append_once` (NULL for the others): a retried append is one record.
    once_key   TEXT UNIQUE CHECK (length(once_key) BETWEEN 1 AND 256)
);

-- The tree's stored hashes at their tlog stored-hash index (about two per record).
CREATE TABLE audit_tree (
    idx  BIGINT PRIMARY KEY CHECK (idx >= 0),
    hash BYTEA NOT NULL CHECK (length(hash) = 32)
);

-- Signed checkpoints, 1, 2, 3, … each over more records than the one before.
CREATE TABLE audit_checkpoints (
    ordinal    BIGINT PRIMARY KEY CHECK (ordinal >= 1),
    size       BIGINT NOT NULL CHECK (size >= 1),
    at_seconds BIGINT NOT NULL,
    at_nanos   INTEGER NOT NULL CHECK (at_nanos BETWEEN 0 AND 1999999999),
    note       TEXT NOT NULL
);

-- The chain's head: the last record's seq and hash (0 and zeros before the first). One row,
-- locked by every append transaction.
CREATE TABLE audit_head (
    one  BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    seq  BIGINT NOT NULL CHECK (seq >= 0),
    hash BYTEA NOT NULL CHECK (length(hash) = 32)
);
INSERT INTO audit_head (seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records FOR EACH ROW
    EXECUTE FUNCTION audit_refuse('audit_records is append-only');
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records FOR EACH STATEMENT
    EXECUTE FUNCTION audit_refuse('audit_records is append-only');
CREATE TRIGGER audit_tree_append_only BEFORE UPDATE OR DELETE ON audit_tree FOR EACH ROW
    EXECUTE FUNCTION audit_refuse('audit_tree is append-only');
CREATE TRIGGER audit_tree_no_truncate BEFORE TRUNCATE ON audit_tree FOR EACH STATEMENT
    EXECUTE FUNCTION audit_refuse('audit_tree is append-only');
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints FOR EACH ROW
    EXECUTE FUNCTION audit_refuse('audit_checkpoints is append-only');
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints FOR EACH STATEMENT
    EXECUTE FUNCTION audit_refuse('audit_checkpoints is append-only');
-- The head never goes back nor loses its row.
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head FOR EACH ROW
    EXECUTE FUNCTION audit_refuse('audit_head is never deleted');
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head FOR EACH STATEMENT
    EXECUTE FUNCTION audit_refuse('audit_head is never deleted');

-- The head only moves forward.
CREATE FUNCTION audit_head_forward_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq < OLD.seq THEN
        RAISE EXCEPTION 'audit_head only moves forward (% to %)', OLD.seq, NEW.seq USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_head_forward BEFORE UPDATE ON audit_head FOR EACH ROW
    EXECUTE FUNCTION audit_head_forward_check();

-- After each statement (so rows of one multi-row INSERT may come in any order): every new record
-- links to the stored record before it.
CREATE FUNCTION audit_records_linked_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad BIGINT;
BEGIN
    SELECT n.seq INTO bad
    FROM new_records n
    LEFT JOIN audit_records p ON p.seq = n.seq - 1
    WHERE CASE WHEN n.seq = 1 THEN n.prev_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
               ELSE p.seq IS NULL OR p.hash <> n.prev_hash END
    LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'audit record % does not link to the record before it', bad
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER audit_records_linked AFTER INSERT ON audit_records
    REFERENCING NEW TABLE AS new_records FOR EACH STATEMENT EXECUTE FUNCTION audit_records_linked_check();
