-- update_positions: apply a batch of pings to the matching index in one atomic step.
-- KEYS 1 drivers_seen (zset: server time of the last accepted ping, ms), 2 positions (hash:
--      packed "lat,lon,ts,heading", ts being the phone's), 3 driver_statuses (hash),
--      4 drivers_geo (available drivers only).
-- ARGV 1: how many of the leading triples restamp drivers_seen (matching/geo_filter.py: a stamp
-- a few seconds old is restamped, not every ping's), then triples: driver_id, ts, packed
-- position — the newest ping per driver of the batch.
-- Two clocks, each for what it can answer: the phone's ts orders one driver's pings (a ping not
-- newer than the stored one is a redelivery or arrived out of order, and is ignored); the
-- server's TIME says how fresh the driver is, so a phone whose clock runs 31 s slow is as fresh
-- as any other (seen: every ping accepted, never offered a ride).
-- Atomic with the ride scripts' `index_driver`: a driver that goes available between a read and a
-- write is never left out of the geo set (the race a read-then-write pipeline has).
-- Returns how many drivers moved.
local SEEN, POSITIONS, STATUSES, GEO = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local stamped = tonumber(ARGV[1])
local n = (#ARGV - 1) / 3
local ids = {}
for i = 1, n do ids[i] = ARGV[3 * i - 1] end
local stored = redis.call('HMGET', POSITIONS, unpack(ids))
local statuses = redis.call('HMGET', STATUSES, unpack(ids))
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local positions, seen, geo = {}, {}, {}
for i = 1, n do
  local ts, packed = ARGV[3 * i], ARGV[3 * i + 1]
  local held = stored[i] and string.match(stored[i], '^[^,]*,[^,]*,([^,]+)')
  if not held or tonumber(ts) > tonumber(held) then
    positions[#positions + 1] = ids[i]
    positions[#positions + 1] = packed
    if i <= stamped then
      seen[#seen + 1] = now
      seen[#seen + 1] = ids[i]
    end
    if statuses[i] == 'available' then
      local lat, lon = string.match(packed, '^([^,]+),([^,]+),')
      geo[#geo + 1] = lon
      geo[#geo + 1] = lat
      geo[#geo + 1] = ids[i]
    end
  end
end
if #positions == 0 then return 0 end
redis.call('HSET', POSITIONS, unpack(positions))
if #seen > 0 then redis.call('ZADD', SEEN, unpack(seen)) end
if #geo > 0 then redis.call('GEOADD', GEO, unpack(geo)) end
return #positions / 2
