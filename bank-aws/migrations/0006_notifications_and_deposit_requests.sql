-- The notification log (bank_core::notifications::NotificationLog) and operators' deposit
-- requests (bank_core::approvals::DepositRequestStore), shared by every API, worker and
-- notifications process. Times are BIGINT nanoseconds since the Unix epoch from the application's
-- clock (exact round trip; never now()).

-- At most one notification per (event, channel, recipient): a claim inserts the key, and of
-- concurrent claims exactly one inserts it. Retention: records are purged by age
-- (PgNotificationLog::purge_expired), long after any redelivery of their event.
CREATE TABLE notification_deliveries (
    event_id   UUID NOT NULL,
    channel    TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'webhook')),
    recipient  UUID NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('claimed', 'sent', 'failed')),
    -- Why a failed delivery failed; NULL otherwise.
    reason     TEXT CHECK ((state = 'failed') = (reason IS NOT NULL)),
    claimed_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (event_id, channel, recipient)
);
-- `purge_expired`.
CREATE INDEX notification_deliveries_by_update ON notification_deliveries (updated_at);

-- Four eyes: a large deposit waits here until another operator approves it; its id is the
-- deposit entry's transfer id. Approval is set once (the first approver stays).
CREATE TABLE deposit_requests (
    id           UUID PRIMARY KEY,
    account_id   UUID NOT NULL,
    amount       NUMERIC NOT NULL CHECK (amount > 0),
    currency     TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reference    TEXT NOT NULL,
    requested_by UUID NOT NULL,
    requested_at BIGINT NOT NULL,
    -- NULL while pending; set once, by the first approval.
    approved_by  UUID,
    approved_at  BIGINT,
    CHECK ((approved_by IS NULL) = (approved_at IS NULL))
);
-- `pending`, oldest first.
CREATE INDEX deposit_requests_pending ON deposit_requests (requested_at, id) WHERE approved_by IS NULL;

-- A request never changes but for its approval, once; it is never deleted.
CREATE FUNCTION deposit_requests_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'deposit requests are never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.approved_by IS NOT NULL
       OR (NEW.id, NEW.account_id, NEW.amount, NEW.currency, NEW.reference, NEW.requested_by, NEW.requested_at)
          IS DISTINCT FROM
          (OLD.id, OLD.account_id, OLD.amount, OLD.currency, OLD.reference, OLD.requested_by, OLD.requested_at) THEN
        RAISE EXCEPTION 'a deposit request changes only by its first approval' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER deposit_requests_guarded BEFORE UPDATE OR DELETE ON deposit_requests FOR EACH ROW
    EXECUTE FUNCTION deposit_requests_guard();
CREATE TRIGGER deposit_requests_no_truncate BEFORE TRUNCATE ON deposit_requests FOR EACH STATEMENT
    EXECUTE FUNCTION audit_refuse('deposit requests are never deleted');
