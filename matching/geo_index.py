"""The available-driver geo index, kept fresh from telemetry.

Per batch: newest ping per driver (in memory), then one script (update_positions.lua) that
drops pings not newer than the stored one (so reordering and redelivery are harmless), stores
the positions and GEOADDs the drivers that are available — a few commands per batch, not per ping.

The geo set holds available drivers only: the ride scripts move a driver in or out of it in the
same atomic step that changes its status (ridepulse/rides/prelude.lua `index_driver`), so a
GEOSEARCH … COUNT returns candidates instead of the nearest busy drivers. The batch is one
script, not a read then a write, because a driver going available between the two would be
left out of the index until its next ping (seen: a driver that pinged once, then went
available, never offered a ride)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from ridepulse.contracts.events import Ping
from ridepulse.keys import MarketKeys
from ridepulse.positions import pack_position


@dataclass(frozen=True, slots=True)
class NearbyDriver:
    driver_id: str
    lat: float
    lon: float
    distance_m: float


def newest_per_driver(pings: Iterable[Ping]) -> dict[str, Ping]:
    newest: dict[str, Ping] = {}
    for ping in pings:
        held = newest.get(ping.driver_id)
        if held is None or ping.ts > held.ts:
            newest[ping.driver_id] = ping
    return newest


def packed_position(ping: Ping) -> str:
    return pack_position(ping.lat, ping.lon, ping.ts, ping.heading)


# A script holds the whole server while it runs: 500 drivers keep that to about a millisecond
# (offers and ride requests wait behind it). Lua's unpack() would allow ~2,600 (8,000 values).
CHUNK_DRIVERS = 500


@cache
def _update_source() -> str:
    return resources.files("matching").joinpath("update_positions.lua").read_text()


async def update_positions(redis: aioredis.Redis, keys: MarketKeys, pings: Iterable[Ping]) -> int:
    """Apply a batch of pings; returns how many drivers moved (stale pings are ignored)."""
    newest = newest_per_driver(pings)
    if not newest:
        return 0
    script = redis.register_script(
        _update_source()
    )  # hashes the source; EVALSHA with NOSCRIPT fallback
    index_keys = [keys.drivers_seen, keys.positions, keys.driver_statuses, keys.drivers_geo]
    pings_in_order = list(newest.values())
    moved = 0
    for start in range(0, len(pings_in_order), CHUNK_DRIVERS):
        args: list[str | int] = []
        for ping in pings_in_order[start : start + CHUNK_DRIVERS]:
            args += [ping.driver_id, ping.ts, packed_position(ping)]
        moved += int(await script(keys=index_keys, args=args))
    return moved


async def nearby_available(
    redis: aioredis.Redis,
    keys: MarketKeys,
    lat: float,
    lon: float,
    *,
    radius_m: float,
    fresh_after_ms: int,
    exclude: Sequence[str] = (),
    limit: int = 30,
) -> list[NearbyDriver]:
    """Drivers within `radius_m`, nearest first, that are available and pinged recently."""
    found: Any = await redis.geosearch(
        keys.drivers_geo,
        longitude=lon,
        latitude=lat,
        radius=radius_m,
        unit="m",
        sort="ASC",
        count=limit,
        withcoord=True,
        withdist=True,
    )
    if not found:
        return []
    ids = [f[0].decode() for f in found]
    pipe = redis.pipeline(transaction=False)
    pipe.hmget(keys.driver_statuses, ids)
    pipe.zmscore(keys.drivers_seen, ids)
    statuses, seen = await pipe.execute()
    skip = set(exclude)
    return [
        NearbyDriver(driver_id, float(coord[1]), float(coord[0]), float(dist))
        for driver_id, (_, dist, coord), status, ts in zip(ids, found, statuses, seen, strict=True)
        if status == b"available"
        and ts is not None
        and ts >= fresh_after_ms
        and driver_id not in skip
    ]


async def drop_stale(redis: aioredis.Redis, keys: MarketKeys, stale_before_ms: int) -> int:
    """Remove drivers silent since `stale_before_ms` from the index (their last position stays)."""
    stale: Any = await redis.zrangebyscore(
        keys.drivers_seen, "-inf", stale_before_ms, start=0, num=5000
    )
    if not stale:
        return 0
    pipe = redis.pipeline(transaction=False)
    pipe.zrem(keys.drivers_geo, *stale)
    pipe.zrem(keys.drivers_seen, *stale)
    await pipe.execute()
    return len(stale)
