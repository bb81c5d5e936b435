-- This bank's marker: a database whose first migration is not this one is not this bank's.
CREATE TABLE bank_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO bank_meta (key, value) VALUES ('schema', 'bank-sdk');
