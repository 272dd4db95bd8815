"""How fast traffic moves where and when: the truth the ETA service is meant to learn.

Speeds depend on the road (arterial or side street), the area (a slow downtown core, faster
outskirts) and the simulated hour (rush hours crawl, nights fly), so per-cell learning has real
structure to find rather than one flat number.
"""

from __future__ import annotations

import math

from loadtests.behaviours.streets import XY, StreetGrid

ARTERIAL_SPEED_MPS = 13.5  # ~49 km/h, a typical urban arterial free-flow speed
STREET_SPEED_MPS = 8.5  # ~31 km/h on side streets with stop signs
DOWNTOWN_FACTOR = 0.55
OUTSKIRTS_FACTOR = 1.25
MIN_SPEED_MPS = 1.5
MAX_SPEED_MPS = 25.0


def time_of_day_factor(hour: float) -> float:
    """Congestion by simulated hour: rush hours ×0.65, night ×1.25, otherwise free flow."""
    h = hour % 24.0
    if 7.0 <= h < 9.5 or 16.5 <= h < 19.0:
        return 0.65
    if h >= 22.0 or h < 5.0:
        return 1.25
    return 1.0


def core_radius_m(grid: StreetGrid) -> float:
    """The slow downtown core's radius: 12 % of the market's smaller side."""
    return 0.12 * min(grid.frame.width_m, grid.frame.height_m)


def area_factor(grid: StreetGrid, p: XY) -> float:
    """Downtown is the inner 12 % of the market's smaller side around its centre; outskirts are
    beyond 40 %."""
    side = min(grid.frame.width_m, grid.frame.height_m)
    d = math.dist(p, grid.center)
    if d < core_radius_m(grid):
        return DOWNTOWN_FACTOR
    if d > 0.40 * side:
        return OUTSKIRTS_FACTOR
    return 1.0


def street_speed_mps(grid: StreetGrid, p: XY, hour: float) -> float:
    """Typical speed of traffic at p at this hour, before a driver's own temperament."""
    base = ARTERIAL_SPEED_MPS if grid.is_arterial(p) else STREET_SPEED_MPS
    speed = base * area_factor(grid, p) * time_of_day_factor(hour)
    return min(max(speed, MIN_SPEED_MPS), MAX_SPEED_MPS)
