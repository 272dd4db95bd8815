"""The ground-truth city: simulated drivers and riders that play a `Scenario` through the real
HTTP API of a running platform, and know what really happened.

Drivers move along the street grid (loadtests.behaviours.streets) at the street's true speed
for the scenario's hour (loadtests.behaviours.speeds) times their own pace, pinging position
and speed every PING_EVERY_S while they move, so the ETA service learns from the same traffic
the predictions are judged against. An idle driver looks for an offer every LOOK_EVERY_S,
accepts it, drives to the pickup, taps arrived, starts, drives to the drop-off and completes;
one driving somewhere of its own accord (a reposition hook) looks as often on the way and
takes an offer where it is.

The times of a ride's steps are the platform's own (the ride's timeline, read at the end, and
its first offer, read from the market's rides stream);
the sim keeps what only it knows: the predictions at request time (the quote's trip ETA, the
accepted offer's pickup ETA for the driver that came) and the baseline for the same ride
(straight line at a constant speed, from the driver's position when offered)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from loadtests.behaviours.speeds import street_speed_mps
from loadtests.behaviours.streets import XY, StreetGrid, bearing_deg
from loadtests.chaos.city import Api
from loadtests.quality.metrics import baseline_eta_s
from loadtests.quality.records import RideRecord
from loadtests.quality.scenario import (
    CityContext,
    DriverState,
    FleetDriver,
    Scenario,
    Trip,
    draw_fleet,
    draw_trips,
)
from ridepulse.keys import MarketKeys
from ridepulse.redis_client import connect
from ridepulse.replies import text
from ridepulse.settings import Settings

PING_EVERY_S = 2.0
IDLE_PING_EVERY_S = 5.0  # well inside the 30 s after which matching skips a silent driver
LOOK_EVERY_S = 1.0
STEP_S = 0.5  # how often a moving car's position is advanced (by the wall time that passed)
TERMINAL = frozenset({"completed", "cancelled", "expired"})
SURGE_SAMPLE_S = 2.0  # pricing recomputes surge every 2 s (RIDEPULSE_SURGE_INTERVAL_S)
KEY_PREFIX = "rp"  # the quality platforms run with the default key prefix
STREAM_PAGE = 1000


@dataclass
class Prediction:
    """What the sim saw of one ride at request and offer time."""

    trip_pred_s: float | None = None
    trip_base_s: float | None = None
    pickup_pred_s: float | None = None
    pickup_base_s: float | None = None


@dataclass
class CityResult:
    scenario: str
    started_ms: int
    records: list[RideRecord] = field(default_factory=list)
    requests: int = 0
    declined_for_price: int = 0
    unanswered: int = 0
    driver_busy_s: float = 0.0  # summed over drivers: matched → completed
    driver_online_s: float = 0.0
    # (seconds since start, highest multiplier of the market) every SURGE_SAMPLE_S
    surge_samples: list[tuple[float, float]] = field(default_factory=list)

    @property
    def utilisation(self) -> float | None:
        return self.driver_busy_s / self.driver_online_s if self.driver_online_s else None


class City:
    def __init__(self, scenario: Scenario, api: Api, redis_url: str) -> None:
        self.scenario = scenario
        self.api = api
        self.grid: StreetGrid = scenario.grid()
        self.predictions: dict[str, Prediction] = {}
        self.ride_ids: list[str] = []
        self.started = time.monotonic()
        self.result = CityResult(scenario.name, int(time.time() * 1000))
        self.ctx = CityContext(scenario, self.grid, api, redis_url, self.elapsed)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def latlon(self, p: XY) -> tuple[float, float]:
        ll = self.grid.frame.to_latlon(*p)
        return round(ll.lat, 6), round(ll.lon, 6)

    # ---- riders ------------------------------------------------------------------------
    async def rider(self, seq: int, trip: Trip, rng: random.Random) -> None:
        rider = f"q-rider-{self.scenario.name}-{self.scenario.seed}-{seq}-{int(self.started)}"
        headers = self.api.auth("rider", rider)
        (plat, plon), (dlat, dlon) = self.latlon(trip.pickup), self.latlon(trip.dropoff)
        params = {"pickup_lat": plat, "pickup_lon": plon, "dropoff_lat": dlat, "dropoff_lon": dlon}
        self.result.requests += 1
        quote = await self.api.until_answered(
            "GET", "/v1/quote", 30.0, params=params, headers=headers
        )
        if quote is None or quote.status_code != 200:
            self.result.unanswered += 1
            return
        offer = quote.json()
        accepts = self.scenario.hooks.rider_accepts
        if accepts is not None and not accepts(offer, rng):
            self.result.declined_for_price += 1
            return
        body = {
            "pickup": {"lat": plat, "lon": plon},
            "dropoff": {"lat": dlat, "lon": dlon},
            "quote_id": offer["quote_id"],
        }
        answer = await self.api.until_answered(
            "POST", "/v1/rides", 30.0, json=body, headers={**headers, "Idempotency-Key": rider}
        )
        if answer is None or answer.status_code != 202:
            self.result.unanswered += 1
            return
        ride_id = answer.json()["ride_id"]
        self.ride_ids.append(ride_id)
        self.predictions[ride_id] = Prediction(
            trip_pred_s=offer.get("trip_eta_s"),
            trip_base_s=round(baseline_eta_s(plat, plon, dlat, dlon), 1),
        )

    async def riders(self) -> None:
        rng = random.Random(f"{self.scenario.seed}:riders:{self.scenario.market}")
        trips = draw_trips(self.scenario, self.grid)
        tasks: list[asyncio.Task[None]] = []
        for seq, trip in enumerate(trips):
            # an absolute schedule: a slow loop delays a request, never drops it
            await asyncio.sleep(max(0.0, trip.at_s - self.elapsed()))
            tasks.append(asyncio.create_task(self.rider(seq, trip, random.Random(rng.random()))))
        await asyncio.gather(*tasks)

    # ---- the end: the platform's record of every ride ------------------------------------
    async def open_rides(self, until: str) -> list[str]:
        headers = self.api.auth("ops", "quality")
        still: list[str] = []
        for ride_id in self.ride_ids:
            r = await self.api.call("GET", f"/v1/rides/{ride_id}", headers=headers)
            if r is None or r.status_code != 200:
                still.append(ride_id)
                continue
            status = r.json()["status"]
            done = status in TERMINAL or (
                until == "arrived" and status in ("driver_arrived", "started")
            )
            if not done:
                still.append(ride_id)
        return still

    async def collect(self) -> list[RideRecord]:
        headers = self.api.auth("ops", "quality")
        offered = await self.first_offers()
        records: list[RideRecord] = []
        for ride_id in self.ride_ids:
            r = await self.api.until_answered("GET", f"/v1/rides/{ride_id}", 30.0, headers=headers)
            if r is None or r.status_code != 200:
                continue
            seen = self.predictions.get(ride_id)
            records.append(record_from_ride(r.json(), seen, offered.get(ride_id)))
        return records

    async def first_offers(self) -> dict[str, int]:
        """When each ride was first offered, from the market's rides stream (kept an hour,
        RIDEPULSE_RIDE_STREAM_RETENTION_S, so a whole platform's runs are still there)."""
        client = connect(Settings(), self.ctx.redis_url)
        stream = MarketKeys(self.scenario.market, KEY_PREFIX).rides
        entries: list[tuple[Any, dict[Any, Any]]] = []
        start = "-"
        try:
            while True:  # bounded: the stream is finite and every page moves past its last id
                page: Any = await client.xrange(stream, start, "+", count=STREAM_PAGE)
                entries += page
                if len(page) < STREAM_PAGE:
                    break
                start = "(" + text(page[-1][0])
        finally:
            await client.aclose()
        return first_offers(entries)


