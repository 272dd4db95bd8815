"""What a quality run plays: a `Scenario` (fleet, demand over time, seed, platform settings, and
optional behaviour hooks), and the seeded draws that turn it into drivers and ride requests.

Everything random comes from the scenario's seed, so the same seed gives the same fleet
positions, driver temperaments, request times and trips: two runs of one seed (or two scenarios
that differ only in settings or hooks) meet the same city. The platform's own timing still
varies a little from run to run; that noise is what repeated seeds measure.

Hooks (for scenarios that need behaviour beyond "drive where dispatched, ride when quoted"):

- `Hooks.rider_accepts(quote, rng) -> bool`: called with the API's quote answer (a dict with
  `fare`, `surge`, `pickup_eta_s`, `trip_eta_s`, ...) before the rider requests; False means the
  rider declines for price (counted in `CityResult.declined_for_price`, no ride is requested).
- `Hooks.driver_reposition(driver, ctx) -> XY | None` (async): asked when an idle driver has had
  no offer for `ctx.scenario.reposition_every_s`; a point (metres in the market's street frame,
  `ctx.grid.frame`) makes the driver drive there along the streets (pinging, and looking for
  offers on the way as often as an idle driver does: the first one ends the drive where the
  driver is and is taken like any other); None keeps it where it is. `ctx` gives the street
  grid, the API client (`ctx.api`, tokens via `ctx.api.auth(role, subject)`), the Redis URL of
  the platform, and seconds since the scenario started.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from loadtests.behaviours.speeds import core_radius_m
from loadtests.behaviours.streets import XY, StreetGrid
from ridepulse.markets import load_markets

if TYPE_CHECKING:
    from loadtests.chaos.city import Api


@dataclass(frozen=True, slots=True)
class Demand:
    """Ride requests per second over time: piecewise linear through `points` (t_s, rate/s),
    flat before the first point, zero after the last (the last point's t is the duration)."""

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("demand needs at least one point")
        times = [t for t, _ in self.points]
        if times != sorted(times) or times[0] < 0:
            raise ValueError("demand points must be in time order, from t >= 0")
        if any(rate < 0 for _, rate in self.points):
            raise ValueError("demand rates must be >= 0")

    @property
    def duration_s(self) -> float:
        return self.points[-1][0]

    @property
    def peak(self) -> float:
        return max(rate for _, rate in self.points)

    def rate_at(self, t: float) -> float:
        if t < 0 or t > self.duration_s:
            return 0.0
        if t <= self.points[0][0]:
            return self.points[0][1]
        for (t0, r0), (t1, r1) in zip(self.points, self.points[1:], strict=False):
            if t0 <= t <= t1:
                return r0 if t1 == t0 else r0 + (r1 - r0) * (t - t0) / (t1 - t0)
        return self.points[-1][1]

    def expected(self) -> float:
        """The expected number of requests (the integral of the rate)."""
        total = self.points[0][0] * self.points[0][1]
        for (t0, r0), (t1, r1) in zip(self.points, self.points[1:], strict=False):
            total += (t1 - t0) * (r0 + r1) / 2
        return total

    def arrivals(self, rng: random.Random) -> list[float]:
        """Request times (s since start) of a Poisson process with this rate, by thinning."""
        peak = self.peak
        if peak <= 0:
            return []
        times: list[float] = []
        t = 0.0
        while True:
            t += rng.expovariate(peak)
            if t > self.duration_s:
                return times
            if rng.random() * peak <= self.rate_at(t):
                times.append(t)


def steady(rate: float, duration_s: float) -> Demand:
    return Demand(((0.0, rate), (duration_s, rate)))


def rush(base: float, peak: float, duration_s: float) -> Demand:
    """A ramp from `base` up to `peak` over the first 40 %, held, then easing in the last 20 %."""
    return Demand(
        (
            (0.0, base),
            (0.4 * duration_s, peak),
            (0.8 * duration_s, peak),
            (duration_s, (base + peak) / 2),
        )
    )


def spike(base: float, peak: float, duration_s: float, at_s: float, width_s: float) -> Demand:
    """A stadium let-out: `base`, jumping to `peak` at `at_s` for `width_s`, then back."""
    edge = min(2.0, width_s / 4)
    return Demand(
        (
            (0.0, base),
            (at_s, base),
            (at_s + edge, peak),
            (at_s + width_s, peak),
            (at_s + width_s + edge, base),
            (duration_s, base),
        )
    )


@dataclass(frozen=True, slots=True)
class Area:
    """Where the scenario's drivers start and its trips begin and end: a disc in the market's
    street frame. Its centre lies east of the market centre, `outside_core_m` beyond the edge
    of the slow downtown core (whose radius differs by market: 1.39 km in sf, 0.91 km in nyc),
    so a small city straddles the core and the faster streets around it in every market
    (speeds with structure for the ETA model to learn). The default puts it 1.7 km east in sf."""

    radius_m: float = 700.0
    outside_core_m: float = 310.7
    min_trip_m: float = 150.0
    max_trip_m: float = 350.0


@dataclass(frozen=True, slots=True)
class Hotspot:
    """Where the requests of a time window start: a stadium letting out. Trips requested between
    `from_s` and `until_s` have their pickup within `radius_m` of a point `east_m`/`north_m`
    from the area's centre (drop-offs stay spread over the area)."""

    from_s: float
    until_s: float
    east_m: float = 0.0
    north_m: float = 0.0
    radius_m: float = 120.0


@dataclass
class CityContext:
    """What a hook may look at. `api` is the run's HTTP client (loadtests.chaos.city.Api)."""

    scenario: Scenario
    grid: StreetGrid
    api: Api
    redis_url: str
    elapsed_s: Callable[[], float]


@dataclass(frozen=True)
class DriverState:
    """A hook's view of one idle driver."""

    driver_id: str
    position: XY


RiderAccepts = Callable[[dict[str, Any], random.Random], bool]
DriverReposition = Callable[[DriverState, CityContext], Awaitable[XY | None]]


@dataclass(frozen=True)
class Hooks:
    rider_accepts: RiderAccepts | None = None
    driver_reposition: DriverReposition | None = None


@dataclass(frozen=True)
class Scenario:
    """One city to play through the platform. `env` are RIDEPULSE_* settings for `ridepulse up`:
    scenarios with the same env (and markets) share one platform start. `wait_for` says how
    long the run lasts after demand ends: until every ride reached `completed` (trip ETAs need
    that) or only `arrived` (pickup and matching figures), or `drain_s` passed."""

    name: str
    drivers: int
    demand: Demand
    seed: int = 13
    market: str = "sf"
    hour: float = 13.0  # simulated hour of day for the street speeds (loadtests.behaviours.speeds)
    env: Mapping[str, str] = field(default_factory=dict)
    hooks: Hooks = field(default_factory=Hooks)
    area: Area = field(default_factory=Area)
    drain_s: float = 45.0
    wait_for: Literal["completed", "arrived"] = "completed"
    reposition_every_s: float = 5.0
    hotspot: Hotspot | None = None

    def grid(self) -> StreetGrid:
        market = load_markets(only="all").get(self.market)
        return StreetGrid(market.bbox, market.center)

    def env_key(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.env.items()))


