-- postgres-store's tasks, in its own schema. A database of the first
-- releases had this table in `public` (with a foreign key to the host's
-- users); the host hands it over to this schema, rows and indexes and all,
-- before this migration runs, and `IF NOT EXISTS` then leaves it as it is.
-- Owners are checked by the host (a plugin cannot reference its tables).
CREATE TABLE IF NOT EXISTS tasks (
    id          uuid PRIMARY KEY,
    owner_id    uuid NOT NULL,
    title       text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    description text CHECK (char_length(description) <= 10000),
    status      text NOT NULL CHECK (status IN ('todo', 'in_progress', 'done')),
    -- 1 = low, 2 = medium, 3 = high: sorts by rank.
    priority    smallint NOT NULL CHECK (priority BETWEEN 1 AND 3),
    due_at      timestamptz,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     bigint NOT NULL CHECK (version >= 1)
);

-- Keyset pagination orders by (sort key, id): each sort has its index, and
-- the owner-scoped variants serve the role `user`, who only sees own tasks.
-- `pg_trgm` is the host's (an extension belongs to the database).
CREATE INDEX IF NOT EXISTS tasks_created_idx       ON tasks (created_at, id);
CREATE INDEX IF NOT EXISTS tasks_owner_created_idx ON tasks (owner_id, created_at, id);
CREATE INDEX IF NOT EXISTS tasks_due_sort_idx      ON tasks ((COALESCE(due_at, '9999-12-31 23:59:59.999999+00'::timestamptz)), id);
CREATE INDEX IF NOT EXISTS tasks_owner_due_idx     ON tasks (owner_id, (COALESCE(due_at, '9999-12-31 23:59:59.999999+00'::timestamptz)), id);
CREATE INDEX IF NOT EXISTS tasks_priority_idx      ON tasks (priority, id);
CREATE INDEX IF NOT EXISTS tasks_status_idx        ON tasks (status, created_at, id);
CREATE INDEX IF NOT EXISTS tasks_due_at_idx        ON tasks (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_title_trgm_idx    ON tasks USING gin (title public.gin_trgm_ops);
