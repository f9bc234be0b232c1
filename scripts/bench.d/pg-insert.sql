-- What POST /tasks makes the database run, in the same transaction shape:
-- postgres-store's INSERT and the host's outbox record (~600 bytes, marked
-- published so the relay leaves it alone).
BEGIN;
INSERT INTO plugin_postgres_store.tasks (id, owner_id, title, description, status, priority, due_at, created_at, updated_at, version)
VALUES (gen_random_uuid(), :owner, 'benchmark task', NULL, 'todo', 3, '2030-01-01T00:00:00Z', now(), now(), 1);
INSERT INTO outbox (topic, record_key, payload, headers, published_at)
VALUES ('task-events', gen_random_uuid()::text, convert_to(repeat('x', 600), 'UTF8'), '{"content-type":"application/json"}', now());
COMMIT;
