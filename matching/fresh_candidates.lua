-- fresh_candidates: which drivers found by GEOSEARCH are available and fresh, on the server's
-- clock (TIME here, the same clock update_positions.lua stamps `drivers_seen` with).
-- KEYS 1 driver_statuses (hash), 2 drivers_seen (zset). ARGV 1 fresh within ms, 2.. driver ids.
-- Returns one flag per driver id (1: available and pinged within the window). One script rather
-- than a pipeline with TIME: a cluster pipeline cannot route a keyless command.
local t = redis.call('TIME')
local after = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1])
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
local statuses = redis.call('HMGET', KEYS[1], unpack(ids))
local seen = redis.call('ZMSCORE', KEYS[2], unpack(ids))
local flags = {}
for i = 1, #ids do
  local fresh = statuses[i] == 'available' and seen[i] and tonumber(seen[i]) >= after
  flags[i] = fresh and 1 or 0
end
return flags
