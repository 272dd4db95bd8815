"""Greedy matching offers the driver fastest to the pickup, not the fastest of the first radius
that holds anyone (the hunt's t11_radius.py, against the real server, its speeds hash and geo
index): a driver just past 1.5 km on a fast road beats a nearer one in slow streets."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from matching.handlers import try_offer
from ridepulse.contracts.events import Point
from ridepulse.keys import MarketKeys
from ridepulse.settings import Settings
from tests.support import two_sides
from tests.support.matching import sf_matching_with_drivers_at

pytestmark = pytest.mark.integration


async def test_a_faster_driver_just_past_the_first_radius_gets_the_offer(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    learned: dict[Any, Any] = two_sides.learned_speeds(settings.h3_resolution)
    await redis.hset(keys.speeds, mapping=learned)
    places = {"slow-A": two_sides.SLOW_A, "fast-B": two_sides.FAST_B}
    store, deps = await sf_matching_with_drivers_at(redis, settings, places)
    eta_s = {d: deps.speeds["sf"].travel_time_s(*at, *two_sides.PICKUP) for d, at in places.items()}
    assert eta_s["fast-B"] < 0.6 * eta_s["slow-A"], eta_s  # 189 s against 345 s
    ride, _ = await store.request_ride(
        ride_id="sf-reach1",
        rider_id="u1",
        pickup=Point(lat=two_sides.PICKUP[0], lon=two_sides.PICKUP[1]),
        dropoff=Point(lat=two_sides.DROPOFF[0], lon=two_sides.DROPOFF[1]),
        deadline_s=60,
    )

    offered = await try_offer(deps, ride, "cause-reach1")

    assert offered is not None, "nobody was offered the ride"
    assert (offered.offer_driver_id, offered.pickup_eta_s) == (
        "fast-B",
        round(eta_s["fast-B"], 1),
    ), f"offered {offered.offer_driver_id} at {offered.pickup_eta_s} s; ETAs {eta_s}"
