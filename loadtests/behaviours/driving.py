"""One simulated driver: where it is, where it is going, what its phone reports, what it decides.

The model owns all of a driver's randomness (an injected `random.Random`), so a seed replays the
same city; the locust DriverUser only turns its state changes into API calls.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from loadtests.behaviours.speeds import street_speed_mps
from loadtests.behaviours.streets import XY, Polyline, StreetGrid, bearing_deg
from ridepulse.markets import LatLon

GPS_SIGMA_M = 5.0  # typical phone GPS error in open streets
ROAM_RADIUS_M = 2500.0  # roaming drivers stay in their part of town: supply stays spread


class DriverState(Enum):
    ROAMING = "roaming"
    TO_PICKUP = "to_pickup"
    ON_TRIP = "on_trip"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Ping:
    """What the driver app sends: a noisy position, the device time, speed and heading."""

    lat: float
    lon: float
    ts: int
    speed_mps: float
    heading: float
    accuracy_m: float = GPS_SIGMA_M

    def to_json(self) -> dict[str, float | int]:
        return {
            "lat": round(self.lat, 6),
            "lon": round(self.lon, 6),
            "ts": self.ts,
            "speed_mps": self.speed_mps,
            "heading": self.heading,
            "accuracy_m": self.accuracy_m,
        }


@dataclass(frozen=True, slots=True)
class DriverTraits:
    """Knobs of behaviour; the defaults give a plausible evening."""

    accept_probability: float = 0.9
    mean_online_s: float = 1800.0
    mean_offline_s: float = 120.0
    start_hour: float = 8.0
    gps_sigma_m: float = GPS_SIGMA_M


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class DriverModel:
    """State machine roaming → to_pickup → on_trip → roaming, with offline spells while roaming."""

    def __init__(
        self,
        grid: StreetGrid,
        rng: random.Random,
        traits: DriverTraits = DriverTraits(),
        *,
        start: XY | None = None,
        now_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.grid = grid
        self.rng = rng
        self.traits = traits
        self.now_ms = now_ms
        self.state = DriverState.ROAMING
        self.position: XY = start if start is not None else grid.random_intersection(rng)
        self.heading = 0.0
        self.temperament = rng.uniform(0.85, 1.15)  # some drive faster than others, consistently
        self.sim_elapsed_s = 0.0
        self.route = self._roam_route()
        self.travelled_m = 0.0

    @property
    def hour(self) -> float:
        """Simulated hour of day; advances with the simulated seconds given to `step`."""
        return (self.traits.start_hour + self.sim_elapsed_s / 3600.0) % 24.0

    @property
    def at_destination(self) -> bool:
        return self.travelled_m >= self.route.length_m - 1e-6

    @property
    def location(self) -> LatLon:
        """The true (noise-free) position."""
        return self.grid.frame.to_latlon(*self.position)

    def step(self, dt_s: float) -> Ping:
        """Advance `dt_s` simulated seconds along the route and report a noisy ping."""
        self.sim_elapsed_s += dt_s
        advanced = 0.0
        if self.state is not DriverState.OFFLINE and dt_s > 0:
            if self.state is DriverState.ROAMING and self.at_destination:
                self.route, self.travelled_m = self._roam_route(), 0.0
            wanted = self.target_speed_mps() * dt_s
            before, start_m = self.position, self.travelled_m
            self.travelled_m = min(self.travelled_m + wanted, self.route.length_m)
            self.position = self.route.position_at(self.travelled_m)
            advanced = self.travelled_m - start_m  # odometer distance, corners included
            if math.dist(before, self.position) > 0.5:
                self.heading = bearing_deg(before, self.position)
        return self._ping(advanced / dt_s if dt_s > 0 else 0.0)

    def target_speed_mps(self) -> float:
        """Traffic speed here and now, times temperament, with a little moment-to-moment jitter."""
        base = street_speed_mps(self.grid, self.position, self.hour)
        return base * self.temperament * self.rng.uniform(0.92, 1.08)

    def decide_offer(self) -> bool:
        """Accept with the configured probability (real drivers decline some for no reason)."""
        return self.rng.random() < self.traits.accept_probability

    def start_pickup(self, pickup: LatLon) -> None:
        self._drive_to(pickup, DriverState.TO_PICKUP)

    def start_trip(self, dropoff: LatLon) -> None:
        self._drive_to(dropoff, DriverState.ON_TRIP)

    def finish(self) -> None:
        """Back to roaming after a completed, cancelled or abandoned ride."""
        self.state = DriverState.ROAMING
        self.route, self.travelled_m = self._roam_route(), 0.0

    def wants_offline(self, dt_s: float) -> bool:
        """Only an idle driver signs off; sessions last `mean_online_s` on average (exponential)."""
        if self.state is not DriverState.ROAMING:
            return False
        return self.rng.random() < 1.0 - math.exp(-dt_s / self.traits.mean_online_s)

    def wants_online(self, dt_s: float) -> bool:
        if self.state is not DriverState.OFFLINE:
            return False
        return self.rng.random() < 1.0 - math.exp(-dt_s / self.traits.mean_offline_s)

    def go_offline(self) -> None:
        self.state = DriverState.OFFLINE

    def go_online(self) -> None:
        self.finish()

    def _drive_to(self, target: LatLon, state: DriverState) -> None:
        goal = self.grid.frame.clamp(*self.grid.frame.to_xy(target.lat, target.lon))
        self.state = state
        self.route, self.travelled_m = self.grid.route(self.position, goal), 0.0

    def _roam_route(self) -> Polyline:
        goal = self.grid.random_intersection(self.rng, near=self.position, radius_m=ROAM_RADIUS_M)
        return self.grid.route(self.position, goal)

    def _ping(self, speed_mps: float) -> Ping:
        sigma = self.traits.gps_sigma_m
        noisy = (
            self.position[0] + self.rng.gauss(0, sigma),
            self.position[1] + self.rng.gauss(0, sigma),
        )
        where = self.grid.frame.to_latlon(*self.grid.frame.clamp(*noisy))
        return Ping(
            lat=where.lat,
            lon=where.lon,
            ts=self.now_ms(),
            speed_mps=round(speed_mps, 2),
            heading=round(self.heading, 1),
            accuracy_m=sigma,
        )
