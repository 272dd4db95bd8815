-- set_eta: refresh a live ride's ETAs. Not a state change: no event and no version bump, so
-- frequent ETA updates never fence out a matching step that read the version just before.
-- KEYS 1 ride hash. ARGV field, value pairs.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
