-- The transactional outbox: every record the host publishes to Kafka is
-- first written here, in the transaction of the change it announces. The
-- relay publishes unpublished rows in id order and marks them.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    topic        text NOT NULL,
    record_key   text,
    payload      bytea NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Wakes the relays when a transaction that wrote to the outbox commits
-- (NOTIFY is delivered at commit, and once per transaction and payload).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- The processed-event ledger: a handler's effect and its ledger row commit
-- together, so a redelivered event is skipped.
CREATE TABLE processed_events (
    handler      text NOT NULL,
    event_id     text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (handler, event_id)
);

-- Outcomes of async commands (`Prefer: respond-async`), written in the
-- transaction that applies them: a redelivered command is never applied twice.
CREATE TABLE command_results (
    id          uuid PRIMARY KEY,
    issuer_id   uuid NOT NULL,
    status      text NOT NULL CHECK (status IN ('applied', 'failed')),
    result      jsonb NOT NULL,
    request_id  text,
    finished_at timestamptz NOT NULL DEFAULT now()
);

-- Written by the audit-log handler plugin (plugins/audit-log); read by
-- GET /tasks/{id}/history.
CREATE TABLE task_audit (
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
CREATE INDEX task_audit_task_idx ON task_audit (task_id, occurred_at, event_id);
