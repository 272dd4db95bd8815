"""The pricing service on the real server: requests outnumbering drivers raise the surge of
their cell in the read model and announce it; it clears after the window; a restart resumes.
Supply is read from matching's geo index, filled here through matching's own update."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from matching.geo_index import update_positions
from pricing.publisher import publish_surge
from pricing.replay import replay_demand
from pricing.service import build, warm_up
from ridepulse.bus.consumer import ConsumerRuntime
from ridepulse.contracts.envelope import now_ms
from ridepulse.contracts.events import Ping, Point, SurgeCell, SurgeUpdatedV1
from ridepulse.contracts.registry import Event, decode
from ridepulse.geo import cell_of
from ridepulse.keys import MarketKeys
from ridepulse.rides import RideStore
from ridepulse.settings import Settings

pytestmark = pytest.mark.integration

HOT = Point(lat=37.7793, lon=-122.4193)
HOT_CELL = cell_of(HOT.lat, HOT.lon)
DROPOFF = Point(lat=37.7568, lon=-122.4120)
WINDOW_S = 30.0


class Pricing:
    """The service's own wiring in burst mode, plus what a test needs to drive it."""

    def __init__(self, settings: Settings, redis: aioredis.Redis) -> None:
        self.deps, self.runtimes = build(settings, burst=True)
        self.keys = MarketKeys("sf", settings.key_prefix)
        self.store = RideStore(redis, self.keys, "test")
        self.redis = redis

    async def run(self) -> None:
        runtime: ConsumerRuntime
        for runtime in self.runtimes:
            await runtime.run()

    async def request(self, count: int, at: Point = HOT, first: int = 0) -> None:
        for i in range(first, first + count):
            await self.store.request_ride(
                ride_id=f"sf-r{i}", rider_id=f"u{i}", pickup=at, dropoff=DROPOFF, deadline_s=60
            )

    async def drivers_available(self, count: int, at: Point = HOT) -> None:
        """Drivers that went available, then pinged where they wait: in matching's geo index,
        where pricing reads supply."""
        pings = []
        for i in range(count):
            await self.store.set_driver_status(f"d{i}", "available")
            pings.append(Ping(driver_id=f"d{i}", lat=at.lat, lon=at.lon + i * 1e-5, ts=now_ms()))
        await update_positions(self.redis, self.keys, pings)

    async def surge_events(self) -> list[SurgeUpdatedV1]:
        entries = cast(list[tuple[bytes, Any]], await self.redis.xrange(self.keys.surge_events))
        events: list[Event] = [decode(fields) for _, fields in entries]
        assert all(e.type == "surge.updated" and e.envelope.subject == "market/sf" for e in events)
        return [cast(SurgeUpdatedV1, e.data) for e in events]

    async def published(self) -> dict[str, float]:
        raw = cast(dict[bytes, bytes], await self.redis.hgetall(self.keys.surge))
        return {k.decode(): float(v) for k, v in raw.items()}


@pytest.fixture
def short_window(settings: Settings) -> Settings:
    return settings.model_copy(update={"surge_window_s": WINDOW_S})


@pytest.fixture
async def pricing(short_window: Settings, redis: aioredis.Redis) -> AsyncIterator[Pricing]:
    service = Pricing(short_window, redis)
    yield service
    await service.deps.redis.aclose()


async def test_surge_rises_where_requests_outnumber_drivers_and_clears_after_the_window(
    pricing: Pricing,
) -> None:
    await pricing.drivers_available(2)
    await pricing.request(6)
    await pricing.run()
    now = now_ms()

    changed = await publish_surge(pricing.deps, "sf", now)
    assert changed[HOT_CELL] == 2.0, "6 requests / 2 drivers = 3:1 -> 1 + 0.5 x (3 - 1)"
    assert (await pricing.published())[HOT_CELL] == 2.0
    [raised] = await pricing.surge_events()
    assert raised.market == "sf" and SurgeCell(cell=HOT_CELL, multiplier=2.0) in raised.cells
    assert await publish_surge(pricing.deps, "sf", now + 1000) == {}, "unchanged: nothing announced"
    assert len(await pricing.surge_events()) == 1

    after_window = now + int(WINDOW_S * 1000) + 1
    cleared = await publish_surge(pricing.deps, "sf", after_window)
    assert cleared and set(cleared.values()) == {1.0}
    assert await pricing.published() == {}, "cleared cells leave the read model"
    [_, back] = await pricing.surge_events()
    assert SurgeCell(cell=HOT_CELL, multiplier=1.0) in back.cells


