"""Matching and the ride deadline against the real server: drivers who never answer offers must
not keep a ride alive past its deadline. The sweeper times an offer out, and the matching
consumer reacts to that ride.unmatched within milliseconds, before the same sweep's expiry pass
can run: rides were re-offered after their deadline and bounced between drivers for a minute."""

from __future__ import annotations

from typing import cast

import pytest
import redis.asyncio as aioredis

from matching.handlers import on_ride_waiting, try_offer
from matching.sweeper import expire_overdue, time_out_offers
from ridepulse.contracts.events import Point, RideOfferedV1
from ridepulse.contracts.registry import Event, decode
from ridepulse.rides.clock import server_time_ms
from ridepulse.settings import Settings
from tests.support.matching import sf_matching_with_drivers
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

PICKUP = Point(lat=37.7749, lon=-122.4194)
DROPOFF = Point(lat=37.7549, lon=-122.4194)
SILENT_DRIVERS = 8  # enough to keep re-offering the ride long past its deadline
OFFER_TIMEOUT_S = 0.2
DEADLINE_S = 0.5
MAX_ROUNDS = 3 * SILENT_DRIVERS  # every loop bounded


async def test_silent_drivers_never_get_an_offer_after_the_deadline_and_the_ride_expires(
    redis: aioredis.Redis, settings: Settings
) -> None:
    drivers = [f"silent{i}" for i in range(SILENT_DRIVERS)]
    timing = settings.model_copy(update={"offer_timeout_s": OFFER_TIMEOUT_S})
    store, deps = await sf_matching_with_drivers(redis, timing, drivers, PICKUP)
    keys = store.keys
    ride, _ = await store.request_ride(
        ride_id="sf-deadline1", rider_id="u1", pickup=PICKUP, dropoff=DROPOFF, deadline_s=DEADLINE_S
    )
    assert await try_offer(deps, ride, "cause-request") is not None
    last = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(keys.rides))[-1][0]

    for _ in range(MAX_ROUNDS):
        current = await store.get(ride.ride_id)
        assert current is not None
        if current.status == "expired":
            break
        if current.status == "offered":
            expires_at = current.offer_expires_at or 0

            async def offer_over(at: int = expires_at) -> bool:
                return await server_time_ms(redis) >= at

            await wait_until(offer_over, timeout_s=5, what="the offer to time out")
        else:

            async def deadline_over() -> bool:
                return await server_time_ms(redis) >= ride.deadline_at

            await wait_until(deadline_over, timeout_s=5, what="the deadline to pass")
        # One sweep, with the consumer's reaction to what it announced in between (in the
        # running service the consumer is woken by the XADD, the expiry pass comes after).
        await time_out_offers(deps, "sf", await server_time_ms(redis))
        new = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await redis.xrange(keys.rides, min=b"(" + last),
        )
        for entry_id, fields in new:
            last = entry_id
            event = decode(fields)
            if event.type == "ride.unmatched":
                await on_ride_waiting(event, deps)
        await expire_overdue(deps, "sf", await server_time_ms(redis))

    events: list[Event] = [
        decode(fields)
        for _, fields in cast(
            list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(keys.rides)
        )
    ]
    offers = [e for e in events if e.type == "ride.offered"]
    late_offers = [
        (e.payload(RideOfferedV1).driver_id, e.envelope.time - ride.deadline_at)
        for e in offers
        if e.envelope.time >= ride.deadline_at
    ]
    assert not late_offers, f"offers made at or after the deadline (driver, ms late): {late_offers}"
    final = await store.get(ride.ride_id)
    assert final is not None and final.status == "expired", f"expected expired, got {final}"
    [expired] = [e for e in events if e.type == "ride.expired"]
    lateness_ms = expired.envelope.time - ride.deadline_at
    assert lateness_ms <= OFFER_TIMEOUT_S * 1000 + 500, (
        f"expired {lateness_ms} ms after the deadline: more than the offer in flight allows"
    )
    for driver in drivers:
        held = await store.get_driver(driver)
        assert held is not None and held.status == "available", f"{driver} still held: {held}"
