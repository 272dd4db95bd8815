"""Quotes, answered by ingest from the read models pricing and eta publish in Redis.

A quote is bound to its trip: it remembers the rider, the market (its key carries the market's
hash tag), the H3 cells (resolution QUOTE_CELL_RESOLUTION) of its pickup and dropoff, its fare
and its surge. The ride request honours it only for this rider, with a pickup and a dropoff
within one grid step of those cells (about 200-500 m at resolution 9), once: the ride request
script uses it up atomically (ridepulse/rides/request_ride.lua).

The pickup ETA is the one matching would offer now: the same searches (free and fresh drivers,
ridepulse/pickups.py, at the radii of ridepulse/pickup_search.py: nearest first, widening, then
out to where a faster driver could be) and the same ranking by ETA over the same speeds, so the
quote names the wait of the driver dispatch would pick (None: no free driver within the widest
radius, 10 km). A driver a few hundred metres away costs one small search, not one of 10 km.

Why not a synchronous call to pricing: a quote then needs no extra hop, and works (with the
last published surge and speeds) while pricing or eta restart; the fare function is shared
code in ridepulse.fares, so both sides compute fares the same way."""

from __future__ import annotations

from typing import Any

from ingest.deps import Deps
from ridepulse.contracts.envelope import new_event_id, now_ms
from ridepulse.errors import InvalidInput
from ridepulse.fares import Quote
from ridepulse.geo import cell_of, cells_along, haversine_m, neighbours
from ridepulse.pickup_search import PickupSearch
from ridepulse.pickups import Candidate, nearby_available
from ridepulse.travel import DETOUR_FACTOR, CellSpeeds, fastest_mps, time_along_s

QUOTE_TTL_S = 120
QUOTE_CELL_RESOLUTION = 9  # H3 cells of ~0.1 km²: a quote fits its own street corner
QUOTE_CELL_TOLERANCE = 1  # grid steps: GPS drift between quote and request crosses a border
MAX_QUOTE_ID = 64


class QuoteSpeeds(CellSpeeds):
    """The speeds a quote reads from eta's hash: only those of the cells its lines cross, and
    as the bound on any speed (how far out a faster driver could be) the fastest in the market,
    the bound matching's SpeedCache uses."""

    def __init__(self, deps: Deps, market_id: str) -> None:
        super().__init__({}, deps.settings.h3_resolution)
        self.redis = deps.redis
        self.key = deps.keys(market_id).speeds
        self.known: set[str] = set()
        self.bounded = False
        self.paths: dict[tuple[float, float, float, float], list[str]] = {}

    async def read(self, lines: list[tuple[tuple[float, float], tuple[float, float]]]) -> None:
        """Read the speeds of the cells these lines cross (and the bound, once): one trip."""
        cells: set[str] = set()
        for a, b in lines:
            if (*a, *b) not in self.paths:
                self.paths[*a, *b] = cells_along(a, b, self.resolution)
            path = self.paths[*a, *b]
            cells.update(c for c in path if c not in self.known)
        if not cells and self.bounded:
            return
        pipe = self.redis.pipeline(transaction=False)  # one slot; no MULTI (cluster pipelines)
        wanted = sorted(cells)
        if wanted:
            pipe.hmget(self.key, wanted)
        if not self.bounded:
            pipe.hvals(self.key)
        replies: list[Any] = await pipe.execute()
        if wanted:
            self.speeds.update(
                {c: float(v) for c, v in zip(wanted, replies[0], strict=True) if v is not None}
            )
            self.known.update(wanted)
        if not self.bounded:
            self.fastest_mps = fastest_mps(float(v) for v in replies[-1])
            self.bounded = True

    def travel_time_s(
        self, from_lat: float, from_lon: float, to_lat: float, to_lon: float
    ) -> float:
        """travel_time_s, over the cells `read` walked (and read the speeds of)"""
        straight_m = haversine_m(from_lat, from_lon, to_lat, to_lon)
        path = self.paths.get((from_lat, from_lon, to_lat, to_lon))
        if not straight_m or path is None:
            return super().travel_time_s(from_lat, from_lon, to_lat, to_lon)
        return time_along_s(straight_m, path, self.speed_of)