async def test_no_surge_while_drivers_keep_up_with_requests(pricing: Pricing) -> None:
    await pricing.drivers_available(4)
    await pricing.request(4)
    await pricing.run()

    assert await publish_surge(pricing.deps, "sf", now_ms()) == {}
    assert await pricing.published() == {} and await pricing.surge_events() == []


async def test_drivers_busy_or_offline_stop_counting_as_supply(pricing: Pricing) -> None:
    await pricing.drivers_available(3)
    await pricing.request(3)
    await pricing.run()
    assert await publish_surge(pricing.deps, "sf", now_ms()) == {}

    await pricing.store.set_driver_status("d0", "offline")
    await pricing.store.offer(ride_id="sf-r0", driver_id="d1", pickup_eta_s=60, offer_timeout_s=30)

    changed = await publish_surge(pricing.deps, "sf", now_ms())
    assert changed[HOT_CELL] == 2.0, "3 requests, 1 driver left: 1 + 0.5 x (3 - 1)"


async def test_a_restart_rebuilds_demand_and_supply_so_the_surge_holds(
    pricing: Pricing, short_window: Settings, redis: aioredis.Redis
) -> None:
    await pricing.drivers_available(2)
    await pricing.request(6)
    await pricing.run()
    await publish_surge(pricing.deps, "sf", now_ms())

    restarted = Pricing(short_window, redis)
    try:
        await warm_up(restarted.deps)
        demand, supply = restarted.deps.markets["sf"].window.counts(now_ms())
        assert (demand, supply) == ({HOT_CELL: 6}, {HOT_CELL: 2})
        assert await publish_surge(restarted.deps, "sf", now_ms()) == {}, "no flap across a restart"
        # a group created afresh reads the stream from the start: replayed requests count once
        await redis.xgroup_destroy(pricing.keys.rides, "pricing")
        await restarted.run()
        assert restarted.runtimes[0].stats.processed >= 6, "the stream was not replayed"
        assert await replay_demand(restarted.deps, "sf", now_ms()) == 0
        assert restarted.deps.markets["sf"].window.counts(now_ms())[0] == {HOT_CELL: 6}
    finally:
        await restarted.deps.redis.aclose()


async def test_a_restart_clears_a_surge_whose_demand_is_gone(
    pricing: Pricing, short_window: Settings, redis: aioredis.Redis
) -> None:
    """The read model outlives the process: a stale surging cell is cleared, not left behind."""
    far = cell_of(37.80, -122.45)
    await redis.hset(pricing.keys.surge, far, "2.5")
    restarted = Pricing(short_window, redis)
    try:
        await warm_up(restarted.deps)
        assert await publish_surge(restarted.deps, "sf", now_ms()) == {far: 1.0}
        assert await restarted.published() == {}
    finally:
        await restarted.deps.redis.aclose()


async def test_a_start_drops_the_retired_telemetry_group(
    pricing: Pricing, redis: aioredis.Redis
) -> None:
    """Supply once came from telemetry (group pricing.supply): an upgraded deployment must not
    keep a group nobody reads, lagging forever in `ridepulse status`."""
    await redis.xgroup_create(pricing.keys.telemetry, "pricing.supply", id="0", mkstream=True)
    await warm_up(pricing.deps)
    groups = await redis.xinfo_groups(pricing.keys.telemetry)
    assert [g["name"] for g in groups] == []
    await warm_up(pricing.deps)  # and a start without it is fine
