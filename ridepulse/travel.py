"""Travel time from per-cell speeds — shared by matching (rank candidates), ingest (quotes)
and eta (announced ETAs), so every service estimates a trip the same way.

Straight-line distance × a detour factor, at the harmonic mean of the speeds of the H3 cells
the line crosses (harmonic, because time adds up per distance, not speed per cell)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from ridepulse.geo import cells_along, haversine_m
from ridepulse.pause import sleep_or_stop

DEFAULT_SPEED_MPS = 8.0  # ~29 km/h: urban average when a cell has no observations yet
DETOUR_FACTOR = 1.3  # road / great-circle distance in gridded cities (1.4–1.5 around water, hills)
MIN_SPEED_MPS = 0.5  # a cell measured slower than walking pace is treated as walking pace
REFRESH_INTERVAL_S = 5.0


def travel_time_s(
    from_lat: float,
    from_lon: float,
    to_lat: float,
    to_lon: float,
    speed_of_cell: Callable[[str], float],
    resolution: int = 8,
) -> float:
    distance_m = haversine_m(from_lat, from_lon, to_lat, to_lon) * DETOUR_FACTOR
    if distance_m == 0.0:
        return 0.0
    cells = cells_along((from_lat, from_lon), (to_lat, to_lon), resolution)
    speeds = [_usable(speed_of_cell(c)) for c in cells] or [DEFAULT_SPEED_MPS]
    harmonic = len(speeds) / sum(1.0 / s for s in speeds)
    return distance_m / harmonic


def _usable(speed_mps: float) -> float:
    """A cell's speed as travel time can use it: at least walking pace, and the default where
    the speeds hash holds no number (inf made every ETA through the cell a ZeroDivisionError)."""
    if not math.isfinite(speed_mps):
        return DEFAULT_SPEED_MPS
    return max(MIN_SPEED_MPS, speed_mps)


class SpeedCache:
    """eta's published speeds (a Redis hash), mirrored in memory and refreshed periodically,
    so ranking candidates costs no round trip per candidate."""

    def __init__(self, redis: aioredis.Redis, key: str, resolution: int) -> None:
        self.redis = redis
        self.key = key
        self.resolution = resolution
        self.speeds: dict[str, float] = {}

    def speed_of(self, cell: str) -> float:
        return self.speeds.get(cell, DEFAULT_SPEED_MPS)

    def travel_time_s(
        self, from_lat: float, from_lon: float, to_lat: float, to_lon: float
    ) -> float:
        return travel_time_s(from_lat, from_lon, to_lat, to_lon, self.speed_of, self.resolution)

    async def refresh(self) -> None:
        raw: Any = await self.redis.hgetall(self.key)
        self.speeds = {k.decode(): float(v) for k, v in raw.items()}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(aioredis.ConnectionError, aioredis.TimeoutError):
                await self.refresh()
            await sleep_or_stop(stop, REFRESH_INTERVAL_S)
