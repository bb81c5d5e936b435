-- The transfer queue (see bank_core::queue and bank_local::queue): FIFO groups, deduplication
-- window, dead letters.
--
-- Conventions as in 0001: ids are UUIDs stored as 16-byte BLOBs; times are INTEGER nanoseconds
-- since the Unix epoch, UTC.

CREATE TABLE queue_messages (
    -- Enqueue order across the whole queue (AUTOINCREMENT: never reused, even after deletes).
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id      BLOB NOT NULL CHECK (length(group_id) = 16),
    transfer_id   BLOB NOT NULL CHECK (length(transfer_id) = 16),
    dedup_id      TEXT NOT NULL,
    enqueued_at   INTEGER NOT NULL,
    -- Hidden (in flight, or delayed by retry_later) while visible_at > now; 0 = never delivered.
    visible_at    INTEGER NOT NULL DEFAULT 0,
    -- The current delivery's receipt (a UUID); NULL before the first delivery.
    receipt       TEXT,
    receive_count INTEGER NOT NULL DEFAULT 0 CHECK (receive_count >= 0)
);
-- The head of a group (lowest seq) and "is anything of this group hidden".
CREATE INDEX queue_messages_by_group ON queue_messages (group_id, seq);
-- ack / retry_later look a delivery up by its receipt.
CREATE UNIQUE INDEX queue_messages_by_receipt ON queue_messages (receipt) WHERE receipt IS NOT NULL;
-- stats: hidden messages.
CREATE INDEX queue_messages_by_visible_at ON queue_messages (visible_at);

-- Deduplication ids accepted within the window (pruned on enqueue).
CREATE TABLE queue_dedup (
    dedup_id   TEXT PRIMARY KEY NOT NULL,
    -- When the first accepted enqueue opened the window.
    first_seen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX queue_dedup_by_first_seen ON queue_dedup (first_seen);

-- Messages past their delivery budget, in the order they were dead-lettered.
CREATE TABLE queue_dead_letters (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id      BLOB NOT NULL CHECK (length(group_id) = 16),
    transfer_id   BLOB NOT NULL CHECK (length(transfer_id) = 16),
    dedup_id      TEXT NOT NULL,
    enqueued_at   INTEGER NOT NULL,
    receive_count INTEGER NOT NULL,
    dead_at       INTEGER NOT NULL
);
