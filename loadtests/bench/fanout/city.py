"""The fan-out bench's city, a process of its own. The bench fleet's drivers ping every
`ping_interval_s`, applied per 100 ms batch by matching's own step; rides go from request to
completion by the Lua steps ingest and matching run, one step per ride event. It writes as the
operator (no one service's ACL user may write both), so every ride step is one the bench chose."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from loadtests.bench import fleet
from matching.geo_index import update_positions
from ridepulse.contracts.envelope import now_ms
from ridepulse.contracts.events import Ping, Point
from ridepulse.keys import MarketKeys
from ridepulse.markets import load_markets
from ridepulse.pause import sleep_or_stop
from ridepulse.redis_client import connect
from ridepulse.rides.store import RideStore
from ridepulse.settings import Settings

PREFIX = "rp"
BATCH_PERIOD_S = 0.1  # matching applies telemetry per batch; a batch every 100 ms
RIDES_IN_FLIGHT = 20
Step = Callable[[RideStore, str, str], Awaitable[Any]]  # (store, ride id, driver id)
STEPS: tuple[Step, ...] = (  # after the request
    lambda store, ride, driver: store.offer(
        ride_id=ride, driver_id=driver, pickup_eta_s=180.0, offer_timeout_s=600.0
    ),
    lambda store, ride, driver: store.accept(ride, driver),
    lambda store, ride, driver: store.arrived(ride, driver),
    lambda store, ride, driver: store.start(ride, driver),
    lambda store, ride, driver: store.complete(ride, driver, fare=24.5),
)


def market_keys() -> MarketKeys:
    return MarketKeys(load_markets().default.id, PREFIX)


def city_pings(first: int, count: int, drivers: int, step: int) -> list[Ping]:
    """Pings of `count` drivers from `first`, wrapping at `drivers`; each step moves a driver
    ~30 m, so every batch changes what the dashboard shows."""
    ts, wrapped = now_ms(), max(0, first + count - drivers)
    ranges = ((first, count - wrapped), (0, wrapped))
    return [Ping(**p) for start, n in ranges for p in fleet.pings(start, n, ts=ts, step=step)]


class RideFlow:
    """RIDES_IN_FLIGHT rides under way, stepped in turn; a completed one is replaced by a new."""

    def __init__(self, store: RideStore, drivers: int, rng: random.Random) -> None:
        self.store, self.drivers, self.rng = store, drivers, rng
        self.rides: deque[tuple[str, str, int]] = deque()  # ride, its driver, its next step
        self.requested = 0

    async def step(self) -> None:
        if len(self.rides) < RIDES_IN_FLIGHT:
            return await self.request()
        ride, driver, index = self.rides.popleft()
        await STEPS[index](self.store, ride, driver)
        if index + 1 < len(STEPS):
            self.rides.append((ride, driver, index + 1))

    async def request(self) -> None:
        self.requested += 1
        ride, (lat, lon) = f"fr{self.requested:06d}", fleet.random_point(self.rng)
        pickup, dropoff = Point(lat=lat, lon=lon), Point(lat=lat + 0.01, lon=lon - 0.01)
        rider = f"rider{self.requested}"
        await self.store.request_ride(
            ride_id=ride, rider_id=rider, pickup=pickup, dropoff=dropoff, deadline_s=600.0
        )
        busy, driver = {d for _, d, _ in self.rides}, ""
        while not driver or driver in busy:
            driver = fleet.driver_id(self.rng.randrange(self.drivers))
        self.rides.append((ride, driver, 0))


async def every(
    period_s: Callable[[], float], step: Callable[[], Awaitable[None]], stop: asyncio.Event
) -> int:
    """Call `step` after each `period_s()` (catching up, never bursting) until stop; the count."""
    loop, count = asyncio.get_running_loop(), 0
    next_at = loop.time()
    while not stop.is_set():
        await step()
        count += 1
        next_at = max(next_at + period_s(), loop.time() - BATCH_PERIOD_S)
        await sleep_or_stop(stop, next_at - loop.time())
    return count


async def run_city(redis_url: str, drivers: int, ride_events_per_s: float, ping_s: float) -> None:
    """Until SIGTERM; then one JSON line: what the city actually wrote, per second."""
    redis = connect(Settings(redis_url=redis_url, key_prefix=PREFIX))
    keys, stop = market_keys(), asyncio.Event()
    store = RideStore(redis, keys, source="bench/city")
    for first in range(0, drivers, 200):
        ids = map(fleet.driver_id, range(first, min(drivers, first + 200)))
        await asyncio.gather(*(store.set_driver_status(d, "available") for d in ids))
    await update_positions(redis, keys, city_pings(0, drivers, drivers, 0))
    print(json.dumps({"ready": True}), flush=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    per_batch = max(1, round(drivers * BATCH_PERIOD_S / ping_s))
    cursor, step = 0, 1  # step 0 is where the drivers start

    async def telemetry() -> None:
        nonlocal cursor, step
        await update_positions(redis, keys, city_pings(cursor, per_batch, drivers, step))
        cursor = (cursor + per_batch) % drivers
        step += cursor < per_batch  # a new step once every driver has pinged

    flow, arrivals = RideFlow(store, drivers, random.Random(11)), random.Random(13)
    started = time.monotonic()
    batches, events = await asyncio.gather(
        every(lambda: BATCH_PERIOD_S, telemetry, stop),
        # Poisson arrivals: a fixed 100 ms cadence would phase-lock with the hub's 100 ms tick
        every(lambda: arrivals.expovariate(ride_events_per_s), flow.step, stop),
    )
    elapsed = time.monotonic() - started
    rates = {"pings_per_s": batches * per_batch / elapsed, "ride_events_per_s": events / elapsed}
    print(json.dumps(rates), flush=True)
    await redis.aclose()
