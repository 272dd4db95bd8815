-- lose_driver: the ride's assigned driver has been silent longer than the allowed time on the
-- server clock. Before pickup (row lose_driver) the ride goes back to `requested` with a fresh
-- wait window, the driver remembered in `declined`; during the trip (row lose_driver_on_trip)
-- it is cancelled by ops. The driver goes offline (it is not there to take another ride) and
-- the event says cause = driver_lost.
-- KEYS 11 the driver, 12 drivers_seen (server time of each driver's last ping).
-- ARGV X.. silence ms, assignment timestamps to clear (comma-separated).
-- Skips (no error) when the ride has moved on, or the driver pinged within the silence: a ping
-- that lands between the janitor's read and this step keeps the driver on its ride.
local A = step_args()
local DRIVER, SEEN = KEYS[11], KEYS[12]
local ride = load_ride()
local stop = guard(A, ride, 'skip') or guard_driver(A, ride, DRIVER)
if stop then return stop end

local now = now_ms()
local last_seen = tonumber(redis.call('ZSCORE', SEEN, A.driver_id) or '')
if last_seen and now - last_seen < tonumber(ARGV[X]) then return reply('skip', 'alive') end

local fields, cleared, data = {}, {}, {driver_id = A.driver_id, cause = 'driver_lost'}
if A.opens then
  fields = {driver_id = '', offer_driver_id = '', offer_expires_at = '',
    declined = with_declined(ride, A.driver_id),
    deadline_at = int(now + tonumber(ride.deadline_window_ms))}
  for token in string.gmatch(ARGV[X + 1], '[^,]+') do cleared[#cleared + 1] = token end
  data.reason = 'timeout'
else
  fields = {cancelled_by = 'ops', offer_driver_id = '', offer_expires_at = ''}
  data.by = 'ops'
end
data.version = move_ride(A, ride, fields, cleared, now)
move_driver(A, DRIVER, now)
emit(A, data, now)
return reply('ok')
