"""The eta service on the real server: speeds learned from telemetry reach the read model,
active rides get pickup and trip ETAs announced (throttled), and a restart resumes."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from eta.service import build, warm_up
from eta.speeds import persist_speeds
from ridepulse.bus.consumer import ConsumerRuntime
from ridepulse.bus.producer import Producer
from ridepulse.contracts.envelope import derived_event_id, now_ms
from ridepulse.contracts.events import EtaUpdatedV1, Point
from ridepulse.contracts.registry import Event, decode, make
from ridepulse.geo import cell_center, cell_of, haversine_m
from ridepulse.keys import MarketKeys
from ridepulse.rides import Ride, RideStore
from ridepulse.settings import Settings
from ridepulse.travel import DEFAULT_SPEED_MPS, SpeedCache, travel_time_s

pytestmark = pytest.mark.integration

M_PER_DEG_LAT = 111_195.0
PICKUP = Point(lat=37.7793, lon=-122.4193)
DROPOFF = Point(lat=37.7568, lon=-122.4120)
MISSION = cell_of(37.7599, -122.4148)


def north_of(point: Point, metres: float) -> tuple[float, float]:
    return point.lat + metres / M_PER_DEG_LAT, point.lon


def default_eta_s(frm: tuple[float, float], to: Point) -> float:
    """What eta announces before it has learned any speed on the way."""
    return round(travel_time_s(*frm, to.lat, to.lon, lambda _: DEFAULT_SPEED_MPS), 1)


class Clock:
    """eta's throttle clock, moved by hand."""

    def __init__(self) -> None:
        self.ms = now_ms()

    def __call__(self) -> int:
        return self.ms


class Eta:
    """The service's own wiring in burst mode, plus what a test needs to drive it."""

    def __init__(self, settings: Settings, redis: aioredis.Redis) -> None:
        self.deps, runtimes = build(settings, burst=True)
        self.rides_runtimes: list[ConsumerRuntime] = [r for r in runtimes if r.group == "eta"]
        self.telemetry_runtimes = [r for r in runtimes if r.group == "eta.speeds"]
        self.clock = Clock()
        self.deps.clock = self.clock
        self.keys = MarketKeys("sf", settings.key_prefix)
        self.store = RideStore(redis, self.keys, "test")
        self.producer = Producer(redis, telemetry_maxlen=100_000, prefix=settings.key_prefix)
        self.redis = redis
        self._seen = b"-"

    async def run(self) -> None:
        for runtime in [*self.rides_runtimes, *self.telemetry_runtimes]:
            await runtime.run()

    async def pings(self, *pings: dict[str, Any]) -> None:
        """One telemetry entry, as ingest writes a fleet batch; pings stamped ahead of now (the
        test's clock moved by hand) in an entry appended then, as the consumers require."""
        event = make("driver.location", "driver/batch", {"pings": list(pings)}, "test")
        newest = max(p["ts"] for p in pings)
        if newest <= now_ms():
            await self.producer.publish(self.keys.telemetry, event)
            return
        fields: Any = event.to_fields()
        await self.redis.xadd(self.keys.telemetry, fields, id=f"{newest}-*")

    async def place(self, driver_id: str, lat: float, lon: float, ts: int) -> None:
        """The driver's last position, where matching's geo index keeps it."""
        await self.redis.hset(self.keys.positions, driver_id, f"{lat:.6f},{lon:.6f},{ts},")

    async def new_etas(self) -> list[Event]:
        start = self._seen if self._seen == b"-" else b"(" + self._seen
        entries = cast(
            list[tuple[bytes, Any]], await self.redis.xrange(self.keys.eta_events, min=start)
        )
        if entries:
            self._seen = entries[-1][0]
        return [decode(fields) for _, fields in entries]

    async def ride_event_id(self, event_type: str, ride_id: str) -> str:
        entries = cast(list[tuple[bytes, Any]], await self.redis.xrange(self.keys.rides))
        events = [decode(f) for _, f in entries]
        return next(
            e.id
            for e in events
            if e.type == event_type and e.data.model_dump().get("ride_id") == ride_id
        )


@pytest.fixture
async def eta(settings: Settings, redis: aioredis.Redis) -> AsyncIterator[Eta]:
    service = Eta(settings, redis)
    yield service
    await service.deps.redis.aclose()


