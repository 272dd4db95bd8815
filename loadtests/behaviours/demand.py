"""Where riders want to go: weighted gaussian hotspots over a thin uniform background.

Requests pile up in a few places (downtown, an airport-ish corner, a stadium) while roaming drivers
spread evenly, so demand outruns supply in those cells and pricing has surge to compute.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from loadtests.behaviours.streets import XY, Frame
from ridepulse.markets import LatLon, Market

MIN_TRIP_M = 800.0  # shorter than this, people walk
MAX_DRAWS = 20  # resampling budget before falling back to a clamped point


@dataclass(frozen=True, slots=True)
class Hotspot:
    name: str
    center: XY
    sigma_m: float
    weight: float


@dataclass(frozen=True, slots=True)
class RiderHabits:
    """How riders behave around a request."""

    quote_probability: float = 0.5
    cancel_probability: float = 0.08
    mean_patience_s: float = 45.0
    mean_think_s: float = 20.0


def default_hotspots(market: Market) -> list[Hotspot]:
    """Hotspots placed relative to the market box, so any configured market gets them."""
    frame = Frame(market.bbox)
    w, h = frame.width_m, frame.height_m
    return [
        Hotspot(
            "downtown", frame.to_xy(market.center.lat, market.center.lon), 0.06 * min(w, h), 0.45
        ),
        Hotspot("airport", (0.88 * w, 0.10 * h), 0.04 * min(w, h), 0.20),
        Hotspot("stadium", (0.79 * w, 0.67 * h), 0.025 * min(w, h), 0.15),
    ]


class DemandModel:
    """Draws trips: pickup and dropoff each from the hotspot mixture, at least MIN_TRIP_M apart."""

    def __init__(
        self,
        market: Market,
        hotspots: list[Hotspot] | None = None,
        habits: RiderHabits = RiderHabits(),
    ) -> None:
        self.frame = Frame(market.bbox)
        self.hotspots = hotspots if hotspots is not None else default_hotspots(market)
        self.habits = habits
        self.background_weight = max(0.0, 1.0 - sum(s.weight for s in self.hotspots))

    def next_trip(self, rng: random.Random) -> tuple[LatLon, LatLon]:
        pickup = self._draw(rng)
        dropoff = self._draw(rng)
        for _ in range(MAX_DRAWS):
            if math.dist(pickup, dropoff) >= MIN_TRIP_M:
                break
            dropoff = self._draw(rng)
        return self.frame.to_latlon(*pickup), self.frame.to_latlon(*dropoff)

    def wants_quote(self, rng: random.Random) -> bool:
        return rng.random() < self.habits.quote_probability

    def cancel_after_s(self, rng: random.Random) -> float | None:
        """None when this rider will wait it out; else seconds of patience before cancelling."""
        if rng.random() >= self.habits.cancel_probability:
            return None
        return rng.expovariate(1.0 / self.habits.mean_patience_s)

    def think_time_s(self, rng: random.Random) -> float:
        """Pause between one ride ending and the same rider requesting the next."""
        return rng.expovariate(1.0 / self.habits.mean_think_s)

    def _draw(self, rng: random.Random) -> XY:
        weights = [s.weight for s in self.hotspots] + [self.background_weight]
        choice = rng.choices(range(len(weights)), weights=weights)[0]
        if choice == len(self.hotspots):
            return self.frame.clamp(
                rng.uniform(0, self.frame.width_m), rng.uniform(0, self.frame.height_m)
            )
        spot = self.hotspots[choice]
        for _ in range(MAX_DRAWS):
            x, y = rng.gauss(spot.center[0], spot.sigma_m), rng.gauss(spot.center[1], spot.sigma_m)
            if 0 < x < self.frame.width_m and 0 < y < self.frame.height_m:
                return self.frame.clamp(x, y)
        return self.frame.clamp(*spot.center)
