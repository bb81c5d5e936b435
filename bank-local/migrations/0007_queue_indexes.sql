-- Fewer index writes per queued transfer: a receipt now carries its message's seq, so ack and
-- retry_later find the row by key and check the receipt on it (no receipt index), and stats
-- counts visible and in-flight messages by scanning the queue (which holds what is waiting,
-- normally little) instead of keeping an index on visible_at up to date at every receive.
DROP INDEX queue_messages_by_receipt;
DROP INDEX queue_messages_by_visible_at;
