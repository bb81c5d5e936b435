-- Hold ids given up while no hold of them could be seen (bank_core::ports::LedgerStore::mark_hold):
-- the payments pipeline marks the id of an abandoned request whose void found no hold before it
-- frees the request's key, so that a hold landing afterwards (a commit the database finished
-- after its client stopped waiting) is found and voided by its scheduler
-- (bank_core::payments::PaymentsService::void_orphan_holds). Few rows: one per such request,
-- removed once settled. Not part of the journal: rows are deleted.
CREATE TABLE hold_marks (
    id           UUID PRIMARY KEY,
    marked_at_ns BIGINT NOT NULL
);
