"""Thousands of virtual drivers in flat lists, for the batched-telemetry FleetUser.

A gateway that forwards a whole fleet's pings must be cheap per ping, so this keeps one list per
attribute and moves each vehicle along the grid axes (east-west, then north-south) between corners,
instead of building a polyline per vehicle. The pings feed load and ETA learning; these vehicles
never take rides.
"""

from __future__ import annotations

import math
import random

from loadtests.behaviours.driving import GPS_SIGMA_M, ROAM_RADIUS_M
from loadtests.behaviours.speeds import street_speed_mps
from loadtests.behaviours.streets import StreetGrid

WirePing = dict[str, float | int | str]


class Fleet:
    """`size` vehicles with ids `<prefix>-<n>`, each heading to a random nearby corner."""

    def __init__(
        self,
        grid: StreetGrid,
        rng: random.Random,
        size: int,
        id_prefix: str,
        *,
        start_hour: float = 8.0,
    ) -> None:
        if size < 1:
            raise ValueError(f"fleet size must be at least 1, got {size}")
        self.grid, self.rng, self.start_hour = grid, rng, start_hour
        width = len(str(size - 1))
        self.driver_ids = [f"{id_prefix}-{n:0{width}d}" for n in range(size)]
        starts = [grid.random_intersection(rng) for _ in range(size)]
        self.xs = [p[0] for p in starts]
        self.ys = [p[1] for p in starts]
        goals = [grid.random_intersection(rng, near=p, radius_m=ROAM_RADIUS_M) for p in starts]
        self.goal_xs = [g[0] for g in goals]
        self.goal_ys = [g[1] for g in goals]
        self.temperament = [rng.uniform(0.85, 1.15) for _ in range(size)]
        self.headings = [0.0] * size
        self.sim_elapsed_s = 0.0

    def __len__(self) -> int:
        return len(self.driver_ids)

    @property
    def hour(self) -> float:
        return (self.start_hour + self.sim_elapsed_s / 3600.0) % 24.0

    def step(self, dt_s: float, now_ms: int) -> list[WirePing]:
        """Move every vehicle `dt_s` simulated seconds; one wire-ready ping per vehicle."""
        self.sim_elapsed_s += dt_s
        hour, grid, rng, frame = self.hour, self.grid, self.rng, self.grid.frame
        pings: list[WirePing] = []
        for k, driver_id in enumerate(self.driver_ids):
            x, y = self.xs[k], self.ys[k]
            speed = street_speed_mps(grid, (x, y), hour) * self.temperament[k]
            budget = speed * dt_s
            nx, ny = _advance(x, y, self.goal_xs[k], self.goal_ys[k], budget)
            if nx == self.goal_xs[k] and ny == self.goal_ys[k]:
                gx, gy = grid.random_intersection(rng, near=(nx, ny), radius_m=ROAM_RADIUS_M)
                self.goal_xs[k], self.goal_ys[k] = gx, gy
            travelled = abs(nx - x) + abs(ny - y)
            if travelled > 0.5:
                self.headings[k] = math.degrees(math.atan2(nx - x, ny - y)) % 360.0
            self.xs[k], self.ys[k] = nx, ny
            px, py = frame.clamp(nx + rng.gauss(0, GPS_SIGMA_M), ny + rng.gauss(0, GPS_SIGMA_M))
            where = frame.to_latlon(px, py)
            pings.append(
                {
                    "driver_id": driver_id,
                    "lat": round(where.lat, 6),
                    "lon": round(where.lon, 6),
                    "ts": now_ms,
                    "speed_mps": round(travelled / dt_s if dt_s > 0 else 0.0, 2),
                    "heading": round(self.headings[k], 1),
                }
            )
        return pings


def _advance(x: float, y: float, gx: float, gy: float, budget_m: float) -> tuple[float, float]:
    """Spend `budget_m` moving east-west to gx, then north-south to gy (grid driving)."""
    dx = gx - x
    step = min(abs(dx), budget_m)
    x += math.copysign(step, dx) if dx else 0.0
    budget_m -= step
    dy = gy - y
    step = min(abs(dy), budget_m)
    y += math.copysign(step, dy) if dy else 0.0
    return (gx if abs(gx - x) < 1e-9 else x), (gy if abs(gy - y) < 1e-9 else y)


def batches(pings: list[WirePing], batch_size: int) -> list[list[WirePing]]:
    """Split pings into request bodies of at most `batch_size` (the API caps a batch)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    return [pings[i : i + batch_size] for i in range(0, len(pings), batch_size)]
