"""Offer expiry and driver freshness run on the server's clock (Redis TIME inside the scripts),
never the phone's or a service's: a late accept is refused, an early timeout is not applied,
and a phone whose clock runs slow is offered rides like any other."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from matching.geo_index import update_positions
from matching.handlers import MatchingDeps, try_offer
from ridepulse.contracts.events import Ping, Point
from ridepulse.errors import Conflict
from ridepulse.keys import MarketKeys
from ridepulse.rides import RideStore
from ridepulse.rides.clock import server_time_ms
from ridepulse.settings import Settings
from ridepulse.travel import SpeedCache
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

PICKUP = Point(lat=37.7749, lon=-122.4194)
DROPOFF = Point(lat=37.7549, lon=-122.4194)


async def offered_ride(store: RideStore, offer_timeout_s: float) -> str:
    await store.set_driver_status("d1", "available")
    await store.request_ride(
        ride_id="sf-r1", rider_id="u1", pickup=PICKUP, dropoff=DROPOFF, deadline_s=60
    )
    offered = await store.offer(
        ride_id="sf-r1", driver_id="d1", pickup_eta_s=60, offer_timeout_s=offer_timeout_s
    )
    assert offered is not None and offered.status == "offered"
    return "sf-r1"


async def test_accept_after_the_offer_expired_on_the_server_clock_is_a_conflict(
    redis: aioredis.Redis, store: RideStore
) -> None:
    ride_id = await offered_ride(store, offer_timeout_s=0.2)
    ride = await store.get(ride_id)
    assert ride is not None and ride.offer_expires_at is not None
    expires_at = ride.offer_expires_at
    # no sweeper runs here: only the script's own clock check stands between the tap and a match
    await wait_until(
        lambda: _server_past(redis, expires_at), timeout_s=10, what="server clock past expiry"
    )
    with pytest.raises(Conflict, match="expired"):
        await store.accept(ride_id, "d1")
    after = await store.get(ride_id)
    assert after is not None and after.status == "offered" and after.driver_id is None
    driver = await store.get_driver("d1")
    assert driver is not None and driver.status == "offered"


async def test_accept_before_expiry_matches(store: RideStore) -> None:
    ride_id = await offered_ride(store, offer_timeout_s=30)
    assert (await store.accept(ride_id, "d1")).status == "matched"


async def test_a_timeout_requeue_before_the_offer_expired_is_refused(store: RideStore) -> None:
    """A sweeper whose clock runs ahead calls the timeout early: the script re-checks."""
    ride_id = await offered_ride(store, offer_timeout_s=30)
    with pytest.raises(Conflict, match="not expired"):
        await store.decline(ride_id, "d1", reason="timeout")
    ride = await store.get(ride_id)
    assert ride is not None and ride.status == "offered" and ride.offer_driver_id == "d1"
    # a driver's own decline needs no expiry
    assert (await store.decline(ride_id, "d1")).status == "requested"


async def test_a_timeout_requeue_after_expiry_frees_the_driver(
    redis: aioredis.Redis, store: RideStore
) -> None:
    ride_id = await offered_ride(store, offer_timeout_s=0.2)
    ride = await store.get(ride_id)
    assert ride is not None and ride.offer_expires_at is not None
    expires_at = ride.offer_expires_at
    await wait_until(lambda: _server_past(redis, expires_at), timeout_s=10, what="expiry")
    requeued = await store.decline(ride_id, "d1", reason="timeout")
    assert requeued.status == "requested" and "d1" in requeued.declined


async def test_a_driver_whose_phone_clock_is_31_s_slow_is_offered_rides(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, store: RideStore
) -> None:
    assert settings.driver_stale_s < 31  # the phone's timestamps alone would call it stale
    deps = MatchingDeps(
        redis=redis,
        settings=settings,
        stores={"sf": store},
        speeds={"sf": SpeedCache(redis, keys.speeds, settings.h3_resolution)},
    )
    slow_ts = await server_time_ms(redis) - 31_000
    await update_positions(
        redis,
        keys,
        [Ping(driver_id="slow", lat=PICKUP.lat + 0.002, lon=PICKUP.lon, ts=slow_ts)],
    )
    await store.set_driver_status("slow", "available")
    ride, _ = await store.request_ride(
        ride_id="sf-slow", rider_id="u1", pickup=PICKUP, dropoff=DROPOFF, deadline_s=60
    )
    offered = await try_offer(deps, ride, "cause-1")
    assert offered is not None, "a driver pinging now with a slow clock was not offered the ride"
    assert offered.offer_driver_id == "slow"
    # its next ping (also 31 s slow, but newer) still moves it: ordering uses the phone's ts
    moved = await update_positions(
        redis,
        keys,
        [Ping(driver_id="slow", lat=PICKUP.lat + 0.003, lon=PICKUP.lon, ts=slow_ts + 2_000)],
    )
    assert moved == 1


async def test_a_driver_silent_past_the_stale_time_on_the_server_clock_is_not_offered(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, store: RideStore
) -> None:
    deps = MatchingDeps(
        redis=redis,
        settings=settings,
        stores={"sf": store},
        speeds={"sf": SpeedCache(redis, keys.speeds, settings.h3_resolution)},
    )
    now = await server_time_ms(redis)
    # the phone claims a fresh ping, but the server last heard from it long ago
    await update_positions(
        redis, keys, [Ping(driver_id="gone", lat=PICKUP.lat + 0.002, lon=PICKUP.lon, ts=now)]
    )
    await redis.zadd(keys.drivers_seen, {"gone": now - int(settings.driver_stale_s * 1000) - 1})
    await store.set_driver_status("gone", "available")
    ride, _ = await store.request_ride(
        ride_id="sf-gone", rider_id="u1", pickup=PICKUP, dropoff=DROPOFF, deadline_s=60
    )
    assert await try_offer(deps, ride, "cause-2") is None


async def _server_past(redis: aioredis.Redis, at_ms: int) -> bool:
    return await server_time_ms(redis) > at_ms
