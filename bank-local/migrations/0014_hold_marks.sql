-- Hold ids given up while no hold of them could be seen (bank_core::ports::LedgerStore::mark_hold):
-- the payments pipeline marks the id of an abandoned request whose void found no hold before it
-- frees the request's key, so that a hold landing afterwards is found and voided by its scheduler
-- (bank_core::payments::PaymentsService::void_orphan_holds). Few rows: one per such request, removed
-- once settled.
CREATE TABLE hold_marks (
    id        BLOB PRIMARY KEY NOT NULL,
    marked_at INTEGER NOT NULL
) WITHOUT ROWID;
