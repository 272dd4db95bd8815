"""Matching's offer step against the real server: rides offered at the same moment near one
pickup all see the same nearest drivers; each must still get a driver of its own at once,
not be left to the sweeper after losing a few races (seen at 100 rides/s: rides unoffered for
tens of seconds)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
import redis.asyncio as aioredis

from matching.geo_index import update_positions
from matching.handlers import MatchingDeps, try_offer
from ridepulse.contracts.envelope import now_ms
from ridepulse.contracts.events import Ping, Point
from ridepulse.keys import MarketKeys
from ridepulse.rides import RideStore
from ridepulse.settings import Settings
from ridepulse.travel import SpeedCache

pytestmark = pytest.mark.integration

PICKUP = Point(lat=37.7749, lon=-122.4194)
DROPOFF = Point(lat=37.7549, lon=-122.4194)
DRIVERS = RIDES = 40  # more than one search's worth of attempts per ride


async def test_rides_racing_for_the_same_nearest_drivers_are_all_offered_at_once(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    store = RideStore(redis, keys, "test")
    deps = MatchingDeps(
        redis=redis,
        settings=settings,
        stores={"sf": store},
        speeds={"sf": SpeedCache(redis, keys.speeds, settings.h3_resolution)},
    )
    drivers = [f"near{i}" for i in range(DRIVERS)]
    await update_positions(
        redis,
        keys,
        [
            Ping(driver_id=d, lat=PICKUP.lat + (i + 1) * 20 / 111_320, lon=PICKUP.lon, ts=now_ms())
            for i, d in enumerate(drivers)
        ],
    )
    for driver in drivers:
        await store.set_driver_status(driver, "available")
    rides = [
        (
            await store.request_ride(
                ride_id=f"sf-race{i}",
                rider_id=f"u{i}",
                pickup=PICKUP,
                dropoff=DROPOFF,
                deadline_s=60,
            )
        )[0]
        for i in range(RIDES)
    ]

    offered = await asyncio.gather(
        *(try_offer(deps, ride, f"cause-{ride.ride_id}") for ride in rides)
    )

    missing = [ride.ride_id for ride, result in zip(rides, offered, strict=True) if result is None]
    assert not missing, f"{len(missing)} of {RIDES} rides left without an offer"
    holders = Counter(result.offer_driver_id for result in offered if result is not None)
    assert set(holders) == set(drivers) and max(holders.values()) == 1, holders