async def matched_ride(store: RideStore, ride_id: str = "sf-r1", driver_id: str = "d1") -> Ride:
    await store.request_ride(
        ride_id=ride_id, rider_id="u1", pickup=PICKUP, dropoff=DROPOFF, deadline_s=60
    )
    await store.set_driver_status(driver_id, "available")
    await store.offer(ride_id=ride_id, driver_id=driver_id, pickup_eta_s=300, offer_timeout_s=30)
    return await store.accept(ride_id, driver_id)


def eta_of(event: Event) -> EtaUpdatedV1:
    assert event.type == "eta.updated", event
    assert isinstance(event.data, EtaUpdatedV1)
    return event.data


def circling(
    cell: str,
    speed_mps: float,
    rng: random.Random,
    *,
    drivers: int,
    steps: int,
    interval_ms: int,
    t0: int,
) -> list[list[dict[str, Any]]]:
    """Fleet batches: drivers circling a cell's centre at `speed_mps`, GPS jittered a few metres."""
    lat0, lon0 = cell_center(cell)
    m_per_deg_lon = M_PER_DEG_LAT * math.cos(math.radians(lat0))
    radius_m = 250.0
    phases = [rng.uniform(0, 2 * math.pi) for _ in range(drivers)]
    batches = []
    for i in range(steps):
        batch = []
        for d, phase in enumerate(phases):
            angle = phase + speed_mps * i * interval_ms / 1000 / radius_m
            north = radius_m * math.sin(angle) + rng.gauss(0, 3.0)
            east = radius_m * math.cos(angle) + rng.gauss(0, 3.0)
            batch.append(
                {
                    "driver_id": f"m{d}",
                    "lat": lat0 + north / M_PER_DEG_LAT,
                    "lon": lon0 + east / m_per_deg_lon,
                    "ts": t0 + i * interval_ms,
                }
            )
        batches.append(batch)
    return batches


async def test_speeds_learned_from_telemetry_reach_the_read_model_within_ten_percent(
    eta: Eta, redis: aioredis.Redis
) -> None:
    truth_mps = 9.0
    t0 = now_ms() - 240_000
    for batch in circling(
        MISSION, truth_mps, random.Random(11), drivers=6, steps=70, interval_ms=3000, t0=t0
    ):
        await eta.pings(*batch)
    await eta.run()

    assert await persist_speeds(eta.deps) >= 1
    raw = await redis.hget(eta.keys.speeds, MISSION)
    assert raw is not None, "no speed published for the cell the fleet drove in"
    assert abs(float(raw) - truth_mps) <= 0.1 * truth_mps, (
        f"learned {float(raw):.2f} m/s, truth {truth_mps}"
    )
    readers = SpeedCache(redis, eta.keys.speeds, 8)  # what matching and ingest use
    await readers.refresh()
    assert readers.speed_of(MISSION) == pytest.approx(float(raw))
    assert await persist_speeds(eta.deps) == 0, "nothing new learned: nothing rewritten"


async def test_a_matched_ride_gets_a_pickup_eta_and_an_eta_updated_event(eta: Eta) -> None:
    driver_at = north_of(PICKUP, 1200)
    await eta.place("d1", *driver_at, now_ms())
    await matched_ride(eta.store)
    await eta.run()

    expected = default_eta_s(driver_at, PICKUP)
    ride = await eta.store.get("sf-r1")
    assert ride is not None and ride.pickup_eta_s == expected, ride
    [event] = await eta.new_etas()
    assert eta_of(event) == EtaUpdatedV1(
        ride_id="sf-r1", driver_id="d1", phase="pickup", eta_s=expected
    )
    assert event.id == derived_event_id(await eta.ride_event_id("ride.matched", "sf-r1"), "eta")


async def test_updates_are_throttled_by_time_and_by_size_of_change(eta: Eta) -> None:
    await eta.place("d1", *north_of(PICKUP, 1200), now_ms())
    await matched_ride(eta.store)
    await eta.run()
    [first] = await eta.new_etas()
    t = now_ms()

    eta.clock.ms += 2_000  # a big change, but too soon after the last one
    await eta.pings(
        {"driver_id": "d1", "lat": north_of(PICKUP, 600)[0], "lon": PICKUP.lon, "ts": t + 2_000}
    )
    await eta.run()
    assert await eta.new_etas() == []

    eta.clock.ms += 6_000  # late enough, but the driver barely moved: riders see no jitter
    await eta.pings(
        {"driver_id": "d1", "lat": north_of(PICKUP, 1190)[0], "lon": PICKUP.lon, "ts": t + 8_000}
    )
    await eta.run()
    assert await eta.new_etas() == []

    eta.clock.ms += 6_000  # late enough and 700 m closer: announced and written
    closer = north_of(PICKUP, 500)
    await eta.pings({"driver_id": "d1", "lat": closer[0], "lon": closer[1], "ts": t + 14_000})
    await eta.run()
    [update] = await eta.new_etas()
    learned = eta.deps.models["sf"].travel_time_s(*closer, PICKUP.lat, PICKUP.lon)
    assert eta_of(update).eta_s == round(learned, 1) < eta_of(first).eta_s
    ride = await eta.store.get("sf-r1")
    assert ride is not None and ride.pickup_eta_s == eta_of(update).eta_s


