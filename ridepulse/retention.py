"""Sets that only ever grew, trimmed: each rider's ride set and open-rides set, and the
heartbeat set.

- A rider's ride set (`rider_rides`, written by request_ride.lua) keeps every open ride and
  the newest `keep` finished ones; rides whose hash has expired (a week after they finished)
  leave it. Found by SCAN: request_ride.lua owns no index of riders to read instead.
- A rider's open-rides set (`rider_open_rides`) loses its rides no longer active (finished, or
  their hash gone), as the rider's next request would prune it; emptied, the set is gone, so a
  rider with no open ride holds no such key. Safe outside a script: a ride that has left the
  active index never comes back to it, and ride ids are never reused.
- The heartbeat set lists heartbeat keys so status finds them without SCAN; a key expires
  three periods after its consumer dies, but the set kept its name for ever. A name whose key
  has been gone for `prune_after_s` (as seen by this janitor) leaves the set; a consumer that
  comes back re-adds itself with its next beat. A service none of whose consumers is alive
  keeps the name of the one lost last: `ridepulse status` then goes on reporting the service
  dead (exit 1) instead of forgetting it a minute after it stopped beating."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from ridepulse.keys import GlobalKeys, MarketKeys, heartbeat_owner
from ridepulse.rides.state import TERMINAL

SCAN_COUNT = 1000
_TERMINAL = {s.encode() for s in TERMINAL}


async def trim_rider_rides(redis: aioredis.Redis, keys: MarketKeys, keep: int) -> int:
    """Trim every rider's ride set of one market; returns how many ride ids were removed."""

    async def beyond_kept(ids: list[bytes]) -> list[bytes]:
        pipe = redis.pipeline(transaction=False)
        for ride_id in ids:
            pipe.hmget(keys.ride(ride_id.decode()), "status", "requested_at")
        rows = await pipe.execute()
        return rides_to_drop(list(zip(ids, rows, strict=True)), keep)

    return await _prune_sets(redis, keys.rider_rides("*"), beyond_kept)


async def prune_rider_open_rides(redis: aioredis.Redis, keys: MarketKeys) -> int:
    """Take the rides no longer active out of every rider's open-rides set of one market;
    returns how many ride ids were removed (the last member out deletes the set)."""

    async def no_longer_active(ids: list[bytes]) -> list[bytes]:
        pipe = redis.pipeline(transaction=False)
        for ride_id in ids:
            pipe.zscore(keys.active_rides, ride_id)  # the test request_ride.lua prunes by
        scores = await pipe.execute()
        return [ride_id for ride_id, score in zip(ids, scores, strict=True) if score is None]

    return await _prune_sets(redis, keys.rider_open_rides("*"), no_longer_active)


async def _prune_sets(
    redis: aioredis.Redis,
    pattern: str,
    to_remove: Callable[[list[bytes]], Awaitable[list[bytes]]],
) -> int:
    """SREM from every set matching `pattern` what `to_remove` picks of its (sorted) members."""
    removed = 0
    async for set_key in redis.scan_iter(match=pattern, count=SCAN_COUNT):
        members: Any = await redis.smembers(set_key)
        if not members:
            continue
        drop = await to_remove(sorted(members))
        if drop:
            removed += int(await redis.srem(set_key, *drop))
    return removed


def rides_to_drop(
    rides: list[tuple[bytes, tuple[bytes | None, bytes | None]]], keep: int
) -> list[bytes]:
    """Of (ride id, (status, requested_at)): the ids whose hash is gone, and the finished ones
    past the newest `keep`; open rides always stay."""
    gone = [ride_id for ride_id, (status, _) in rides if status is None]
    finished = sorted(
        ((int(at or 0), ride_id) for ride_id, (status, at) in rides if status in _TERMINAL),
        reverse=True,
    )
    return gone + [ride_id for _, ride_id in finished[keep:]]


def heartbeat_service(name: bytes) -> str:
    return heartbeat_owner(name.decode())[0]


async def prune_heartbeats(
    redis: aioredis.Redis,
    keys: GlobalKeys,
    absent_since: dict[bytes, float],
    now_s: float,
    prune_after_s: float,
) -> int:
    """Remove heartbeat names whose key has been absent for `prune_after_s`, but for each
    service with no live consumer its most recently lost name. `absent_since` (name → when this
    janitor first saw its key missing) persists between calls."""
    names: Any = await redis.smembers(keys.heartbeats)
    if not names:
        absent_since.clear()
        return 0
    names = sorted(names)
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.exists(name)
    alive = await pipe.execute()
    expired = []
    live_services: set[str] = set()
    for name, exists in zip(names, alive, strict=True):
        if exists:
            absent_since.pop(name, None)
            live_services.add(heartbeat_service(name))
        elif now_s - absent_since.setdefault(name, now_s) >= prune_after_s:
            expired.append(name)
    for name in set(absent_since) - set(names):
        del absent_since[name]
    # A service with no live consumer keeps the name it lost last (the newest absence wins).
    lost_last = {
        heartbeat_service(name): name
        for name in sorted(absent_since, key=lambda n: (absent_since[n], n))
        if heartbeat_service(name) not in live_services
    }
    expired = [name for name in expired if name not in lost_last.values()]
    if not expired:
        return 0
    for name in expired:
        absent_since.pop(name, None)
    return int(await redis.srem(keys.heartbeats, *expired))
