"""Quotes, answered by ingest from the read models pricing and eta publish in Redis.

A quote is bound to its trip: it remembers the rider, the market (its key carries the market's
hash tag), the H3 cells (resolution QUOTE_CELL_RESOLUTION) of its pickup and dropoff, its fare
and its surge. The ride request honours it only for this rider, with a pickup and a dropoff
within one grid step of those cells (about 200-500 m at resolution 9), once: the ride request
script uses it up atomically (ridepulse/rides/request_ride.lua).

The pickup ETA is the one matching would offer now: the same search (free and fresh drivers,
ridepulse/pickups.py) and the same ranking by ETA over the same speeds, so the quote names the
wait of the driver dispatch would pick (None: no free driver within the widest radius, 10 km).

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
from ridepulse.pickups import SEARCH_RADII_M, NearbyDriver, nearby_available, rank_by_pickup_eta
from ridepulse.travel import DEFAULT_SPEED_MPS, DETOUR_FACTOR, time_along_s, travel_time_s

QUOTE_TTL_S = 120
QUOTE_CELL_RESOLUTION = 9  # H3 cells of ~0.1 km²: a quote fits its own street corner
QUOTE_CELL_TOLERANCE = 1  # grid steps: GPS drift between quote and request crosses a border
MAX_QUOTE_ID = 64


async def _speeds(deps: Deps, market_id: str, cells: list[str]) -> dict[str, float]:
    if not cells:
        return {}
    values: Any = await deps.redis.hmget(deps.keys(market_id).speeds, cells)
    return {c: float(v) for c, v in zip(cells, values, strict=True) if v is not None}


async def _free_drivers(
    deps: Deps, market_id: str, pickup: tuple[float, float]
) -> list[NearbyDriver]:
    """The drivers the offer would choose from: matching's search (free, fresh, nearest first),
    once, at its widest radius (ridepulse/pickups.py says why that finds the offer's driver)."""
    return await nearby_available(
        deps.redis,
        deps.keys(market_id),
        *pickup,
        radius_m=SEARCH_RADII_M[-1],
        fresh_within_ms=int(deps.settings.driver_stale_s * 1000),
    )


async def pickup_surge(deps: Deps, market_id: str, pickup: tuple[float, float]) -> float | None:
    """The multiplier pricing last published for the pickup's cell; None where it is calm."""
    cell = cell_of(pickup[0], pickup[1], deps.settings.h3_resolution)
    raw: Any = await deps.redis.hget(deps.keys(market_id).surge, cell)
    return float(raw) if raw else None


async def make_quote(
    deps: Deps, rider_id: str, pickup: tuple[float, float], dropoff: tuple[float, float]
) -> Quote:
    market = deps.markets.locate(*pickup)
    res = deps.settings.h3_resolution
    trip_cells = cells_along(pickup, dropoff, res)
    drivers = await _free_drivers(deps, market.id, pickup)
    paths = {(d.lat, d.lon): cells_along((d.lat, d.lon), pickup, res) for d in drivers}
    pickup_cells = {c for cells in paths.values() for c in cells}
    speeds = await _speeds(deps, market.id, sorted(set(trip_cells) | pickup_cells))
    speed_of = lambda cell: speeds.get(cell, DEFAULT_SPEED_MPS)  # noqa: E731
    trip_s = travel_time_s(pickup[0], pickup[1], dropoff[0], dropoff[1], speed_of, res)

    def eta_s(lat: float, lon: float, to_lat: float, to_lon: float) -> float:
        """travel_time_s, over the cells walked above to read their speeds"""
        straight_m = haversine_m(lat, lon, to_lat, to_lon)
        return time_along_s(straight_m, paths[lat, lon], speed_of) if straight_m else 0.0

    fastest = rank_by_pickup_eta(drivers, pickup, eta_s)[:1]
    pickup_s = fastest[0].pickup_eta_s if fastest else None
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
