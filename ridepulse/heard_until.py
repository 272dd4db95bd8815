"""The platform's own deafness, kept in Redis so a restart does not forget it.

While Redis is unreachable or frozen, or the platform is down, no driver's ping gets in: that
is not the drivers' silence (ridepulse/unheard.py). The janitor's every sweep stamps the
market's heard-until (server clock); a sweep finding the stamp older than `gap_ms` (a few sweep
intervals: the janitor was down, or could not reach Redis) records [stamp, now] as unheard.
Both live in the market's slot, and one script reads, records and stamps, so of janitor
replicas starting together exactly one records the stretch and all of them count it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from ridepulse.keys import MarketKeys
from ridepulse.replies import text

# KEYS 1 heard-until stamp, 2 unheard stretches. ARGV 1 now ms (the pass's server time), 2 gap ms.
# Returns the stamp it found when it recorded a stretch ('' if none), then every stretch kept.
_HEAR = """
local stamp = redis.call('GET', KEYS[1])
local last, now = tonumber(stamp or ''), tonumber(ARGV[1])
local recorded = ''
if last and now - last > tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[2], ARGV[1], stamp .. ':' .. ARGV[1])
  recorded = stamp
end
if not last or now > last then
  redis.call('SET', KEYS[1], ARGV[1])
end
local stretches = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '+inf')
table.insert(stretches, 1, recorded)
return stretches
"""


@dataclass(frozen=True, slots=True)
class Heard:
    """What one pass learnt: the stretch it recorded, if any, and every one kept."""

    recorded: tuple[int, int] | None
    stretches: list[tuple[int, int]]


async def hear(redis: aioredis.Redis, keys: MarketKeys, now_ms: int, gap_ms: int) -> Heard:
    """Stamp the market heard at `now_ms`; a stamp older than `gap_ms` makes the time since it
    unheard."""
    reply: Any = await redis.register_script(_HEAR)(
        keys=[keys.drivers_heard_until, keys.drivers_unheard], args=[now_ms, gap_ms]
    )
    found, *members = (text(r) for r in reply)
    stretches = []
    for member in members:
        start, end = member.split(":")
        stretches.append((int(start), int(end)))
    return Heard((int(found), now_ms) if found else None, stretches)


async def forget_unheard(redis: aioredis.Redis, keys: MarketKeys, before_ms: int) -> None:
    """Drop stretches that ended before `before_ms` (no cutoff looks back that far)."""
    await redis.zremrangebyscore(keys.drivers_unheard, "-inf", f"({before_ms}")