def first_offers(entries: Iterable[tuple[Any, Mapping[Any, Any]]]) -> dict[str, int]:
    """Ride id → epoch ms of its first `ride.offered`, over rides-stream entries (id, fields).
    A ride's hash keeps only the steps of its current path (an offer that timed out sends it
    back to `requested` and clears `offered_at`), so its timeline cannot say this."""
    first: dict[str, int] = {}
    for _entry_id, raw in entries:
        fields = {text(k): v for k, v in raw.items()}
        if text(fields.get("type", "")) != "ride.offered":
            continue
        ride_id = orjson.loads(fields["data"])["ride_id"]
        at = int(text(fields["time"]))
        if ride_id not in first or at < first[ride_id]:
            first[ride_id] = at
    return first


def record_from_ride(
    ride: dict[str, Any], seen: Prediction | None, first_offered_ms: int | None = None
) -> RideRecord:
    """A RideRecord from the API's ride answer (its timeline), what the sim saw and when the
    ride was first offered (`first_offers`; the timeline's own `offered` is only the offer on
    the ride's current path, gone from a ride whose offers all timed out)."""
    first: dict[str, int] = {}
    for entry in ride.get("timeline", []):
        first.setdefault(entry["status"], int(entry["at"]))
    if first_offered_ms is not None:
        first["offered"] = min(first_offered_ms, first.get("offered", first_offered_ms))
    seen = seen or Prediction()
    requested = first.get("requested")
    if requested is None:
        raise ValueError(f"ride {ride.get('ride_id')} has no requested step in its timeline")
    return RideRecord(
        ride_id=ride["ride_id"],
        requested_ms=requested,
        deadline_ms=int(ride["deadline_at"]),
        offered_ms=first.get("offered"),
        matched_ms=first.get("matched"),
        arrived_ms=first.get("driver_arrived"),
        completed_ms=first.get("completed"),
        pickup_pred_s=seen.pickup_pred_s,
        trip_pred_s=seen.trip_pred_s,
        pickup_base_s=seen.pickup_base_s,
        trip_base_s=seen.trip_base_s,
        fare=ride.get("fare") if first.get("completed") is not None else None,
        surge=ride.get("surge"),
    )


