-- Outbox claims (see bank_core::ports::TransferStore::outbox_claim): several relays may share the
-- outbox. Each record now carries its group (the source account of its transfer, as a 16-byte
-- BLOB) and the claim holding it, if any (the relay's token, a UUID, and the lease's end).
--
-- The table is rebuilt to make `grp` NOT NULL; existing records get their group from their
-- message (a queue message's `group`, an event's `from_account_id`), and keep their positions
-- (AUTOINCREMENT's high-water mark in sqlite_sequence is kept by the rename).

CREATE TABLE outbox_claimed (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The OutboxMessage as JSON.
    message       TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    -- OutboxMessage::group: records of one group are claimed in order, by one claim at a time.
    grp           BLOB NOT NULL CHECK (length(grp) = 16),
    -- The claim token and the instant (nanoseconds) its lease runs out; both NULL or neither.
    claim         BLOB CHECK (length(claim) = 16),
    claimed_until INTEGER,
    CHECK ((claim IS NULL) = (claimed_until IS NULL))
);

INSERT INTO outbox_claimed (seq, message, created_at, grp)
SELECT seq, message, created_at,
       unhex(replace(coalesce(json_extract(message, '$.group'), json_extract(message, '$.from_account_id')), '-', ''))
FROM outbox ORDER BY seq;

-- Carry AUTOINCREMENT's high-water mark over: positions are never reused, even if the outbox was
-- empty when this ran.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'outbox_claimed', seq FROM sqlite_sequence WHERE name = 'outbox'
  AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox_claimed');
UPDATE sqlite_sequence SET seq = max(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'outbox'))
WHERE name = 'outbox_claimed' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox');

DROP TABLE outbox;
ALTER TABLE outbox_claimed RENAME TO outbox;

-- The claim's "nothing of the group behind an earlier record" check.
CREATE INDEX outbox_by_group ON outbox (grp, seq);
-- Live claims, found without scanning the outbox.
CREATE INDEX outbox_claimed_until ON outbox (claimed_until) WHERE claimed_until IS NOT NULL;
