-- Events a handler gave up on (events/handlers/dead_letter.rs), written in
-- the transaction that also puts them on `task-events.dlq` through the
-- outbox: listed and replayed by admins (GET /admin/dead-letters). A
-- record is dead-lettered once per handler even if its offset is
-- redelivered (the unique position).
CREATE TABLE dead_letters (
    id                 uuid PRIMARY KEY,
    handler            text NOT NULL,
    -- NULL when the record was no event at all (`malformed`).
    event_id           text,
    event_type         text,
    subject            text,
    record_key         bytea,
    payload            bytea NOT NULL,
    headers            jsonb NOT NULL,
    error              text NOT NULL,
    error_kind         text NOT NULL CHECK (error_kind IN ('retryable', 'permanent', 'malformed')),
    attempts           integer NOT NULL,
    original_topic     text NOT NULL,
    original_partition integer NOT NULL,
    original_offset    bigint NOT NULL,
    dead_lettered_at   timestamptz NOT NULL DEFAULT now(),
    -- Set once a replay handled it (or found it handled already).
    replayed_at        timestamptz,
    replay_outcome     text CHECK (replay_outcome IN ('handled', 'already-handled')),
    last_replay_error  text,
    UNIQUE (handler, original_topic, original_partition, original_offset)
);
-- The listings (by id, UUIDv7: newest first) of one handler, and the
-- pending ones a bulk replay takes oldest first; all handlers' use the key.
CREATE INDEX dead_letters_handler_idx ON dead_letters (handler, id);
CREATE INDEX dead_letters_pending_idx ON dead_letters (handler, id) WHERE replayed_at IS NULL;
