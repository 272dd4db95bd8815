-- requeue_ride: the ride goes back to `requested` without its driver (offer declined or timed
-- out, or the assigned driver cancelled); the driver is remembered in `declined` so matching
-- skips it, and is free again.
-- KEYS 11 the driver. ARGV X.. reason, renew deadline ('1': the rider gets a fresh wait window,
--   as after a driver cancel the original deadline may long have passed), assignment timestamps
--   to clear, then optionally the `expire` row (17): a ride back to waiting past its deadline
--   (server clock) expires in the same step, after its ride.unmatched, instead of waiting for
--   an offer it may no longer get. A 'timeout' re-checks the offer's expiry on the server clock
--   and skips ('not_due') when it has not passed: a sweeper whose clock runs ahead never cuts an
--   offer short.
local A = step_args()
local DRIVER = KEYS[11]
local ride = load_ride()
local stop = guard(A, ride, 'conflict') or guard_driver(A, ride, DRIVER)
if stop then return stop end

local now = now_ms()
local expires_at = tonumber(ride.offer_expires_at or '')
if ARGV[X] == 'timeout' and expires_at and now < expires_at then
  return reply('skip', 'not_due')
end
local fields = {driver_id = '', offer_driver_id = '', offer_expires_at = '',
  declined = with_declined(ride, A.driver_id)}
if ARGV[X + 1] == '1' then
  fields.deadline_at = int(now + tonumber(ride.deadline_window_ms))
end
local cleared = {}
for token in string.gmatch(ARGV[X + 2], '[^,]+') do cleared[#cleared + 1] = token end
local version = move_ride(A, ride, fields, cleared, now)
move_driver(A, DRIVER, now)
emit(A, {driver_id = A.driver_id, reason = ARGV[X], version = version}, now)
if (ARGV[X + 3] or '') ~= '' and overdue(load_ride(), now) then expire_now(X + 3, now) end
return reply('ok')
