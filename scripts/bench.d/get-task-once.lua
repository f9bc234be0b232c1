-- GET /tasks/{id}, walking IDS_FILE so that no id is asked twice while
-- the ids last: reads that miss the cache. wrk_run starts at most two
-- threads; each walks its own half.
local threads = 0
function setup(thread)
  thread:set("half", threads)
  threads = threads + 1
end

function init()
  ids = {}
  for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
  headers = { ["Authorization"] = "Bearer " .. os.getenv("TOKEN") }
  position = half * math.floor(#ids / 2)
end

request = function()
  position = position % #ids + 1
  return wrk.format("GET", "/tasks/" .. ids[position], headers)
end
