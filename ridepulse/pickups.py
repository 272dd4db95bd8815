"""Who is fastest to a pickup: the search for free drivers around it (nearby_available.lua) and
their ranking by pickup ETA, shared by matching (which offers the ride to the first) and ingest
(whose quote promises the first's ETA), so a quote's pickup ETA is the offer's.

Both run the same searches (ridepulse/pickup_search.py: the radii below, nearest first, then
one search out to where a faster driver could be, `reach_m`) and rank by the same ETA."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from ridepulse.keys import MarketKeys

SEARCH_RADII_M = (1_500.0, 4_000.0, 10_000.0)  # expanding: near drivers first, then wider
NEARBY_LIMIT = 30  # drivers one search returns, nearest first


@dataclass(frozen=True, slots=True)
class NearbyDriver:
    driver_id: str
    lat: float
    lon: float
    distance_m: float


@dataclass(frozen=True, slots=True)
class Candidate:
    driver_id: str
    pickup_eta_s: float


@cache
def _source() -> str:
    return resources.files("ridepulse").joinpath("nearby_available.lua").read_text()


async def nearby_available(
    redis: aioredis.Redis,
    keys: MarketKeys,
    lat: float,
    lon: float,
    *,
    radius_m: float,
    fresh_within_ms: int,
    exclude: Sequence[str] = (),
    limit: int = NEARBY_LIMIT,
) -> list[NearbyDriver]:
    """Up to `limit` drivers within `radius_m`, nearest first, not in `exclude`, available and
    whose last ping reached the server within `fresh_within_ms` (server clock at both ends)."""
    script = redis.register_script(_source())
    flat: Any = await script(
        keys=[keys.drivers_geo, keys.driver_statuses, keys.drivers_seen],
        args=[lon, lat, radius_m, limit, fresh_within_ms, *exclude],
    )
    return [
        NearbyDriver(driver_id.decode(), float(lat_), float(lon_), float(dist))
        for driver_id, dist, lon_, lat_ in zip(*[iter(flat)] * 4, strict=True)
    ]


def rank_by_pickup_eta(
    drivers: Sequence[NearbyDriver],
    pickup: tuple[float, float],
    eta_s: Callable[[float, float, float, float], float],
) -> list[Candidate]:
    """Nearest by time, not by distance: a driver on a fast arterial can beat a closer one."""
    ranked = [Candidate(d.driver_id, eta_s(d.lat, d.lon, pickup[0], pickup[1])) for d in drivers]
    ranked.sort(key=lambda c: (c.pickup_eta_s, c.driver_id))
    return ranked
