-- The schema of the postgres-store plugin (plugins/postgres-store). The host
-- applies it with its other migrations but never reads or writes this table:
-- every task statement comes from the plugin through the `sql` import.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE tasks (
    id          uuid PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
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

-- Keyset pagination orders by (sort key, id); each sort has its index, and
-- the owner-scoped variants serve the role `user`, who only sees own tasks.
CREATE INDEX tasks_created_idx       ON tasks (created_at, id);
CREATE INDEX tasks_owner_created_idx ON tasks (owner_id, created_at, id);
CREATE INDEX tasks_due_sort_idx      ON tasks ((COALESCE(due_at, '9999-12-31 23:59:59.999999+00'::timestamptz)), id);
CREATE INDEX tasks_owner_due_idx     ON tasks (owner_id, (COALESCE(due_at, '9999-12-31 23:59:59.999999+00'::timestamptz)), id);
CREATE INDEX tasks_priority_idx      ON tasks (priority, id);
CREATE INDEX tasks_status_idx        ON tasks (status, created_at, id);
CREATE INDEX tasks_due_at_idx        ON tasks (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX tasks_title_trgm_idx    ON tasks USING gin (title gin_trgm_ops);
