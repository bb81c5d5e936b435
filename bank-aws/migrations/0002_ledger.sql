-- The ledger: accounts with their balances, the append-only journal (entries and their lines),
-- and holds.
--
-- Conventions: ids are UUIDs; money is NUMERIC (exact, never float); times are BIGINT nanoseconds
-- since the Unix epoch, UTC (`*_ns`): the application's clock is the only source of business time
-- (never now()), and its times round-trip exactly (TIMESTAMPTZ keeps microseconds only).
--
-- The application applies every money rule (bank_core::ledger::rules); the database refuses on
-- its own, whatever code writes to it:
-- - an UPDATE, DELETE or TRUNCATE of a posted entry or line (append-only);
-- - at COMMIT, an entry whose lines do not balance per currency (or are not all there, or are
--   not counted in their accounts' sequences), and an account whose stored balance is not that
--   of its last line; after each statement, a line that breaks its account's gap-free sequence
--   or whose running balance does not follow from the previous line, or that names no entry;
-- - a second entry under one (transfer id, leg) key, a second reversal of one entry;
-- - a limited account whose available balance (posted - held + limit) is negative, a closed
--   account holding money, a line or hold in another currency than its account's;
-- - a change to an account's identity (owner, currency, kind, limit), reopening a closed account,
--   and a hold that changes after it ended (posted, voided or expired).

-- Raises the message given as the trigger's argument (for triggers that only refuse).
CREATE FUNCTION ledger_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END
$$;

-- Heavily updated (balances): a lower fillfactor keeps the updates HOT (no index writes).
CREATE TABLE accounts (
    id              UUID PRIMARY KEY,
    -- Insertion order: an owner's accounts are listed oldest first (opening times can tie).
    ord             BIGINT GENERATED ALWAYS AS IDENTITY,
    owner           UUID NOT NULL,
    name            TEXT NOT NULL,
    currency        TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    kind            TEXT NOT NULL CHECK (kind IN ('customer', 'settlement', 'clearing', 'suspense')),
    status          TEXT NOT NULL CHECK (status IN ('open', 'frozen', 'closed')),
    -- NULL = unlimited (the bank's own accounts only).
    overdraft_limit NUMERIC CHECK (overdraft_limit >= 0),
    -- Sum of the account's lines (credits minus debits) and of its active holds.
    posted          NUMERIC NOT NULL DEFAULT 0,
    held            NUMERIC NOT NULL DEFAULT 0 CHECK (held >= 0),
    -- Sequence number of the last line posted to the account (0 = none).
    sequence        BIGINT NOT NULL DEFAULT 0 CHECK (sequence >= 0),
    created_at_ns   BIGINT NOT NULL,
    CONSTRAINT accounts_customer_limited CHECK (kind <> 'customer' OR overdraft_limit IS NOT NULL),
    CONSTRAINT accounts_no_overdraft CHECK (overdraft_limit IS NULL OR posted - held + overdraft_limit >= 0),
    CONSTRAINT accounts_closed_empty CHECK (status <> 'closed' OR (posted = 0 AND held = 0))
) WITH (fillfactor = 70);
CREATE INDEX accounts_by_owner ON accounts (owner, ord);

CREATE TRIGGER accounts_identity_fixed BEFORE UPDATE ON accounts FOR EACH ROW
    WHEN (NEW.id <> OLD.id OR NEW.ord <> OLD.ord OR NEW.owner <> OLD.owner OR NEW.currency <> OLD.currency
          OR NEW.kind <> OLD.kind OR NEW.overdraft_limit IS DISTINCT FROM OLD.overdraft_limit
          OR NEW.created_at_ns <> OLD.created_at_ns)
    EXECUTE FUNCTION ledger_refuse('an account''s id, owner, currency, kind, overdraft limit and opening time never change');
CREATE TRIGGER accounts_closed_final BEFORE UPDATE ON accounts FOR EACH ROW
    WHEN (OLD.status = 'closed' AND NEW.status <> 'closed')
    EXECUTE FUNCTION ledger_refuse('a closed account stays closed');
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts FOR EACH ROW
    EXECUTE FUNCTION ledger_refuse('accounts are never deleted (close them)');
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts FOR EACH STATEMENT
    EXECUTE FUNCTION ledger_refuse('accounts are never deleted (close them)');

-- A posting. Its key (transfer id, leg) is unique: a retried posting finds it and is a replay.
CREATE TABLE entries (
    transfer_id          UUID NOT NULL,
    leg                  INTEGER NOT NULL CHECK (leg BETWEEN 0 AND 65535),
    entry_id             UUID NOT NULL,
    -- How many lines it has: its lines take the slots 0 .. line_count - 1, so once they are all
    -- written (checked at COMMIT) no line can be added to it later.
    line_count           SMALLINT NOT NULL CHECK (line_count >= 2),
    reference            TEXT NOT NULL,
    posted_at_ns         BIGINT NOT NULL,
    -- The entry this one reverses.
    reverses_transfer_id UUID,
    reverses_leg         INTEGER,
    PRIMARY KEY (transfer_id, leg),
    CONSTRAINT entries_reverses_an_entry FOREIGN KEY (reverses_transfer_id, reverses_leg)
        REFERENCES entries (transfer_id, leg),
    CHECK ((reverses_transfer_id IS NULL) = (reverses_leg IS NULL))
);
-- Each entry is reversed at most once.
CREATE UNIQUE INDEX entries_reversed_once ON entries (reverses_transfer_id, reverses_leg)
    WHERE reverses_transfer_id IS NOT NULL;

CREATE TABLE entry_lines (
    transfer_id   UUID NOT NULL,
    leg           INTEGER NOT NULL,
    line_no       SMALLINT NOT NULL,
    line_count    SMALLINT NOT NULL,
    account_id    UUID NOT NULL,
    side          TEXT NOT NULL CHECK (side IN ('debit', 'credit')),
    amount        NUMERIC NOT NULL CHECK (amount > 0),
    currency      TEXT NOT NULL,
    -- The account's gap-free sequence number (1, 2, 3, …) and its posted balance after the line.
    sequence      BIGINT NOT NULL CHECK (sequence >= 1),
    balance_after NUMERIC NOT NULL,
    PRIMARY KEY (transfer_id, leg, line_no),
    CONSTRAINT entry_lines_slot CHECK (line_no >= 0 AND line_no < line_count),
    -- Also the index history pages walk.
    CONSTRAINT entry_lines_sequence UNIQUE (account_id, sequence)
    -- Its entry (with this line_count) and its account (in this currency) exist: checked per
    -- statement below, set-based, rather than by foreign keys (one query per row: measured,
    -- ~8 µs a line, a fifth of a posting's cost in the database).
);

CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries FOR EACH ROW
    EXECUTE FUNCTION ledger_refuse('entries are append-only: a posted entry is corrected by a reversing entry');
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries FOR EACH STATEMENT
    EXECUTE FUNCTION ledger_refuse('entries are append-only');
CREATE TRIGGER entry_lines_append_only BEFORE UPDATE OR DELETE ON entry_lines FOR EACH ROW
    EXECUTE FUNCTION ledger_refuse('entry lines are append-only: a posted entry is corrected by a reversing entry');
CREATE TRIGGER entry_lines_no_truncate BEFORE TRUNCATE ON entry_lines FOR EACH STATEMENT
    EXECUTE FUNCTION ledger_refuse('entry lines are append-only');

-- Checked at COMMIT, once per entry written by the transaction (so its lines may be written by
-- later statements of the transaction): all its slots are filled, its lines balance per
-- currency, and each line is counted in its account's stored sequence (hence, by the account
-- check below, in its balance). With the slots, no line can join the entry afterwards.
CREATE FUNCTION entries_balanced_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    per_currency RECORD;
    lines        INTEGER := 0;
BEGIN
    FOR per_currency IN
        SELECT l.currency,
               sum(CASE l.side WHEN 'debit' THEN l.amount ELSE -l.amount END) AS net,
               count(*) AS lines,
               bool_and(a.sequence >= l.sequence) AS recorded
          FROM entry_lines l JOIN accounts a ON a.id = l.account_id
         WHERE l.transfer_id = NEW.transfer_id AND l.leg = NEW.leg
         GROUP BY l.currency
    LOOP
        IF per_currency.net <> 0 THEN
            RAISE EXCEPTION 'unbalanced entry %/%: debits and credits differ in %', NEW.transfer_id, NEW.leg,
                per_currency.currency USING ERRCODE = 'check_violation';
        END IF;
        IF NOT per_currency.recorded THEN
            RAISE EXCEPTION 'entry %/%: a line is not counted in its account''s balance', NEW.transfer_id, NEW.leg
                USING ERRCODE = 'check_violation';
        END IF;
        lines := lines + per_currency.lines;
    END LOOP;
    IF lines <> NEW.line_count THEN
        RAISE EXCEPTION 'entry %/% has % of its % lines', NEW.transfer_id, NEW.leg, lines, NEW.line_count
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER entries_balanced AFTER INSERT ON entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION entries_balanced_check();

-- After every statement writing lines, set-based (one query per statement, not per row): each
-- line names an existing entry with its line_count (so it takes one of the entry's slots) and an
-- existing account in its currency (what foreign keys would check), and continues the account's
-- chain: sequence n follows n - 1 (with the unique (account, sequence) key: 1..n, no gap), and
-- its balance_after is the previous one plus or minus its amount. Entries and accounts are never
-- deleted and never change key, line_count or currency, so checking at insert is enough.
CREATE FUNCTION entry_lines_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    broken RECORD;
BEGIN
    SELECT i.transfer_id, i.leg, i.account_id, i.sequence, i.balance_after, i.line_count, i.currency,
           e.line_count AS entry_line_count, a.currency AS account_currency, p.balance_after AS previous
      INTO broken
      FROM inserted i
      LEFT JOIN entries e ON e.transfer_id = i.transfer_id AND e.leg = i.leg
      LEFT JOIN accounts a ON a.id = i.account_id
      LEFT JOIN entry_lines p ON p.account_id = i.account_id AND p.sequence = i.sequence - 1
     WHERE e.line_count IS DISTINCT FROM i.line_count
        OR a.currency IS DISTINCT FROM i.currency
        OR (i.sequence > 1 AND p.account_id IS NULL)
        OR i.balance_after <> coalesce(p.balance_after, 0)
                              + (CASE i.side WHEN 'credit' THEN i.amount ELSE -i.amount END)
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    ELSIF broken.entry_line_count IS DISTINCT FROM broken.line_count THEN
        RAISE EXCEPTION 'entry_lines_entry: a line of %/% names no entry of % lines', broken.transfer_id,
            broken.leg, broken.line_count USING ERRCODE = 'foreign_key_violation';
    ELSIF broken.account_currency IS DISTINCT FROM broken.currency THEN
        RAISE EXCEPTION 'entry_lines_account_currency: no account % in %', broken.account_id, broken.currency
            USING ERRCODE = 'foreign_key_violation';
    ELSE
        RAISE EXCEPTION 'line % of account % breaks its chain: balance % after %', broken.sequence,
            broken.account_id, broken.balance_after, coalesce(broken.previous::text, 'a gap')
            USING ERRCODE = 'check_violation';
    END IF;
END
$$;
CREATE TRIGGER entry_lines_checked AFTER INSERT ON entry_lines REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION entry_lines_check();

-- Checked at COMMIT for every change of an account's posted balance or sequence: they are those
-- of its last line (so the stored balance is the sum of its lines, by the chain above).
CREATE FUNCTION accounts_balance_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_balance NUMERIC;
BEGIN
    IF NEW.sequence = 0 THEN
        last_balance := 0;
    ELSE
        SELECT balance_after INTO last_balance
          FROM entry_lines
         WHERE account_id = NEW.id AND sequence = NEW.sequence;
    END IF;
    IF last_balance IS DISTINCT FROM NEW.posted THEN
        RAISE EXCEPTION 'account %: posted % at sequence % is not the balance of its last line', NEW.id, NEW.posted,
            NEW.sequence USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER accounts_balance_is_lines AFTER UPDATE ON accounts
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.posted IS DISTINCT FROM OLD.posted OR NEW.sequence <> OLD.sequence)
    EXECUTE FUNCTION accounts_balance_check();

CREATE TABLE holds (
    id                 UUID PRIMARY KEY,
    account_id         UUID NOT NULL,
    amount             NUMERIC NOT NULL CHECK (amount > 0),
    currency           TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('active', 'posted', 'voided', 'expired')),
    created_at_ns      BIGINT NOT NULL,
    expires_at_ns      BIGINT NOT NULL CHECK (expires_at_ns > created_at_ns),
    reference          TEXT NOT NULL,
    -- The entry that posted it.
    posted_transfer_id UUID,
    posted_leg         INTEGER,
    CONSTRAINT holds_posted_has_entry
        CHECK ((status = 'posted') = (posted_transfer_id IS NOT NULL AND posted_leg IS NOT NULL))
) WITH (fillfactor = 80);
CREATE INDEX holds_active_by_account ON holds (account_id, expires_at_ns) WHERE status = 'active';
CREATE INDEX holds_active_by_expiry ON holds (expires_at_ns) WHERE status = 'active';

-- After every statement writing holds, set-based (as for lines): each names an existing account in
-- its currency, and a posted one an existing entry.
CREATE FUNCTION holds_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    broken RECORD;
BEGIN
    SELECT h.id, h.account_id, h.currency, a.currency AS account_currency INTO broken
      FROM changed h
      LEFT JOIN accounts a ON a.id = h.account_id
      LEFT JOIN entries e ON e.transfer_id = h.posted_transfer_id AND e.leg = h.posted_leg
     WHERE a.currency IS DISTINCT FROM h.currency OR (h.posted_transfer_id IS NOT NULL AND e.transfer_id IS NULL)
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    ELSIF broken.account_currency IS DISTINCT FROM broken.currency THEN
        RAISE EXCEPTION 'holds_account_currency: hold % names no account % in %', broken.id, broken.account_id,
            broken.currency USING ERRCODE = 'foreign_key_violation';
    ELSE
        RAISE EXCEPTION 'holds_posted_by: hold % names an entry that does not exist', broken.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
END
$$;
CREATE TRIGGER holds_inserted AFTER INSERT ON holds REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION holds_check();
CREATE TRIGGER holds_updated AFTER UPDATE ON holds REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION holds_check();

CREATE TRIGGER holds_end_once BEFORE UPDATE ON holds FOR EACH ROW
    WHEN (OLD.status <> 'active' OR NEW.id <> OLD.id OR NEW.account_id <> OLD.account_id
          OR NEW.amount <> OLD.amount OR NEW.currency <> OLD.currency OR NEW.created_at_ns <> OLD.created_at_ns
          OR NEW.expires_at_ns <> OLD.expires_at_ns OR NEW.reference <> OLD.reference)
    EXECUTE FUNCTION ledger_refuse('a hold changes once, from active to posted, voided or expired, and only its status');
CREATE TRIGGER holds_no_delete BEFORE DELETE ON holds FOR EACH ROW
    EXECUTE FUNCTION ledger_refuse('holds are never deleted');
CREATE TRIGGER holds_no_truncate BEFORE TRUNCATE ON holds FOR EACH STATEMENT
    EXECUTE FUNCTION ledger_refuse('holds are never deleted');
