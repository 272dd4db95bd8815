"""Matching's offer step against the real server: rides offered at the same moment near one
pickup all see the same nearest drivers; each must still get a driver of its own at once,
not be left to the sweeper after losing a few races (seen at 100 rides/s: rides unoffered for
tens of seconds)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
import redis.asyncio as aioredis

from matching.handlers import try_offer
from ridepulse.contracts.events import Point
from ridepulse.settings import Settings
from tests.support.matching import sf_matching_with_drivers

pytestmark = pytest.mark.integration

PICKUP = Point(lat=37.7749, lon=-122.4194)
DROPOFF = Point(lat=37.7549, lon=-122.4194)
DRIVERS = RIDES = 40  # more than one search's worth of attempts per ride


async def test_rides_racing_for_the_same_nearest_drivers_are_all_offered_at_once(
    redis: aioredis.Redis, settings: Settings
) -> None:
    drivers = [f"near{i}" for i in range(DRIVERS)]
    store, deps = await sf_matching_with_drivers(redis, settings, drivers, PICKUP)
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
