-- Rollback of the seed scenario: the column and whatever was stored in it go away.
ALTER TABLE profiles DROP COLUMN timezone;
