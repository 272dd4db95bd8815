-- leave_market: drivers whose newest ping is in another market leave this one. Out of its geo
-- index, and offline if they were available: this market neither offers them a ride nor counts
-- them as supply, and a ping of theirs it applies late does not index them again.
-- A driver holding a ride or an offer here keeps it, its status and its record: its ride's steps
-- need it here, and its status PUT and view still come here (ingest/market_moves.py) until the
-- ride lets it go; a later lookup or record write moves it out then.
-- KEYS 1 driver statuses, 2 available drivers' geo index, 3 rides stream, then per driver: its
--   driver hash, its driver-home record in this market.
-- ARGV 1 when the driver's newer record in the other market was written (ms), 2 source,
--   3 event type, 4 its schema version, 5 holding statuses (csv), then per driver: driver id,
--   event id.
-- A record here written at or after ARGV 1 means the driver pinged here since: it stays. A
-- driver with no record here has left already: the step is idempotent.
-- Returns {the ids of the drivers kept because they hold a ride or an offer here, the ids of
-- those that were available here (ingest/market_moves.py makes them available in their new
-- market: the driver's app still says online), the step's server time (ms)}.
local STATUSES, GEO, RIDES = KEYS[1], KEYS[2], KEYS[3]
local moved_at, source, event_type, event_v = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local kept, carried = {}, {}
for i = 0, (#ARGV - 5) / 2 - 1 do
  local driver_id, event_id = ARGV[6 + 2 * i], ARGV[7 + 2 * i]
  local driver_key, home_key = KEYS[4 + 2 * i], KEYS[5 + 2 * i]
  local recorded = tonumber(redis.call('GET', home_key) or '')
  local status = redis.call('HGET', driver_key, 'status') or ''
  if recorded and recorded < moved_at then
    if contains(ARGV[5], status) then
      kept[#kept + 1] = driver_id
    else
      redis.call('DEL', home_key)
      redis.call('ZREM', GEO, driver_id)
      if status == 'available' then
        carried[#carried + 1] = driver_id
        redis.call('HSET', driver_key, 'status', 'offline', 'ride_id', '', 'status_at', int(now))
        local version = redis.call('HINCRBY', driver_key, 'version', 1)
        redis.call('HSET', STATUSES, driver_id, 'offline')
        redis.call('XADD', RIDES, '*', 'id', event_id, 'type', event_type, 'v', event_v,
          'source', source, 'time', int(now), 'subject', 'driver/' .. driver_id,
          'data', cjson.encode({driver_id = driver_id, status = 'offline', version = version}),
          'traceparent', '')
      end
    end
  end
end
return {kept, carried, int(now)}