async def test_trip_eta_on_start_and_no_updates_once_the_ride_is_over(eta: Eta) -> None:
    await eta.place("d1", *north_of(PICKUP, 800), now_ms() - 60_000)  # stale: not used
    await matched_ride(eta.store)
    await eta.store.arrived("sf-r1", "d1")
    await eta.store.start("sf-r1", "d1")
    await eta.run()

    [trip] = await eta.new_etas()  # the late ride.matched no longer applies: only the trip
    expected = default_eta_s((PICKUP.lat, PICKUP.lon), DROPOFF)
    assert eta_of(trip) == EtaUpdatedV1(
        ride_id="sf-r1", driver_id="d1", phase="trip", eta_s=expected
    )
    ride = await eta.store.get("sf-r1")
    assert ride is not None and ride.trip_eta_s == expected

    await eta.store.complete("sf-r1", "d1")
    await eta.run()
    eta.clock.ms += 60_000
    await eta.pings({"driver_id": "d1", "lat": DROPOFF.lat, "lon": DROPOFF.lon, "ts": now_ms()})
    await eta.run()
    assert await eta.new_etas() == []
    assert eta.deps.rides.of_ride("sf-r1") is None


async def test_driver_cancel_stops_updates_for_that_ride(eta: Eta) -> None:
    await eta.place("d1", *north_of(PICKUP, 1200), now_ms())
    await matched_ride(eta.store)
    await eta.run()
    await eta.new_etas()
    await eta.store.cancel("sf-r1", by="driver", actor_id="d1")
    await eta.run()

    eta.clock.ms += 60_000
    await eta.pings({"driver_id": "d1", "lat": PICKUP.lat, "lon": PICKUP.lon, "ts": now_ms()})
    await eta.run()
    assert await eta.new_etas() == []


async def test_a_restart_resumes_active_rides_and_learned_speeds(
    eta: Eta, settings: Settings, redis: aioredis.Redis
) -> None:
    await eta.place("d1", *north_of(PICKUP, 1200), now_ms())
    await matched_ride(eta.store)
    await eta.store.set_driver_status("d2", "available")
    await eta.store.request_ride(
        ride_id="sf-r2", rider_id="u2", pickup=PICKUP, dropoff=DROPOFF, deadline_s=60
    )
    await eta.run()
    await redis.hset(eta.keys.speeds, MISSION, "6.5")

    restarted = Eta(settings, redis)
    try:
        await warm_up(restarted.deps)
        active = restarted.deps.rides.of_driver("d1")
        assert active is not None and (active.ride_id, active.phase) == ("sf-r1", "pickup")
        assert active.last_eta_s == default_eta_s(north_of(PICKUP, 1200), PICKUP)
        assert len(restarted.deps.rides) == 1, "a requested ride has no ETA to track"
        assert restarted.deps.models["sf"].speed_of(MISSION) == 6.5
    finally:
        await restarted.deps.redis.aclose()


async def test_an_eta_is_estimated_at_the_speeds_learned_on_the_way(eta: Eta) -> None:
    """A slow cell on the way makes the pickup ETA longer than at the default speed."""
    driver_at = north_of(PICKUP, 1500)
    slow = {cell_of(*north_of(PICKUP, m)) for m in range(0, 1501, 100)}
    eta.deps.models["sf"].restore(dict.fromkeys(slow, 3.0))
    await eta.place("d1", *driver_at, now_ms())
    await matched_ride(eta.store)
    await eta.run()

    [event] = await eta.new_etas()
    distance_m = haversine_m(*driver_at, PICKUP.lat, PICKUP.lon) * 1.3
    assert eta_of(event).eta_s == pytest.approx(distance_m / 3.0, rel=0.01)
