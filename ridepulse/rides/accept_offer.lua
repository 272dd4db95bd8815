-- accept_offer: the offered driver takes the ride; the offer's timeout stops counting.
-- An offer past its expiry on the server's clock is refused (conflict 'expired'), even if the
-- sweeper has not yet timed it out: the phone's clock and the network delay do not extend it.
-- KEYS 11 the driver.
local A = step_args()
local DRIVER = KEYS[11]
local ride = load_ride()
local stop = guard(A, ride, 'conflict') or guard_driver(A, ride, DRIVER)
if stop then return stop end

local now = now_ms()
if ride.offer_expires_at and ride.offer_expires_at ~= ''
    and now >= tonumber(ride.offer_expires_at) then
  return reply('conflict', 'expired')
end
local fields = {driver_id = A.driver_id, offer_driver_id = '', offer_expires_at = ''}
local version = move_ride(A, ride, fields, {}, now)
move_driver(A, DRIVER, now)
emit(A, {driver_id = A.driver_id, pickup_eta_s = tonumber(ride.pickup_eta_s), version = version}, now)
return reply('ok')