async def fastest_driver(
    deps: Deps, market_id: str, pickup: tuple[float, float], speeds: QuoteSpeeds
) -> Candidate | None:
    """The driver an offer would go to now: matching's search (ridepulse/pickup_search.py, the
    same radii, then out to where a faster driver could be) and its ranking; None: nobody free
    within the widest radius."""
    search = PickupSearch(pickup)
    while (radius_m := search.next_radius_m()) is not None:
        drivers = await nearby_available(
            deps.redis,
            deps.keys(market_id),
            *pickup,
            radius_m=radius_m,
            fresh_within_ms=int(deps.settings.driver_stale_s * 1000),
        )
        if drivers:
            await speeds.read([((d.lat, d.lon), pickup) for d in drivers])
        if ranked := search.ranked(drivers, speeds):
            return ranked[0]
    return None


async def pickup_surge(deps: Deps, market_id: str, pickup: tuple[float, float]) -> float | None:
    """The multiplier pricing last published for the pickup's cell; None where it is calm."""
    cell = cell_of(pickup[0], pickup[1], deps.settings.h3_resolution)
    raw: Any = await deps.redis.hget(deps.keys(market_id).surge, cell)
    return float(raw) if raw else None


async def make_quote(
    deps: Deps, rider_id: str, pickup: tuple[float, float], dropoff: tuple[float, float]
) -> Quote:
    market = deps.markets.locate(*pickup)
    speeds = QuoteSpeeds(deps, market.id)
    await speeds.read([(pickup, dropoff)])
    trip_s = speeds.travel_time_s(*pickup, *dropoff)
    fastest = await fastest_driver(deps, market.id, pickup, speeds)
    pickup_s = fastest.pickup_eta_s if fastest else None
    surge = await pickup_surge(deps, market.id, pickup) or 1.0
    distance_m = haversine_m(*pickup, *dropoff)
    quote = Quote(
        quote_id=f"q-{new_event_id()}",
        fare=market.fares.fare(distance_m * DETOUR_FACTOR, trip_s, surge),
        surge=surge,
        pickup_eta_s=None if pickup_s is None else round(pickup_s, 1),
        trip_eta_s=round(trip_s, 1),
        distance_m=round(distance_m * DETOUR_FACTOR, 1),
        expires_at=now_ms() + QUOTE_TTL_S * 1000,
    )
    record: dict[Any, Any] = {
        **quote.to_dict(),
        "rider_id": rider_id,
        "pickup_cell": cell_of(*pickup, QUOTE_CELL_RESOLUTION),
        "dropoff_cell": cell_of(*dropoff, QUOTE_CELL_RESOLUTION),
    }
    key = deps.keys(market.id).quote(quote.quote_id)
    pipe = deps.redis.pipeline(transaction=False)  # one slot; no MULTI (cluster pipelines)
    pipe.hset(key, mapping=record)
    pipe.expire(key, QUOTE_TTL_S)
    await pipe.execute()
    return quote


def checked_quote_id(quote_id: Any) -> str | None:
    """The body's quote_id, shape-checked only: the ride request script judges the quote."""
    if quote_id is None:
        return None
    if not isinstance(quote_id, str) or not 0 < len(quote_id) <= MAX_QUOTE_ID:
        raise InvalidInput(
            f"quote_id must be a string of 1-{MAX_QUOTE_ID} characters", field="quote_id"
        )
    return quote_id


def trip_cells(lat: float, lon: float) -> list[str]:
    """The cells a quote's pickup (or dropoff) cell may be in to match this point."""
    return sorted(neighbours(cell_of(lat, lon, QUOTE_CELL_RESOLUTION), QUOTE_CELL_TOLERANCE))
