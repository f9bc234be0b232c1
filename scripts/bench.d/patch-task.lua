-- PATCH /tasks/{id} of a random id of IDS_FILE (no If-Match: the last
-- writer wins, as a client without versions sees it).
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
local headers = {
  ["Authorization"] = "Bearer " .. os.getenv("TOKEN"),
  ["Content-Type"] = "application/json",
}
math.randomseed(os.time())
request = function()
  local body = '{"title":"patched ' .. math.random(1000000) .. '","status":"in_progress"}'
  return wrk.format("PATCH", "/tasks/" .. ids[math.random(#ids)], headers, body)
end
