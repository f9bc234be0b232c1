-- A reading user's mix: of 50 requests, 1 creates a task, 5 list the first
-- page, the rest read a random task of IDS_FILE.
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
local token = "Bearer " .. os.getenv("TOKEN")
local read = { ["Authorization"] = token }
local write = { ["Authorization"] = token, ["Content-Type"] = "application/json" }
math.randomseed(os.time())
request = function()
  local draw = math.random(50)
  if draw == 1 then
    return wrk.format("POST", "/tasks", write, '{"title":"mixed load","priority":"low"}')
  elseif draw <= 6 then
    return wrk.format("GET", "/tasks?limit=20", read)
  end
  return wrk.format("GET", "/tasks/" .. ids[math.random(#ids)], read)
end