def area_centre(grid: StreetGrid, area: Area) -> XY:
    return (grid.center[0] + core_radius_m(grid) + area.outside_core_m, grid.center[1])


def point_in(area: Area, grid: StreetGrid, rng: random.Random) -> XY:
    cx, cy = area_centre(grid, area)
    r, a = area.radius_m * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
    return grid.frame.clamp(cx + r * math.cos(a), cy + r * math.sin(a))


@dataclass(frozen=True, slots=True)
class Trip:
    at_s: float
    pickup: XY
    dropoff: XY


@dataclass(frozen=True, slots=True)
class FleetDriver:
    driver_id: str
    start: XY
    pace: float  # the driver's own temperament: a factor on the street's typical speed


def draw_trips(scenario: Scenario, grid: StreetGrid) -> list[Trip]:
    """The scenario's requests: times from its demand, trips inside its area, seeded."""
    rng = random.Random(f"{scenario.seed}:trips:{scenario.market}")
    trips: list[Trip] = []
    spot = scenario.hotspot
    for at in scenario.demand.arrivals(rng):
        if spot is not None and spot.from_s <= at <= spot.until_s:
            cx, cy = area_centre(grid, scenario.area)
            r, a = spot.radius_m * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
            pickup = grid.frame.clamp(
                cx + spot.east_m + r * math.cos(a), cy + spot.north_m + r * math.sin(a)
            )
        else:
            pickup = point_in(scenario.area, grid, rng)
        while True:
            dropoff = point_in(scenario.area, grid, rng)
            if scenario.area.min_trip_m <= math.dist(pickup, dropoff) <= scenario.area.max_trip_m:
                break
        trips.append(Trip(round(at, 3), pickup, dropoff))
    return trips


def draw_fleet(scenario: Scenario, grid: StreetGrid) -> list[FleetDriver]:
    """The scenario's drivers: start corners inside its area and a pace each, seeded."""
    rng = random.Random(f"{scenario.seed}:fleet:{scenario.market}")
    fleet: list[FleetDriver] = []
    for i in range(scenario.drivers):
        x, y = point_in(scenario.area, grid, rng)
        corner = grid.intersection(*grid.nearest_intersection((x, y)))
        fleet.append(
            FleetDriver(f"q-{scenario.name}-{scenario.seed}-{i}", corner, rng.uniform(0.9, 1.1))
        )
    return fleet


def spec(scenarios: Mapping[str, Scenario]) -> dict[str, Any]:
    """A printable summary (for progress lines and the report)."""
    return {
        name: {
            "drivers": s.drivers,
            "expected_requests": round(s.demand.expected(), 1),
            "duration_s": s.demand.duration_s,
            "env": dict(s.env),
            "market": s.market,
            "hour": s.hour,
        }
        for name, s in scenarios.items()
    }
