"""Travel time from per-cell speeds — shared by matching (rank candidates), ingest (quotes)
and eta (announced ETAs), so every service estimates a trip the same way.

Straight-line distance × a detour factor, at the harmonic mean of the speeds of the H3 cells
the line crosses (harmonic, because time adds up per distance, not speed per cell)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis

from ridepulse.geo import cells_along, haversine_m
from ridepulse.pause import sleep_or_stop

DEFAULT_SPEED_MPS = 8.0  # ~29 km/h: urban average when a cell has no observations yet
DETOUR_FACTOR = 1.3  # road / great-circle distance in gridded cities (1.4–1.5 around water, hills)
MIN_SPEED_MPS = 0.5  # a cell measured slower than walking pace is treated as walking pace
REFRESH_INTERVAL_S = 5.0
# Redis measures GEOSEARCH distances on a sphere 0.03% larger than H3's and stores positions to
# about a metre: a reach 1% wider never leaves out a driver travel_time_s would rank faster.
REACH_SLACK = 1.01


def travel_time_s(
    from_lat: float,
    from_lon: float,
    to_lat: float,
    to_lon: float,
    speed_of_cell: Callable[[str], float],
    resolution: int = 8,
) -> float:
    straight_m = haversine_m(from_lat, from_lon, to_lat, to_lon)
    if straight_m == 0.0:
        return 0.0
    cells = cells_along((from_lat, from_lon), (to_lat, to_lon), resolution)
    return time_along_s(straight_m, cells, speed_of_cell)


def time_along_s(
    straight_m: float, cells: list[str], speed_of_cell: Callable[[str], float]
) -> float:
    """travel_time_s of a line `straight_m` long through `cells` (its cells_along), for a caller
    that already walked the line to learn which speeds to read."""
    speeds = [_usable(speed_of_cell(c)) for c in cells] or [DEFAULT_SPEED_MPS]
    harmonic = len(speeds) / sum(1.0 / s for s in speeds)
    return straight_m * DETOUR_FACTOR / harmonic


def _usable(speed_mps: float) -> float:
    """A cell's speed as travel time can use it: at least walking pace, and the default where
    the speeds hash holds no number (inf made every ETA through the cell a ZeroDivisionError)."""
    if not math.isfinite(speed_mps):
        return DEFAULT_SPEED_MPS
    return max(MIN_SPEED_MPS, speed_mps)


def fastest_mps(speeds: Iterable[float]) -> float:
    """The fastest travel_time_s can go over cells with these speeds (a cell without one goes at
    the default): no trip's harmonic mean is faster than its fastest cell."""
    return max([DEFAULT_SPEED_MPS, *(_usable(s) for s in speeds)])


def reach_m(eta_s: float, fastest_speed_mps: float) -> float:
    """The farthest (straight line) a driver can be and still arrive within `eta_s`:
    travel_time_s covers the line × DETOUR_FACTOR, at no more than `fastest_speed_mps`."""
    return eta_s * fastest_speed_mps / DETOUR_FACTOR * REACH_SLACK


class CellSpeeds:
    """Per-cell speeds in memory and the travel times they give; pure, so the policies that
    rank by travel time are unit-tested with it."""

    def __init__(self, speeds: Mapping[str, float] | None = None, resolution: int = 8) -> None:
        self.resolution = resolution
        self.replace(speeds or {})

    def replace(self, speeds: Mapping[str, float]) -> None:
        self.speeds = dict(speeds)
        self.fastest_mps = fastest_mps(self.speeds.values())

    def speed_of(self, cell: str) -> float:
        return self.speeds.get(cell, DEFAULT_SPEED_MPS)

    def travel_time_s(
        self, from_lat: float, from_lon: float, to_lat: float, to_lon: float
    ) -> float:
        return travel_time_s(from_lat, from_lon, to_lat, to_lon, self.speed_of, self.resolution)


class SpeedCache(CellSpeeds):
    """eta's published speeds (a Redis hash), mirrored in memory and refreshed periodically,
    so ranking candidates costs no round trip per candidate."""

    def __init__(self, redis: aioredis.Redis, key: str, resolution: int) -> None:
        super().__init__({}, resolution)
        self.redis = redis
        self.key = key

    async def refresh(self) -> None:
        raw: Any = await self.redis.hgetall(self.key)
        self.replace({k.decode(): float(v) for k, v in raw.items()})

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(aioredis.ConnectionError, aioredis.TimeoutError):
                await self.refresh()
            await sleep_or_stop(stop, REFRESH_INTERVAL_S)
