-- set_eta: refresh a live ride's ETAs. Not a state change: no event and no version bump, so
-- frequent ETA updates never fence out a matching step that read the version just before.
-- KEYS 1 ride hash, 2 (leased eta only) the market's eta lease (ridepulse/leases.py).
-- ARGV 1 the writer's fence "<token>:<owner>" ('' without a lease), then field, value pairs.
-- Returns 1 written, 0 no such ride, -1 refused: the lease is another replica's now, so a
-- paused old owner cannot overwrite the new owner's ETAs.
if KEYS[2] and redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
