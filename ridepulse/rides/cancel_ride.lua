-- cancel_ride: the rider (its own ride, before the trip starts) or ops (any live ride) cancels;
-- the ride's driver, if any, is freed in the same step.
-- KEYS 11 the ride's driver as the caller read it (absent when none).
-- ARGV X.. cancelled by, actor id. The caller passes the driver it read (A.driver_id); if the
-- ride has changed driver since, reply `retry` so it reads again (all keys must be in KEYS).
local A = step_args()
local DRIVER = KEYS[11]
local ride = load_ride()
local stop = guard(A, ride, 'conflict')
if stop then return stop end
if ARGV[X] == 'rider' and ARGV[X + 1] ~= ride.rider_id then return reply('forbidden') end
if ride_driver(ride) ~= A.driver_id then return {'retry', ''} end

local now = now_ms()
local fields = {cancelled_by = ARGV[X], offer_driver_id = '', offer_expires_at = ''}
-- the driver holding the offer may answer it a moment later: a 409, not a 404 as to a stranger
if (ride.offer_driver_id or '') ~= '' then fields.declined = with_declined(ride, ride.offer_driver_id) end
local version = move_ride(A, ride, fields, {}, now)
if DRIVER then
  -- Free the driver only if it still holds this ride; never touch another ride's driver.
  local d = redis.call('HMGET', DRIVER, 'status', 'ride_id')
  if contains(A.driver_from, d[1] or '') and d[2] == A.ride_id then move_driver(A, DRIVER, now) end
end
local data = {by = ARGV[X], version = version}
if A.driver_id ~= '' then data.driver_id = A.driver_id end
emit(A, data, now)
return reply('ok')
