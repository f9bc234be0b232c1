-- What POST /tasks makes postgres-store run, in the same transaction shape.
BEGIN;
INSERT INTO plugin_postgres_store.tasks (id, owner_id, title, description, status, priority, due_at, created_at, updated_at, version)
VALUES (gen_random_uuid(), :owner, 'benchmark task', NULL, 'todo', 3, '2030-01-01T00:00:00Z', now(), now(), 1);
COMMIT;
