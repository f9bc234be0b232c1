-- POST /tasks with Prefer: respond-async (202 + a command).
wrk.method = "POST"
wrk.path = "/tasks"
wrk.body = '{"title":"benchmark task","priority":"high","due_at":"2030-01-01T00:00:00Z"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Prefer"] = "respond-async"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
