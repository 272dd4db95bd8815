"""Run a handler's non-idempotent effect once per event id, even under redelivery.

The guard key and the effect commit in one MULTI/EXEC under WATCH: either both happen or
neither, so a crash between them cannot double-apply nor lose the effect. The guard must share
the market hash tag with the effect's keys (use `guard_key`). No product handler needs it today
(their effects are version-checked Lua steps or idempotent writes): the crash tests use it to
count that every effect happened exactly once, connected as the operator. A handler with such an
effect would take it into ridepulse/bus/ again, and its service user WATCH, MULTI, EXEC and the
guard keys (ridepulse/acl_grants.py), which no service user holds today."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from ridepulse.keys import MarketKeys

GUARD_TTL_S = 7 * 24 * 3600  # longer than any redelivery window (claim idle × max deliveries)


async def apply_once(
    redis: aioredis.Redis,
    guard_key: str,
    effect: Callable[[Any], None],
    *,
    ttl_s: int = GUARD_TTL_S,
) -> bool:
    """Queue `effect(pipe)` with the guard; True if it ran now, False if it had run before."""
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(guard_key)
                if await pipe.exists(guard_key):
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(guard_key, b"1", ex=ttl_s)
                effect(pipe)
                await pipe.execute()
                return True
            except WatchError:
                # Another consumer set the guard between WATCH and EXEC: re-check, it has run.
                continue


def guard_key(keys: MarketKeys, group: str, event_id: str) -> str:
    """Guard of a group's non-idempotent effect for one event id, in the market's hash slot."""
    return f"{keys.prefix}:{{{keys.market}}}:done:{group}:{event_id}"


def scratch_key(keys: MarketKeys, name: str) -> str:
    """A key a test owns for the effects it counts, in the market's hash slot."""
    return f"{keys.prefix}:{{{keys.market}}}:x:{name}"
