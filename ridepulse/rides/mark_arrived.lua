-- mark_arrived: the assigned driver is at the pickup (it stays en route until the trip starts).
-- KEYS 11 the driver.
local A = step_args()
local DRIVER = KEYS[11]
local ride = load_ride()
local stop = guard(A, ride, 'conflict') or guard_driver(A, ride, DRIVER)
if stop then return stop end

local now = now_ms()
local version = move_ride(A, ride, {}, {}, now)
move_driver(A, DRIVER, now)
emit(A, {driver_id = A.driver_id, version = version}, now)
return reply('ok')
