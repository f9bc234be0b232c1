-- One row per task event, keyed by the event id (a redelivered event
-- inserts nothing). A database of the first releases had this table in
-- `public`; the host hands it over to this schema, rows and all, before
-- this migration runs, and `IF NOT EXISTS` then leaves it as it is.
CREATE TABLE IF NOT EXISTS task_audit (
    event_id    text PRIMARY KEY,
    task_id     uuid NOT NULL,
    owner_id    uuid NOT NULL,
    event_type  text NOT NULL,
    task        jsonb NOT NULL,
    changes     jsonb,
    request_id  text,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS task_audit_task_idx ON task_audit (task_id, occurred_at, event_id);
