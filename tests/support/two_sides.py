"""A pickup with a slow side and a fast side (the hunt's t11_radius.py): driver A 1.40 km west
through cells learned at 4.5 m/s, driver B 1.60 km east along cells learned at 13.5 m/s. A is
inside the first search radius (1.5 km), B just past it, and B arrives about 45% sooner."""

from __future__ import annotations

import math

from ridepulse.geo import cell_of, cells_along, haversine_m
from ridepulse.pickups import NearbyDriver

PICKUP = (37.7990, -122.4450)  # north San Francisco
DROPOFF = (37.7882, -122.4450)
SLOW_MPS, FAST_MPS = 4.5, 13.5
EARTH_M = 6_371_008.8


def east_of(point: tuple[float, float], east_m: float) -> tuple[float, float]:
    lon = point[1] + math.degrees(east_m / (EARTH_M * math.cos(math.radians(point[0]))))
    return point[0], lon


SLOW_A = east_of(PICKUP, -1_400)
FAST_B = east_of(PICKUP, 1_600)


def learned_speeds(resolution: int = 8) -> dict[str, float]:
    """The cells between each driver and the pickup (not the pickup's own), at the speed of
    the driver's side."""
    pickup_cell = cell_of(*PICKUP, resolution)
    speeds = dict.fromkeys(cells_along(SLOW_A, PICKUP, resolution), SLOW_MPS)
    speeds |= dict.fromkeys(cells_along(FAST_B, PICKUP, resolution), FAST_MPS)
    speeds.pop(pickup_cell)
    return speeds


def nearby(driver_id: str, at: tuple[float, float]) -> NearbyDriver:
    return NearbyDriver(driver_id, at[0], at[1], haversine_m(*at, *PICKUP))
