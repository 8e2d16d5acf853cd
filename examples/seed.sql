-- The seed scenario's starting point: a `profiles` table with a few rows.
-- Load it as the database owner:  psql "postgres://app_owner@localhost:5432/app" -f examples/seed.sql
CREATE TABLE IF NOT EXISTS profiles (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email        text NOT NULL UNIQUE,
    display_name text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

INSERT INTO profiles (email, display_name, created_at) VALUES
    ('ada@example.com',   'Ada Lovelace',    '2026-01-10 09:00:00+00'),
    ('grace@example.com', 'Grace Hopper',    '2026-02-14 12:30:00+00'),
    ('alan@example.com',  'Alan Turing',     '2026-03-03 17:45:00+00'),
    ('edsger@example.com','Edsger Dijkstra', '2026-04-21 08:15:00+00')
ON CONFLICT (email) DO NOTHING;
