-- evict_drivers: forget drivers silent longer than the eviction time (server clock), so the
-- driver hashes, statuses, positions and indexes level off as drivers come and go.
-- KEYS 1 drivers_seen, 2 positions, 3 driver statuses, 4 available drivers' geo index,
--   5 rides stream, 6.. one driver hash per driver in ARGV.
-- ARGV 1 silence ms, 2 source, then per driver: driver id, event id.
-- A driver holding a ride or an offer is never evicted here: its ride is resolved first (the
-- offer times out; lose_driver.lua takes the ride back), and it goes next time. A driver that
-- pinged since the caller read it is kept. An available driver's eviction is announced as
-- driver.status offline, so readers of the stream see it leave.
-- Returns {the ids evicted, the number of driver.status entries appended}.
local SEEN_KEY, POS_KEY, STATUS_KEY, GEO_KEY, RIDES_KEY = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local silence_ms, source = tonumber(ARGV[1]), ARGV[2]
local now = now_ms()
local evicted = {}
local holds = {offered = true, en_route = true, on_trip = true}
for i = 0, (#ARGV - 2) / 2 - 1 do
  local driver_id, event_id, driver_key = ARGV[3 + 2 * i], ARGV[4 + 2 * i], KEYS[6 + i]
  local last_seen = tonumber(redis.call('ZSCORE', SEEN_KEY, driver_id) or '')
  local status = redis.call('HGET', driver_key, 'status') or ''
  if last_seen and now - last_seen >= silence_ms and not holds[status] then
    local version = tonumber(redis.call('HGET', driver_key, 'version') or '0') + 1
    redis.call('DEL', driver_key)
    redis.call('HDEL', STATUS_KEY, driver_id)
    redis.call('HDEL', POS_KEY, driver_id)
    redis.call('ZREM', SEEN_KEY, driver_id)
    redis.call('ZREM', GEO_KEY, driver_id)
    if status == 'available' then
      redis.call('XADD', RIDES_KEY, '*', 'id', event_id, 'type', 'driver.status', 'v', '1',
        'source', source, 'time', int(now), 'subject', 'driver/' .. driver_id,
        'data', cjson.encode({driver_id = driver_id, status = 'offline', version = version}),
        'traceparent', '')
      appended = appended + 1
    end
    evicted[#evicted + 1] = driver_id
  end
end
return {evicted, appended}
