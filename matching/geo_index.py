"""The available-driver geo index, kept fresh from telemetry.

Per batch: newest ping per driver (in memory), one ZMSCORE to drop pings older than what is
stored (reordering and redelivery are harmless), then one pipeline of HSET/GEOADD/ZADD with
every driver of the batch — three commands per batch, not per ping."""

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
    stored: Any = await redis.zmscore(keys.drivers_seen, drivers)
    fresh = [newest[d] for d, ts in zip(drivers, stored, strict=True) if ts is None or newest[d].ts > ts]
    if not fresh:
        return 0
    pipe = redis.pipeline(transaction=False)
    pipe.hset(keys.positions, mapping={p.driver_id: packed_position(p) for p in fresh})
    geo: list[Any] = []
    for p in fresh:
        geo += [p.lon, p.lat, p.driver_id]
    pipe.geoadd(keys.drivers_geo, geo)
    pipe.zadd(keys.drivers_seen, {p.driver_id: p.ts for p in fresh})
    await pipe.execute()
    return len(fresh)


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
        if status == b"available" and ts is not None and ts >= fresh_after_ms and driver_id not in skip
    ]


async def drop_stale(redis: aioredis.Redis, keys: MarketKeys, stale_before_ms: int) -> int:
    """Remove drivers silent since `stale_before_ms` from the index (their last position stays)."""
    stale: Any = await redis.zrangebyscore(keys.drivers_seen, "-inf", stale_before_ms, start=0, num=5000)
    if not stale:
        return 0
    pipe = redis.pipeline(transaction=False)
    pipe.zrem(keys.drivers_geo, *stale)
    pipe.zrem(keys.drivers_seen, *stale)
    await pipe.execute()
    return len(stale)
