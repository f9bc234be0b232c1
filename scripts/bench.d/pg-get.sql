-- What GET /tasks/{id} makes postgres-store run (bench_ids maps 1..N to the seeded ids).
\set n random(1, :ids)
SELECT id, owner_id, title, description, status, priority, due_at, created_at, updated_at, version
FROM plugin_postgres_store.tasks WHERE id = (SELECT id FROM bench_ids WHERE n = :n) AND owner_id = :owner;
