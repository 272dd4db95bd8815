-- request_ride: create a ride in `requested`, or answer what an earlier request with the same
-- idempotency key was answered. Checks in this order, all in one atomic step:
--   1. the idempotency key (first: a retry is answered even if its quote has since been used or
--      expired); the same key with another request body, or a record of another rider, is
--      refused (defence in depth: the key's name already tells riders apart);
--   2. the rider's open rides (limit; 0 = none);
--   3. the quote: this rider's, not used yet, for this pickup and dropoff; it is used up here.
-- KEYS 11 the rider's ride set, 12 the rider's open rides, 13 the idempotency record,
--   14 the quote (13 and 14 are only touched when ARGV says they are in use).
-- ARGV X.. rider_id, market, pickup lat, lon, dropoff lat, lon, wait window ms, quote_id,
--   fare, surge (both taken from the quote when there is one), idempotency ttl s,
--   idempotency in use (1/0), request body hash, open rides limit, pickup cells (CSV),
--   dropoff cells (CSV): the H3 cells a quote's pickup/dropoff cell must be among.
-- Extra replies: {'exists', ride_id}, {'idempotency', ride_id}, {'limit', open count},
--   {'quote', unknown|rider|used|pickup|dropoff}.
local A = step_args()
local RIDER_RIDES, RIDER_OPEN, IDEMPOTENCY, QUOTE = KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local rider_id, quote_id = ARGV[X], ARGV[X + 7]
local idem_ttl, idem_used, body_hash = ARGV[X + 10], ARGV[X + 11] == '1', ARGV[X + 12]
local open_limit = tonumber(ARGV[X + 13])

if idem_used then
  local stored = redis.call('HMGET', IDEMPOTENCY, 'ride_id', 'body', 'rider_id')
  -- A record without its rider is of the layout before `idem:<rider length>:`: its own rider
  -- never reads this name again, and another rider's request may land on it (rider `3` with key
  -- `abc:k` then, rider `abc` with key `k` now), so it is no answer and is written over.
  if stored[1] and stored[3] then
    if stored[2] ~= body_hash or stored[3] ~= rider_id then return {'idempotency', stored[1]} end
    -- A write on purpose: WAITAOF on this connection then also covers the original ride,
    -- which another connection may have written moments ago and not fsynced yet.
    redis.call('EXPIRE', IDEMPOTENCY, idem_ttl)
    return {'exists', stored[1]}
  end
end
if redis.call('EXISTS', RIDE) == 1 then
  if redis.call('SISMEMBER', APPLIED, A.event_id) == 1 then return reply('dup') end
  return reply('conflict', 'exists')
end

local open = 0 -- pruned on every request, so the set stays as small as the rider's open rides
for _, id in ipairs(redis.call('SMEMBERS', RIDER_OPEN)) do
  if redis.call('ZSCORE', ACTIVE, id) then
    open = open + 1
  else
    redis.call('SREM', RIDER_OPEN, id) -- terminal (or gone): no longer counts
  end
end
if open_limit > 0 and open >= open_limit then return {'limit', tostring(open)} end

local fare, surge = ARGV[X + 8], ARGV[X + 9]
if quote_id ~= '' then
  local q = redis.call('HMGET', QUOTE, 'rider_id', 'pickup_cell', 'dropoff_cell', 'fare',
    'surge', 'ride_id')
  if not q[1] then return {'quote', 'unknown'} end
  if q[1] ~= rider_id then return {'quote', 'rider'} end
  if q[6] then return {'quote', 'used'} end
  if not contains(ARGV[X + 14], q[2]) then return {'quote', 'pickup'} end
  if not contains(ARGV[X + 15], q[3]) then return {'quote', 'dropoff'} end
  fare, surge = q[4], q[5]
  redis.call('HSET', QUOTE, 'ride_id', A.ride_id) -- used up; it expires with its TTL
end

local now = now_ms()
local window_ms = tonumber(ARGV[X + 6])
local ride = {}
local fields = {
  ride_id = A.ride_id, rider_id = rider_id, market = ARGV[X + 1],
  pickup_lat = ARGV[X + 2], pickup_lon = ARGV[X + 3],
  dropoff_lat = ARGV[X + 4], dropoff_lon = ARGV[X + 5],
  deadline_at = int(now + window_ms), deadline_window_ms = int(window_ms),
  quote_id = quote_id, fare = fare, surge = surge,
  driver_id = '', offer_driver_id = '', offer_expires_at = '', attempt = '0', declined = '',
  pickup_eta_s = '', trip_eta_s = '', cancelled_by = '',
}
local version = move_ride(A, ride, fields, {}, now)
redis.call('ZADD', ACTIVE, now, A.ride_id)
redis.call('SADD', RIDER_RIDES, A.ride_id)
redis.call('SADD', RIDER_OPEN, A.ride_id)
if idem_used then
  redis.call('HSET', IDEMPOTENCY, 'ride_id', A.ride_id, 'body', body_hash, 'rider_id', rider_id)
  redis.call('EXPIRE', IDEMPOTENCY, idem_ttl)
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
