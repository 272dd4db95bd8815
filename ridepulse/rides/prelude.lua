-- Helpers shared by the ride step scripts; scripts.py prepends this file to each of them.
-- No status name appears here: the step's row of the transition table (ridepulse/rides/state.py)
-- arrives in ARGV, so the rules live in one place.
--
-- KEYS of every ride step: 1 ride hash, 2 rides stream, 3 applied event ids, 4 active rides,
--   5 open rides, 6 offer timeouts, 7 ride counts, 8 driver statuses, 9 available drivers' geo
--   index, 10 driver positions, 11.. step-specific.
-- ARGV of every ride step: see ridepulse/rides/scripts.py step_argv (1..15), 16.. step-specific.
--
-- Replies: {code, detail, events appended, <HGETALL of the ride>...}, or {code, detail} alone
-- when nothing was written; codes: ok, dup (the event id was applied before: no second event),
-- conflict, skip, stale, forbidden, missing, retry, exists.

local RIDE, STREAM, APPLIED = KEYS[1], KEYS[2], KEYS[3]
local ACTIVE, OPEN, OFFERS, COUNTS, STATUSES = KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local AVAILABLE_GEO, POSITIONS = KEYS[9], KEYS[10]
local APPLIED_TTL_S = 86400 -- far beyond any redelivery window (claim idle x max deliveries)
local FINISHED_RIDE_TTL_S = 7 * 86400 -- finished rides stay readable for a week, then go

-- The step's row and event identity: ARGV 1..17, or the 17 from `first` for a step chained
-- after the script's own (scripts.py step_argv builds both).
local function step_args(first)
  local a = (first or 1) - 1
  return {
    event_id = ARGV[a + 1], source = ARGV[a + 2], event_type = ARGV[a + 3],
    event_v = ARGV[a + 4], from = ARGV[a + 5], to = ARGV[a + 6], counter = ARGV[a + 7],
    terminal = ARGV[a + 8] == '1', opens = ARGV[a + 9] == '1', offers = ARGV[a + 10] == '1',
    driver_from = ARGV[a + 11], driver_to = ARGV[a + 12], driver_holds = ARGV[a + 13] == '1',
    expected = ARGV[a + 14], ride_id = ARGV[a + 15], driver_id = ARGV[a + 16],
    traceparent = ARGV[a + 17],
  }
end
local X = 18 -- first step-specific ARGV

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as plain digits (tostring would switch to exponent notation past 1e14).
local function int(n)
  return string.format('%d', n)
end

local function contains(csv, item)
  for token in string.gmatch(csv, '[^,]+') do
    if token == item then return true end
  end
  return false
end

-- The ride's `declined` list with `driver_id` in it: drivers once offered the ride who hold no
-- offer of it now. Matching offers it to none of them again, and the API tells each one 409 on
-- a late accept or decline where a stranger gets 404.
local function with_declined(ride, driver_id)
  local declined = ride.declined or ''
  if contains(declined, driver_id) then return declined end
  if declined == '' then return driver_id end
  return declined .. ',' .. driver_id
end

local function load_ride()
  local flat = redis.call('HGETALL', RIDE)
  local ride = {}
  for i = 1, #flat, 2 do ride[flat[i]] = flat[i + 1] end
  return ride
end

-- Entries this script appended to the stream: the reply says how many (a step may chain a
-- second one, e.g. ride.expired after ride.unmatched), so the caller counts what it published.
local appended = 0

local function reply(code, detail)
  return {code, detail or '', appended, unpack(redis.call('HGETALL', RIDE))}
end

