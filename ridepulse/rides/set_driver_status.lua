-- set_driver_status: a driver goes available or offline (its own choice, never while it holds a
-- ride or an offer). Setting the status it has already is a no-op: no version, no event.
-- KEYS 1 driver hash, 2 driver statuses, 3 rides stream, 4 available drivers' geo index,
--   5 driver positions, 6 drivers_seen (server time of the last ping; optional).
-- ARGV 1 event id, 2 source, 3 driver id, 4 new status, 5 allowed from-statuses, 6 traceparent,
--   7 event type, 8 its schema version, 9 driver_stale_s in ms (optional, with KEYS 6),
--   10 a server time (ms; optional): a driver whose status was set at or after it is left as it
--   is (a 'dup'), so a status carried from another market never overrides a newer PUT.
-- A driver going available whose last ping reached the server longer ago than ARGV 9 is not
-- indexed at its last position: matching would not offer it (nearby_available.lua, the same
-- test on the same clock), but quotes and surge supply read the index. Its next ping indexes it.
local DRIVER_KEY, DRIVER_STATUSES, RIDES = KEYS[1], KEYS[2], KEYS[3]
local DRIVER_GEO, DRIVER_POSITIONS = KEYS[4], KEYS[5]
local driver_id, to = ARGV[3], ARGV[4]
local current = redis.call('HGET', DRIVER_KEY, 'status')
local function driver_reply(code, detail)
  return {code, detail or '', appended, unpack(redis.call('HGETALL', DRIVER_KEY))}
end
if current == to then return driver_reply('dup') end
if ARGV[10] and ARGV[10] ~= '' then
  local set_at = tonumber(redis.call('HGET', DRIVER_KEY, 'status_at') or '')
  if set_at and set_at >= tonumber(ARGV[10]) then return driver_reply('dup') end
end
if current and not contains(ARGV[5], current) then return driver_reply('conflict', current) end

local now = now_ms()
redis.call('HSET', DRIVER_KEY, 'driver_id', driver_id, 'status', to, 'ride_id', '',
  'status_at', int(now))
local version = redis.call('HINCRBY', DRIVER_KEY, 'version', 1)
redis.call('HSET', DRIVER_STATUSES, driver_id, to)
local stale = false
if KEYS[6] and ARGV[9] then
  local seen = tonumber(redis.call('ZSCORE', KEYS[6], driver_id) or '')
  stale = not seen or now - seen > tonumber(ARGV[9])
end
index_driver(DRIVER_GEO, DRIVER_POSITIONS, driver_id, to, stale)
-- A driver that never pinged still gets a last-seen time (NX: a ping's is never moved), so the
-- janitor can forget it once it stays silent; with no position it is never offered a ride.
if KEYS[6] then redis.call('ZADD', KEYS[6], 'NX', now, driver_id) end
redis.call('XADD', RIDES, '*', 'id', ARGV[1], 'type', ARGV[7], 'v', ARGV[8],
  'source', ARGV[2], 'time', int(now), 'subject', 'driver/' .. driver_id,
  'data', cjson.encode({driver_id = driver_id, status = to, version = version}),
  'traceparent', ARGV[6])
appended = appended + 1
return driver_reply('ok')
