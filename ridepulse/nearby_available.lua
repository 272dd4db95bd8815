-- nearby_available: the nearest drivers in the available-only geo index that are still
-- available, pinged recently (on the server's clock: TIME here, the same clock
-- update_positions.lua stamps `drivers_seen` with) and not among the drivers to skip. One round
-- trip for the search and the checks: every offer pays it, and on a busy CPU each extra trip is
-- another wait to be scheduled.
-- KEYS 1 drivers_geo, 2 driver_statuses (hash), 3 drivers_seen (zset).
-- ARGV 1 lon, 2 lat, 3 radius m, 4 count, 5 fresh within ms, 6.. driver ids to skip.
-- Returns {id, distance m, lon, lat, ...} nearest first, at most `count` drivers (strings: a
-- Lua number would lose the fraction on the way out).
-- The skipped, stale and busy are filtered *before* counting: a search that took the nearest
-- `count` and filtered after could return nobody while a free driver waited farther out (30
-- drivers who declined a ride hid every other driver from it, at every radius, until it
-- expired). The search widens its COUNT until it has `count` drivers or the radius is spent.
local limit = tonumber(ARGV[4])
local skip = {}
for i = 6, #ARGV do skip[ARGV[i]] = true end
local t = redis.call('TIME')
local after = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[5])
local out, taken, examined = {}, 0, {}
local want = limit + #ARGV - 5
while true do
  local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
    'BYRADIUS', ARGV[3], 'm', 'ASC', 'COUNT', want, 'WITHCOORD', 'WITHDIST')
  local hits, ids = {}, {}
  for i = 1, #found do
    local id = found[i][1]
    if not examined[id] then
      examined[id] = true
      if not skip[id] then
        hits[#hits + 1] = found[i]
        ids[#ids + 1] = id
      end
    end
  end
  if #ids > 0 then
    local statuses = redis.call('HMGET', KEYS[2], unpack(ids))
    local seen = redis.call('ZMSCORE', KEYS[3], unpack(ids))
    for i = 1, #ids do
      if taken < limit and statuses[i] == 'available' and seen[i] and tonumber(seen[i]) >= after then
        local hit = hits[i]
        out[#out + 1] = hit[1]
        out[#out + 1] = hit[2]
        out[#out + 1] = hit[3][1]
        out[#out + 1] = hit[3][2]
        taken = taken + 1
      end
    end
  end
  if taken >= limit or #found < want then return out end
  want = want * 2
end
