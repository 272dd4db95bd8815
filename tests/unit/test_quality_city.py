"""The quality city's drivers (loadtests/quality/city.py) against a stand-in for the driver API:
httpx's MockTransport answers the few routes a driver calls, so the loop runs on real time with
no platform behind it."""

from __future__ import annotations

import asyncio
import json
import math

import httpx

from loadtests.behaviours.streets import XY
from loadtests.chaos.city import Api, Ledger
from loadtests.quality.city import City, Driver
from loadtests.quality.scenario import (
    CityContext,
    DriverState,
    FleetDriver,
    Hooks,
    Scenario,
    area_centre,
    steady,
)

CHASE_M = 1500.0  # minutes of driving: the chase cannot end before the offer is due


class DriverApi:
    """The driver routes of the platform, as far as one driver needs them: it is `available`
    until `offer_now()`, then `offered` one ride until it accepts."""

    def __init__(self, pickup: tuple[float, float]) -> None:
        self.pickup = pickup
        self.offered = False
        self.accepted = asyncio.Event()
        self.calls: list[str] = []

    def offer_now(self) -> None:
        self.offered = True

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        path = request.url.path
        if request.method == "GET" and path.startswith("/v1/drivers/"):
            if self.offered and not self.accepted.is_set():
                lat, lon = self.pickup
                offer = {"ride_id": "r1", "pickup": {"lat": lat, "lon": lon}, "pickup_eta_s": 30}
                return httpx.Response(200, json={"status": "offered", "offer": offer})
            status = "matched" if self.accepted.is_set() else "available"
            return httpx.Response(200, json={"status": status, "offer": None})
        if path == "/v1/rides/r1/accept":
            self.accepted.set()
            lat, lon = self.pickup
            return httpx.Response(200, json={"dropoff": {"lat": lat, "lon": lon}})
        if path.endswith("/location"):
            return httpx.Response(202, json={})
        if path.endswith("/status"):
            json.loads(request.content)
            return httpx.Response(200, json={})
        return httpx.Response(200, json={})


async def test_a_driver_chasing_surge_takes_an_offer_on_the_way() -> None:
    """A reposition drive takes minutes; the driver is `available` throughout, so matching
    offers it rides. It used to poll only once there, and every such offer timed out."""
    chased = asyncio.Event()
    stand_in: DriverApi | None = None

    async def chase(driver: DriverState, ctx: CityContext) -> XY | None:
        assert stand_in is not None
        chased.set()
        stand_in.offer_now()  # matching offers the driver a ride as it sets off
        x, y = driver.position
        return (x + CHASE_M, y)

    scenario = Scenario(
        "chase", 1, steady(0.1, 10.0), hooks=Hooks(driver_reposition=chase), reposition_every_s=0
    )
    api = Api("http://platform.test", "s" * 32, Ledger())
    city = City(scenario, api, "redis://unused")
    start = city.grid.intersection(
        *city.grid.nearest_intersection(area_centre(city.grid, scenario.area))
    )
    stand_in = DriverApi(city.latlon(start))
    await api.http.aclose()
    api.http = httpx.AsyncClient(
        base_url="http://platform.test", transport=httpx.MockTransport(stand_in.handle)
    )
    driver = Driver(city, FleetDriver("q-chase-13-0", start, 1.0))
    stop = asyncio.Event()
    task = asyncio.create_task(driver.run(stop))
    try:
        await asyncio.wait_for(chased.wait(), 10)
        # an idle driver looks every second: the chaser must answer about as fast, not when
        # it arrives 1.5 km away (minutes)
        await asyncio.wait_for(stand_in.accepted.wait(), 6)
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await api.close()
    assert math.dist(driver.position, start) < CHASE_M / 2  # stopped on the way, not there
    accepts = [c for c in stand_in.calls if c.endswith("/accept")]
    assert accepts == ["POST /v1/rides/r1/accept"]
