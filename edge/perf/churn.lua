-- wrk script: every other request is a URL never asked before (a distinct query on the origin's
-- 64 KiB or 2 MiB object); the others ask again for the URL first asked 128 requests earlier
-- on this thread (long done, so a disk hit, which the memory tier is offered). Both tiers fill
-- up and churn.
local counter, thread_id = 0, 0
local threads = 0
function setup(thread) thread:set("id", threads); threads = threads + 1 end
function init(args) thread_id = id or 0 end
request = function()
  counter = counter + 1
  local n = counter
  if counter % 2 == 0 then n = math.max(1, counter - 129) end
  local obj = (n % 4 == 1) and "/obj/2m" or "/obj/64k"
  return wrk.format("GET", obj .. "?churn=" .. thread_id .. "-" .. n)
end
