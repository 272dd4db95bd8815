"""The available-driver geo index, kept fresh from telemetry.

Per batch: newest ping per driver (in memory), then one script (update_positions.lua) that
drops pings not newer than the stored one (so reordering and redelivery are harmless), stores
the positions and GEOADDs the drivers that are available — a few commands per batch, not per ping.
Freshness is the server's receive time (Redis TIME in the script), never the phone's `ts`: a phone
whose clock runs slow would otherwise look stale and never be offered a ride.

The geo set holds available drivers only: the ride scripts move a driver in or out of it in the
same atomic step that changes its status (ridepulse/rides/prelude.lua `index_driver`), so a
GEOSEARCH … COUNT returns candidates instead of the nearest busy drivers. The batch is one
script, not a read then a write, because a driver going available between the two would be
left out of the index until its next ping (seen: a driver that pinged once, then went
available, never offered a ride)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from matching.geo_filter import PositionFilter
from ridepulse.contracts.telemetry_decode import PingLike
from ridepulse.keys import MarketKeys
from ridepulse.positions import pack_position


def newest_per_driver(pings: Iterable[PingLike]) -> dict[str, PingLike]:
    newest: dict[str, PingLike] = {}
    for ping in pings:
        held = newest.get(ping.driver_id)
        if held is None or ping.ts > held.ts:
            newest[ping.driver_id] = ping
    return newest


def packed_position(ping: PingLike) -> str:
    return pack_position(ping.lat, ping.lon, ping.ts, ping.heading)


# A script holds the whole server while it runs: 500 drivers keep that to about a millisecond
# (offers and ride requests wait behind it). Lua's unpack() would allow ~2,600 (8,000 values).
CHUNK_DRIVERS = 500


@cache
def _source(name: str) -> str:
    return resources.files("matching").joinpath(name).read_text()


async def update_positions(
    redis: aioredis.Redis,
    keys: MarketKeys,
    pings: Iterable[PingLike],
    only: PositionFilter | None = None,
) -> int:
    """Apply a batch of pings; returns how many drivers moved (stale pings are ignored).
    With `only`, the drivers whose ping would change nothing matching reads are skipped, and
    `drivers_seen` is restamped only where `only.select` says it is due (without it, for every
    ping)."""
    pings_in_order = list(newest_per_driver(pings).values())
    stamped = len(pings_in_order)  # the leading pings whose seen stamp is due
    if only is not None:
        due, not_due = only.select(keys.market, pings_in_order)
        pings_in_order, stamped = due + not_due, len(due)
    if not pings_in_order:
        return 0
    script = redis.register_script(
        _source("update_positions.lua")
    )  # hashes the source; EVALSHA with NOSCRIPT fallback
    index_keys = [keys.drivers_seen, keys.positions, keys.driver_statuses, keys.drivers_geo]
    moved = 0
    with only.writing(keys.market, pings_in_order) if only else contextlib.nullcontext():
        for start in range(0, len(pings_in_order), CHUNK_DRIVERS):
            chunk = pings_in_order[start : start + CHUNK_DRIVERS]
            chunk_stamped = min(max(stamped - start, 0), len(chunk))
            args: list[str | int] = [chunk_stamped]
            for ping in chunk:
                args += [ping.driver_id, ping.ts, packed_position(ping)]
            moved += int(await script(keys=index_keys, args=args))
            if only is not None:
                only.wrote(keys.market, chunk, chunk_stamped)
    return moved


STALE_CHUNK = 5_000  # drivers per ZRANGEBYSCORE page while dropping stale ones from the index


async def drop_stale(
    redis: aioredis.Redis, keys: MarketKeys, stale_before_ms: int, *, since_ms: int | None = None
) -> int:
    """Remove drivers whose last ping reached the server in (`since_ms`, `stale_before_ms`]
    from the geo index; returns how many left it. `drivers_seen` keeps them (the janitor reads
    it to evict drivers silent for good), so a sweeper passes the cutoff of its previous sweep
    as `since_ms` and reads only the drivers that went stale since."""
    low: str = "-inf" if since_ms is None else f"({since_ms}"
    removed = offset = 0
    while True:  # pages by offset: a batch of pings stores many drivers under one score
        stale: Any = await redis.zrangebyscore(
            keys.drivers_seen, low, stale_before_ms, start=offset, num=STALE_CHUNK
        )
        if stale:
            removed += int(await redis.zrem(keys.drivers_geo, *stale))
        if len(stale) < STALE_CHUNK:
            return removed
        offset += STALE_CHUNK
