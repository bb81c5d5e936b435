-- The event bus (see bank_core::notifications and bank_local::events): an append-only log with
-- durable named cursors, and the notification log that makes each delivery at most once.
--
-- Conventions as in 0001: ids are UUIDs stored as 16-byte BLOBs; times are INTEGER nanoseconds
-- since the Unix epoch, UTC.

-- Published events, in publish order. Only a prefix (by seq) is ever deleted: events every
-- subscription has committed, when the log is full.
CREATE TABLE events (
    -- Publish order (AUTOINCREMENT: never reused, even after trimming).
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     BLOB NOT NULL CHECK (length(event_id) = 16),
    -- The whole event as JSON.
    body         TEXT NOT NULL,
    published_at INTEGER NOT NULL
);
-- commit: the first pending occurrence of an event id.
CREATE INDEX events_by_event_id ON events (event_id, seq);

-- Named subscriptions and their committed cursors: every event with seq <= committed_seq has
-- been committed by the subscription. Subscriptions are never deleted.
CREATE TABLE event_subscriptions (
    name          TEXT PRIMARY KEY NOT NULL,
    committed_seq INTEGER NOT NULL CHECK (committed_seq >= 0),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;
-- Trimming and "which subscription is behind".
CREATE INDEX event_subscriptions_by_cursor ON event_subscriptions (committed_seq);

-- Notification deliveries, one row per (event, channel, recipient) claimed.
CREATE TABLE notification_deliveries (
    -- Record order (AUTOINCREMENT: never reused): what is forgotten first past the capacity.
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   BLOB NOT NULL CHECK (length(event_id) = 16),
    channel    TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'webhook')),
    recipient  BLOB NOT NULL CHECK (length(recipient) = 16),
    state      TEXT NOT NULL CHECK (state IN ('claimed', 'sent', 'failed')),
    -- Why a failed delivery failed; NULL otherwise.
    reason     TEXT CHECK ((state = 'failed') = (reason IS NOT NULL)),
    claimed_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX notification_deliveries_by_key ON notification_deliveries (event_id, channel, recipient);
