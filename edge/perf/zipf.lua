-- wrk script: GET /obj/z/N for N in 0..999 with Zipf (s = 1) popularity, so that a few objects
-- are hot and a long tail is cold, as in CDN traces. Used by peers.sh (the "mix" size) and rss.sh.
local n, s = 1000, 1.0
local cdf, total = {}, 0
for i = 1, n do
  total = total + 1 / (i ^ s)
  cdf[i] = total
end
for i = 1, n do cdf[i] = cdf[i] / total end

-- Seed each thread differently: wrk starts them in the same second.
function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

request = function()
  local u, lo, hi = math.random(), 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", "/obj/z/" .. (lo - 1))
end
