-- offer_ride: reserve an available driver for a waiting ride. Ride and driver change together,
-- so a driver is never offered two rides, whatever the concurrency or redelivery.
-- KEYS 11 the driver. ARGV X.. pickup eta s, offer timeout ms, then the `expire` row (17).
-- Skips (no error) when the ride is no longer waiting or the driver is not free: matching
-- then tries its next candidate. A ride past its deadline (server clock) is offered to nobody:
-- it expires in this step (ride.expired) and the reply is skip 'deadline'.
local A = step_args()
local DRIVER = KEYS[11]
local ride = load_ride()
local stop = guard(A, ride, 'skip')
if stop then return stop end
local now = now_ms()
if overdue(ride, now) then
  expire_now(X + 2, now)
  return reply('skip', 'deadline')
end
local d = redis.call('HMGET', DRIVER, 'status', 'ride_id')
if not contains(A.driver_from, d[1] or '') or (d[2] or '') ~= '' then
  return reply('skip', 'driver')
end

local expires_at = now + tonumber(ARGV[X + 1])
local attempt = tonumber(ride.attempt) + 1
local fields = {
  offer_driver_id = A.driver_id, offer_expires_at = int(expires_at),
  attempt = int(attempt), pickup_eta_s = ARGV[X],
}
local version = move_ride(A, ride, fields, {}, now)
move_driver(A, DRIVER, now)
emit(A, {driver_id = A.driver_id, pickup_eta_s = tonumber(ARGV[X]), expires_at = expires_at,
  attempt = attempt, version = version}, now)
return reply('ok')
