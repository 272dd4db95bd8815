-- complete_trip: the trip ends, the final fare (if given) replaces the quoted one, and the
-- driver is free again. KEYS 11 the driver. ARGV X final fare ('' keeps the quoted fare).
local A = step_args()
local DRIVER = KEYS[11]
local ride = load_ride()
local stop = guard(A, ride, 'conflict') or guard_driver(A, ride, DRIVER)
if stop then return stop end

local now = now_ms()
local fields = {}
local fare = ride.fare
if ARGV[X] ~= '' then
  fare = ARGV[X]
  fields.fare = fare
end
local version = move_ride(A, ride, fields, {}, now)
move_driver(A, DRIVER, now)
emit(A, {driver_id = A.driver_id, fare = tonumber(fare), version = version}, now)
return reply('ok')
