-- GET /tasks/{id} for a random id of IDS_FILE.
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
local headers = { ["Authorization"] = "Bearer " .. os.getenv("TOKEN") }
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/tasks/" .. ids[math.random(#ids)], headers)
end
