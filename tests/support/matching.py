"""Matching's handlers against the real server, with drivers lined up near a pickup."""

from __future__ import annotations

import redis.asyncio as aioredis

from matching.geo_index import update_positions
from matching.handlers import MatchingDeps
from ridepulse.contracts.envelope import now_ms
from ridepulse.contracts.events import Ping, Point
from ridepulse.keys import MarketKeys
from ridepulse.rides import RideStore
from ridepulse.settings import Settings
from ridepulse.travel import SpeedCache

DRIVER_SPACING_M = 20
METRES_PER_DEGREE_LAT = 111_320


async def sf_matching_with_drivers(
    redis: aioredis.Redis, settings: Settings, drivers: list[str], pickup: Point
) -> tuple[RideStore, MatchingDeps]:
    """sf's ride store and matching's deps, `drivers` available in a line north of `pickup`,
    DRIVER_SPACING_M apart (the first nearest)."""
    step = DRIVER_SPACING_M / METRES_PER_DEGREE_LAT
    places = {d: (pickup.lat + (i + 1) * step, pickup.lon) for i, d in enumerate(drivers)}
    return await sf_matching_with_drivers_at(redis, settings, places)


async def sf_matching_with_drivers_at(
    redis: aioredis.Redis, settings: Settings, places: dict[str, tuple[float, float]]
) -> tuple[RideStore, MatchingDeps]:
    """sf's ride store and matching's deps (speeds read from sf's speeds hash as it stands),
    each driver of `places` available at its (lat, lon)."""
    keys = MarketKeys("sf", settings.key_prefix)
    store = RideStore(redis, keys, "test")
    speeds = SpeedCache(redis, keys.speeds, settings.h3_resolution)
    await speeds.refresh()
    deps = MatchingDeps(redis=redis, settings=settings, stores={"sf": store}, speeds={"sf": speeds})
    pings = [Ping(driver_id=d, lat=lat, lon=lon, ts=now_ms()) for d, (lat, lon) in places.items()]
    await update_positions(redis, keys, pings)
    for driver in places:
        await store.set_driver_status(driver, "available")
    return store, deps
