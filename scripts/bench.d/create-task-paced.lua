-- POST /tasks at a steady pace: each connection waits PACE_MS between its
-- requests, so CONNECTIONS * 1000 / PACE_MS is the offered rate.
wrk.method = "POST"
wrk.path = "/tasks"
wrk.body = '{"title":"benchmark task","priority":"high"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")

local pace = tonumber(os.getenv("PACE_MS"))

function delay()
  return pace
end
