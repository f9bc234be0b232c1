-- GET /tasks: the first page (20 newest of the caller's tasks).
wrk.method = "GET"
wrk.path = "/tasks?limit=20"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