class Driver:
    def __init__(self, city: City, me: FleetDriver) -> None:
        self.city, self.me = city, me
        self.position: XY = me.start
        self.headers = city.api.auth("driver", me.driver_id)
        self.last_ping = 0.0
        self.idle_since = time.monotonic()
        self.busy_s = 0.0
        self.busy_began: float | None = None

    def busy_until(self, now: float) -> float:
        """Seconds spent on rides so far, a ride in progress counted up to `now`."""
        return self.busy_s + (now - self.busy_began if self.busy_began is not None else 0.0)

    async def ping(self, speed_mps: float | None = None, heading: float | None = None) -> None:
        lat, lon = self.city.latlon(self.position)
        body: dict[str, Any] = {"lat": lat, "lon": lon, "ts": int(time.time() * 1000)}
        if speed_mps is not None:
            body["speed_mps"] = round(speed_mps, 2)
        if heading is not None:
            body["heading"] = round(heading, 1)
        await self.city.api.call(
            "POST", f"/v1/drivers/{self.me.driver_id}/location", json=body, headers=self.headers
        )
        self.last_ping = time.monotonic()

    async def tap(self, method: str, path: str, **kwargs: Any) -> dict[str, Any] | None:
        r = await self.city.api.until_answered(method, path, 30.0, headers=self.headers, **kwargs)
        return r.json() if r is not None and r.status_code == 200 else None

    async def offer(self) -> dict[str, Any] | None:
        """The offer the platform holds for this driver, if any (one look, GET /v1/drivers)."""
        me = self.me.driver_id
        view = await self.city.api.call("GET", f"/v1/drivers/{me}", headers=self.headers)
        if view is None or view.status_code != 200:
            return None
        answer = view.json()
        offer: dict[str, Any] | None = answer.get("offer")
        return offer if answer.get("status") == "offered" and offer else None

    async def drive_to(self, target: XY, look_for_offers: bool = False) -> dict[str, Any] | None:
        """Along the streets at the true speed; the wall time that passes is the truth.

        With `look_for_offers` (a drive of its own, not one to a pickup or drop-off: the
        driver is `available` all along) the driver looks for an offer every LOOK_EVERY_S on
        the way, as an idle one does, and stops where it is on the first: the offer is
        returned for the caller to take. None when it got to `target`."""
        route = self.city.grid.route(self.position, target)
        done_m = 0.0
        last = last_look = time.monotonic()
        hour = self.city.scenario.hour
        while done_m < route.length_m:
            await asyncio.sleep(STEP_S)
            now = time.monotonic()
            speed = street_speed_mps(self.city.grid, self.position, hour) * self.me.pace
            before = self.position
            done_m += speed * (now - last)
            last = now
            self.position = route.position_at(done_m)
            if now - self.last_ping >= PING_EVERY_S:
                await self.ping(speed, bearing_deg(before, self.position))
            if look_for_offers and now - last_look >= LOOK_EVERY_S:
                last_look = now
                offer = await self.offer()
                if offer is not None:
                    return offer
        self.position = route.end
        return None

    async def serve(self, offer: dict[str, Any]) -> None:
        ride_id = offer["ride_id"]
        here = self.city.latlon(self.position)
        pickup = (offer["pickup"]["lat"], offer["pickup"]["lon"])
        accepted = await self.tap("POST", f"/v1/rides/{ride_id}/accept")
        if accepted is None:
            return
        self.busy_began = began = time.monotonic()
        seen = self.city.predictions.setdefault(ride_id, Prediction())
        seen.pickup_pred_s = offer.get("pickup_eta_s")
        seen.pickup_base_s = round(baseline_eta_s(*here, *pickup), 1)
        frame = self.city.grid.frame
        await self.drive_to(frame.to_xy(*pickup))
        if await self.tap("POST", f"/v1/rides/{ride_id}/arrived") is None:
            self.busy_began = None
            return
        if await self.tap("POST", f"/v1/rides/{ride_id}/start") is None:
            self.busy_began = None
            return
        dropoff = accepted["dropoff"]
        await self.drive_to(frame.to_xy(dropoff["lat"], dropoff["lon"]))
        await self.tap("POST", f"/v1/rides/{ride_id}/complete")
        await self.ping(0.0)
        self.busy_s += time.monotonic() - began
        self.busy_began = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self._run(stop)
        except Exception as exc:  # a bug in the sim must show, not silently park a driver
            print(f"quality: driver {self.me.driver_id} failed: {exc!r}", flush=True)
            raise

    async def _run(self, stop: asyncio.Event) -> None:
        me = self.me.driver_id
        await self.ping()
        await self.tap("PUT", f"/v1/drivers/{me}/status", json={"status": "available"})
        self.idle_since = time.monotonic()
        hook = self.city.scenario.hooks.driver_reposition
        while not stop.is_set():
            if time.monotonic() - self.last_ping >= IDLE_PING_EVERY_S:
                await self.ping()
            offer = await self.offer()
            idle_for = time.monotonic() - self.idle_since
            if (
                offer is None
                and hook is not None
                and idle_for >= self.city.scenario.reposition_every_s
            ):
                target = await hook(DriverState(me, self.position), self.city.ctx)
                if target is not None:
                    # still available while it drives: an offer on the way is taken like any
                    # (the chase stops there), not left to time out
                    offer = await self.drive_to(target, look_for_offers=True)
                    if offer is None:
                        await self.ping(0.0)
                self.idle_since = time.monotonic()
            if offer is not None:
                await self.serve(offer)
                self.idle_since = time.monotonic()
                continue
            await asyncio.sleep(LOOK_EVERY_S * random.uniform(0.8, 1.2))
        # off shift: later scenarios on the same platform do not get this driver
        await self.tap("PUT", f"/v1/drivers/{me}/status", json={"status": "offline"})


