"""After an end-to-end level: could matching have found a driver? For random pickups, count the
available drivers among the nearest `count` (what matching's GEOSEARCH … COUNT sees) and among
all drivers within the radius (what it could have seen)."""

from __future__ import annotations

import random
from typing import Any

import redis.asyncio as aioredis

from loadtests.bench.fleet import random_point
from ridepulse.keys import MarketKeys

RADIUS_M = 1500.0  # matching's first search radius (matching/candidates.py)
COUNT = 30  # matching's GEOSEARCH COUNT (matching/geo_index.py nearby_available)


async def probe_candidates(
    redis: aioredis.Redis, keys: MarketKeys, points: int = 100, seed: int = 11
) -> dict[str, Any]:
    rng = random.Random(seed)
    blind = 0
    nearest_available: list[int] = []
    radius_available: list[int] = []
    for _ in range(points):
        lat, lon = random_point(rng)
        found: Any = await redis.geosearch(
            keys.drivers_geo, longitude=lon, latitude=lat, radius=RADIUS_M, unit="m", sort="ASC"
        )
        statuses: Any = await redis.hmget(keys.driver_statuses, found) if found else []
        flags = [s == b"available" for s in statuses]
        nearest_available.append(sum(flags[:COUNT]))
        radius_available.append(sum(flags))
        blind += any(flags) and not any(flags[:COUNT])
    return {
        "points": points,
        "radius_m": RADIUS_M,
        "count": COUNT,
        "no_available_in_nearest": nearest_available.count(0),
        "available_in_radius_but_not_in_nearest": blind,
        "mean_available_in_nearest": sum(nearest_available) / points,
        "mean_available_in_radius": sum(radius_available) / points,
    }
