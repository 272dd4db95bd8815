-- move_trip: the assigned driver moves its ride one step along the table's row (arrive: at the
-- pickup, still en route; start: the rider is on board, from here only the driver (complete) or
-- ops can end it). The row's statuses come in ARGV, so both steps are this one script.
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