async def play(scenario: Scenario, api: Api, redis_url: str, progress: bool = True) -> CityResult:
    """Drivers online, the demand played, then wait (up to `drain_s`) for open rides."""
    city = City(scenario, api, redis_url)
    stop = asyncio.Event()
    drivers = [Driver(city, d) for d in draw_fleet(scenario, city.grid)]
    tasks = [asyncio.create_task(d.run(stop)) for d in drivers]
    await asyncio.sleep(4.0)  # online and in the geo index before the first request
    city.started = time.monotonic()
    city.result.started_ms = int(time.time() * 1000)
    ticker = asyncio.create_task(_progress(city, scenario.demand.duration_s))
    sampling = asyncio.Event()
    sampler = asyncio.create_task(_sample_surge(city, redis_url, sampling))
    await city.riders()
    drain_end = time.monotonic() + scenario.drain_s
    while time.monotonic() < drain_end:
        still = await city.open_rides(scenario.wait_for)
        if not still:
            break
        await asyncio.sleep(2.0)
    ticker.cancel()
    sampling.set()  # stopped between reads, not cancelled mid-command (see _sample_surge)
    await sampler
    ended = time.monotonic()
    online_s = ended - city.started
    busy_s = sum(min(d.busy_until(ended), online_s) for d in drivers)
    stop.set()
    # idle drivers go offline within a look; one still driving is cut off (en route or on a
    # trip, so no later scenario on this platform is offered it) and its busy time counts to now
    _done, cut_off = await asyncio.wait(tasks, timeout=2 * LOOK_EVERY_S + 1)
    for t in cut_off:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    city.result.records = await city.collect()
    city.result.driver_busy_s = busy_s
    city.result.driver_online_s = online_s * len(drivers)
    return city.result


async def _sample_surge(city: City, redis_url: str, stop: asyncio.Event) -> None:
    """The market's highest surge multiplier over the run (pricing's read model), until `stop`.

    Stopped by an event between reads, never cancelled, and every read has a socket timeout
    (`connect`'s, from the settings); its errors now fail the run (they were swallowed, so on a
    cluster, whose URL `from_url` refused, no surge was ever sampled). Why no cancelling: a
    CI run hung 18 min in play() with its drivers still polling (so past the drain, before
    `stop`) and one connection to Valkey open, the sampler's. The likely cause is the close of
    a client whose command was cancelled mid-flight never returning (redis/redis-py#3941
    reports such a close); not reproduced."""
    client = connect(Settings(), redis_url)  # a cluster client for redis+cluster:// too
    key = MarketKeys(city.scenario.market, KEY_PREFIX).surge
    try:
        while not stop.is_set():
            raw: Any = await client.hvals(key)
            peak = max((float(v) for v in raw), default=1.0)
            city.result.surge_samples.append((round(city.elapsed(), 1), peak))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SURGE_SAMPLE_S)
    finally:
        await client.aclose()


async def _progress(city: City, duration_s: float) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(15.0)
            t = city.elapsed()
            phase = "demand" if t <= duration_s else "drain"
            print(
                f"quality:   {city.scenario.name}: {t:4.0f}s ({phase}) requests "
                f"{city.result.requests}, rides {len(city.ride_ids)}",
                flush=True,
            )
