"""The available-driver geo index, kept fresh from telemetry.

Per batch: newest ping per driver (in memory); one round trip reads what is stored (ZMSCORE
to drop pings older than it, so reordering and redelivery are harmless; HMGET of statuses);
then one pipeline of HSET/ZADD with every driver of the batch and GEOADD with the available
ones — a few commands per batch, not per ping.

The geo set holds available drivers only: the ride scripts move a driver in or out of it in the
same atomic step that changes its status (ridepulse/rides/prelude.lua `index_driver`), so a
GEOSEARCH … COUNT returns candidates instead of the nearest busy drivers. A status can change
between this batch's read and its write; a driver indexed that way is still filtered by status
in `nearby_available` and leaves the index at its next status change or when it goes stale."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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


async def update_positions(redis: aioredis.Redis, keys: MarketKeys, pings: Iterable[Ping]) -> int:
    """Apply a batch of pings; returns how many drivers moved (stale pings are ignored)."""
    newest = newest_per_driver(pings)
    if not newest:
        return 0
    drivers = list(newest)
    read = redis.pipeline(transaction=False)
    read.zmscore(keys.drivers_seen, drivers)
    read.hmget(keys.driver_statuses, drivers)
    stored, statuses = await read.execute()
    positions: dict[str, str] = {}
    seen: dict[str, int] = {}
    geo: list[str] = []
    for driver_id, seen_ts, status in zip(drivers, stored, statuses, strict=True):
        ping = newest[driver_id]
        if seen_ts is not None and ping.ts <= seen_ts:
            continue
        packed = positions[driver_id] = packed_position(ping)
        seen[driver_id] = ping.ts
        if status == b"available":
            # the coordinates as already formatted: printing floats is most of packing GEOADD
            lat, lon, _ = packed.split(",", 2)
            geo += [lon, lat, driver_id]
    if not positions:
        return 0
    pipe = redis.pipeline(transaction=False)
    pipe.hset(keys.positions, mapping=positions)  # type: ignore[arg-type]
    if geo:
        pipe.geoadd(keys.drivers_geo, geo)
    pipe.zadd(keys.drivers_seen, seen)
    await pipe.execute()
    return len(positions)


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
        keys.drivers_geo, longitude=lon, latitude=lat, radius=radius_m, unit="m", sort="ASC",
        count=limit, withcoord=True, withdist=True,
    )  # fmt: skip
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
