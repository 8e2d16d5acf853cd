-- Seed scenario: users can store their time zone.
-- Nullable, no default: PostgreSQL only updates the catalog, existing rows are not rewritten.
-- The runner sets lock_timeout and statement_timeout for this transaction.
ALTER TABLE profiles ADD COLUMN timezone text;
