-- What GET /tasks?limit=20 makes postgres-store run for a user.
SELECT id, owner_id, title, description, status, priority, due_at, created_at, updated_at, version
FROM plugin_postgres_store.tasks WHERE owner_id = :owner ORDER BY created_at DESC, id DESC LIMIT 21;
