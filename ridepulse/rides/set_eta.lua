-- set_eta: refresh a live ride's ETAs. Not a state change: no event and no version bump, so
-- frequent ETA updates never fence out a matching step that read the version just before.
-- KEYS 1 ride hash; 2 (eta only) the stream eta.updated goes to; 3 (leased eta only) the
-- market's eta lease (ridepulse/leases.py).
-- ARGV 1 the writer's fence "<token>:<owner>" ('' without a lease), 2 n, then n items of
-- field, value pairs; with KEYS[2], the stream's MAXLEN and the event's field, value pairs.
-- Returns 1 written (and announced), 0 no such ride, -1 refused: the lease is another
-- replica's now, so a paused old owner can neither overwrite the new owner's ETAs nor
-- announce its own after them (the write and its announcement are one step).
if KEYS[3] and redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], unpack(ARGV, 3, 2 + n))
if KEYS[2] then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3 + n], '*', unpack(ARGV, 4 + n))
end
return 1
