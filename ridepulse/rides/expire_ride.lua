-- expire_ride: no driver was found within the deadline. Skips (no error) when the ride is no
-- longer waiting, or its deadline has not passed on the server clock (a caller's clock ahead).
local A = step_args()
local ride = load_ride()
local stop = guard(A, ride, 'skip')
if stop then return stop end
local now = now_ms()
if not overdue(ride, now) then return reply('skip', 'not_due') end

local version = move_ride(A, ride, {}, {}, now)
emit(A, {version = version}, now)
return reply('ok')
