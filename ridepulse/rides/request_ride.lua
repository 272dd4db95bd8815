-- request_ride: create a ride in `requested`, or name the ride its idempotency key maps to.
-- KEYS 11 the rider's ride set, 12 the idempotency key (optional).
-- ARGV X.. rider_id, market, pickup lat, lon, dropoff lat, lon, wait window ms, quote_id,
--   fare, surge, idempotency ttl s.
local A = step_args()
local RIDER_RIDES, IDEMPOTENCY = KEYS[11], KEYS[12]
if IDEMPOTENCY then
  local existing = redis.call('GET', IDEMPOTENCY)
  if existing then return {'exists', existing} end
end
if redis.call('EXISTS', RIDE) == 1 then
  if redis.call('SISMEMBER', APPLIED, A.event_id) == 1 then return reply('dup') end
  return reply('conflict', 'exists')
end

local now = now_ms()
local window_ms = tonumber(ARGV[X + 6])
local ride = {}
local fields = {
  ride_id = A.ride_id, rider_id = ARGV[X], market = ARGV[X + 1],
  pickup_lat = ARGV[X + 2], pickup_lon = ARGV[X + 3],
  dropoff_lat = ARGV[X + 4], dropoff_lon = ARGV[X + 5],
  deadline_at = int(now + window_ms), deadline_window_ms = int(window_ms),
  quote_id = ARGV[X + 7], fare = ARGV[X + 8], surge = ARGV[X + 9],
  driver_id = '', offer_driver_id = '', offer_expires_at = '', attempt = '0', declined = '',
  pickup_eta_s = '', trip_eta_s = '', cancelled_by = '',
}
local version = move_ride(A, ride, fields, {}, now)
redis.call('ZADD', ACTIVE, now, A.ride_id)
redis.call('SADD', RIDER_RIDES, A.ride_id)
if IDEMPOTENCY then
  redis.call('SET', IDEMPOTENCY, A.ride_id, 'EX', ARGV[X + 10])
end

local data = {
  rider_id = fields.rider_id,
  pickup = {lat = tonumber(fields.pickup_lat), lon = tonumber(fields.pickup_lon)},
  dropoff = {lat = tonumber(fields.dropoff_lat), lon = tonumber(fields.dropoff_lon)},
  requested_at = now, deadline_at = now + window_ms,
  fare = tonumber(fields.fare), surge = tonumber(fields.surge), version = version,
}
if fields.quote_id ~= '' then data.quote_id = fields.quote_id end
emit(A, data, now)
return reply('ok')