-- Checks every ride step makes before writing, in this order: the ride exists, the event was
-- not applied already (redelivery), the status allows the step, the caller's version still
-- holds (a zombie consumer's late write is refused, DESIGN §11). Nil means go ahead.
local function guard(A, ride, refused)
  if not ride.status then return {'missing', ''} end
  if redis.call('SISMEMBER', APPLIED, A.event_id) == 1 then return reply('dup') end
  if not contains(A.from, ride.status) then return reply(refused, 'state') end
  if A.expected ~= '' and A.expected ~= ride.version then return reply('stale', ride.version) end
  return nil
end

-- The driver a ride is with: the assigned one, else the one it is offered to, else ''.
local function ride_driver(ride)
  if ride.driver_id and ride.driver_id ~= '' then return ride.driver_id end
  return ride.offer_driver_id or ''
end

-- The acting driver must be the ride's, and its own hash must agree that it holds this ride.
local function guard_driver(A, ride, driver_key)
  if A.driver_id ~= ride_driver(ride) then return reply('conflict', 'driver') end
  local d = redis.call('HMGET', driver_key, 'status', 'ride_id')
  if not contains(A.driver_from, d[1] or '') or d[2] ~= A.ride_id then
    return reply('conflict', 'driver_state')
  end
  return nil
end

-- Writes the new status, the fields of the step and the version; keeps the open/offer/active
-- indexes, counts and the applied-event set in step. Returns the new version. `<status>_at` is
-- stamped only when absent: a requeued ride keeps its requested_at (abandoned assignment
-- timestamps are in `cleared`, so a re-offer stamps offered_at afresh).
local function move_ride(A, ride, fields, cleared, now)
  fields.status = A.to
  if not ride[A.to .. '_at'] then fields[A.to .. '_at'] = int(now) end
  local args = {}
  for k, v in pairs(fields) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  redis.call('HSET', RIDE, unpack(args))
  if #cleared > 0 then redis.call('HDEL', RIDE, unpack(cleared)) end
  local version = redis.call('HINCRBY', RIDE, 'version', 1)
  redis.call('ZREM', OPEN, A.ride_id)
  redis.call('ZREM', OFFERS, A.ride_id)
  if A.opens then redis.call('ZADD', OPEN, fields.deadline_at or ride.deadline_at, A.ride_id) end
  if A.offers then redis.call('ZADD', OFFERS, fields.offer_expires_at, A.ride_id) end
  if A.terminal then
    redis.call('ZREM', ACTIVE, A.ride_id)
    redis.call('EXPIRE', RIDE, FINISHED_RIDE_TTL_S)
  end
  redis.call('HINCRBY', COUNTS, A.counter, 1)
  redis.call('SADD', APPLIED, A.event_id)
  redis.call('EXPIRE', APPLIED, APPLIED_TTL_S)
  return version
end

-- Keeps matching's geo index holding available drivers only, in the same step as the status:
-- GEOSEARCH then returns candidates, not a crowd of busy drivers to filter out. A driver with
-- no position yet, or `stale` (silent past driver_stale_s), enters the index with its next ping
-- (matching.geo_index.update_positions): its last position is no promise of where it is.
local function index_driver(geo, positions, driver_id, status, stale)
  if status ~= 'available' or stale then
    redis.call('ZREM', geo, driver_id)
    return
  end
  local lat, lon = string.match(redis.call('HGET', positions, driver_id) or '', '^([^,]+),([^,]+),')
  if lat then redis.call('GEOADD', geo, lon, lat, driver_id) end
end

-- Moves the step's driver to its new status, binding it to the ride or releasing it.
local function move_driver(A, driver_key, now)
  if A.driver_to == '' or A.driver_id == '' then return end
  local ride_id = ''
  if A.driver_holds then ride_id = A.ride_id end
  redis.call('HSET', driver_key, 'driver_id', A.driver_id, 'status', A.driver_to,
    'ride_id', ride_id, 'status_at', int(now))
  redis.call('HINCRBY', driver_key, 'version', 1)
  redis.call('HSET', STATUSES, A.driver_id, A.driver_to)
  index_driver(AVAILABLE_GEO, POSITIONS, A.driver_id, A.driver_to)
end

-- Appends the step's event with the envelope fields in contract order (contracts/envelope.py).
local function emit(A, data, now)
  data.ride_id = A.ride_id
  redis.call('XADD', STREAM, '*', 'id', A.event_id, 'type', A.event_type, 'v', A.event_v,
    'source', A.source, 'time', int(now), 'subject', 'ride/' .. A.ride_id,
    'data', cjson.encode(data), 'traceparent', A.traceparent)
  appended = appended + 1
end

-- The ride's wait for a driver is over on the server clock: no offer may be made any more.
local function overdue(ride, now)
  return now >= tonumber(ride.deadline_at)
end

-- Expires the waiting ride in the same script that found it overdue, by the table's `expire`
-- row (ARGV from `first`), announcing ride.expired as expire_ride does: no consumer can offer
-- the ride between the step and its expiry.
local function expire_now(first, now)
  local E = step_args(first)
  local ride = load_ride()
  if not contains(E.from, ride.status) then return end
  local version = move_ride(E, ride, {}, {}, now)
  emit(E, {version = version}, now)
end
