-- What PATCH /tasks/{id} makes the database run: postgres-store locks the
-- row, reads it, writes it back; the host appends the outbox record.
\set n random(1, :ids)
BEGIN;
SELECT id, owner_id, title, description, status, priority, due_at, created_at, updated_at, version
FROM plugin_postgres_store.tasks WHERE id = (SELECT id FROM bench_ids WHERE n = :n) AND owner_id = :owner FOR UPDATE;
UPDATE plugin_postgres_store.tasks SET title = 'patched', status = 'in_progress', updated_at = now(), version = version + 1
WHERE id = (SELECT id FROM bench_ids WHERE n = :n);
INSERT INTO outbox (topic, record_key, payload, headers, published_at)
VALUES ('task-events', gen_random_uuid()::text, convert_to(repeat('x', 600), 'UTF8'), '{"content-type":"application/json"}', now());
COMMIT;
