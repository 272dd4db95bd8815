-- nearby_available: the nearest drivers in the available-only geo index that are still
-- available and pinged recently, on the server's clock (TIME here, the same clock
-- update_positions.lua stamps `drivers_seen` with). One round trip for the search and the check:
-- every offer pays it, and on a busy CPU each extra trip is another wait to be scheduled.
-- KEYS 1 drivers_geo, 2 driver_statuses (hash), 3 drivers_seen (zset).
-- ARGV 1 lon, 2 lat, 3 radius m, 4 count, 5 fresh within ms.
-- Returns {id, distance m, lon, lat, ...} nearest first, fresh drivers only (strings: a Lua
-- number would lose the fraction on the way out).
local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
  'BYRADIUS', ARGV[3], 'm', 'ASC', 'COUNT', ARGV[4], 'WITHCOORD', 'WITHDIST')
if #found == 0 then return {} end
local t = redis.call('TIME')
local after = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[5])
local ids = {}
for i = 1, #found do ids[i] = found[i][1] end
local statuses = redis.call('HMGET', KEYS[2], unpack(ids))
local seen = redis.call('ZMSCORE', KEYS[3], unpack(ids))
local out = {}
for i = 1, #ids do
  if statuses[i] == 'available' and seen[i] and tonumber(seen[i]) >= after then
    local hit = found[i]
    out[#out + 1] = hit[1]
    out[#out + 1] = hit[2]
    out[#out + 1] = hit[3][1]
    out[#out + 1] = hit[3][2]
  end
end
return out
