"""Batch mode's decision, pure: given the rides waiting now, the drivers free now and the pickup
ETA of each pair, which driver gets which ride so the total pickup time is least.

Greedy (one ride at a time, nearest driver) can hand a ride the only driver another ride could
use; the minimum-cost assignment over the batch cannot. The solver is SciPy's
`linear_sum_assignment` (a Hungarian-type method), not a hand-written one. Pairs that are not
candidates (out of the ride's search, or the driver declined it) cost FORBIDDEN, and a pair the
solver only took to fill the matrix is dropped; its ride waits for the next batch."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

# Far above any real ETA (seconds), finite so the solver always has a complete assignment to
# return: with inf it raises "cost matrix is infeasible" as soon as one ride has no candidate.
FORBIDDEN = 1e9

TravelTime = Callable[[float, float, float, float], float]


@dataclass(frozen=True, slots=True)
class Pair:
    ride_id: str
    driver_id: str
    pickup_eta_s: float


def assign_min_total_eta(
    ride_ids: Sequence[str], driver_ids: Sequence[str], eta_s: NDArray[np.float64]
) -> list[Pair]:
    """The assignment of rides (rows) to drivers (columns) with the least total pickup ETA.
    Each ride gets at most one driver and each driver at most one ride; entries >= FORBIDDEN
    are never assigned. Ties break on the order given, so the result is deterministic."""
    if eta_s.shape != (len(ride_ids), len(driver_ids)):
        raise ValueError(f"eta matrix {eta_s.shape} is not rides × drivers")
    if not ride_ids or not driver_ids:
        return []
    rows, cols = linear_sum_assignment(eta_s)
    return [
        Pair(ride_ids[r], driver_ids[c], float(eta_s[r, c]))
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
        if eta_s[r, c] < FORBIDDEN
    ]


@dataclass(frozen=True, slots=True)
class Spot:
    """Where a ride's pickup or a free driver is."""

    id: str
    lat: float
    lon: float


def eta_matrix(
    pickups: Sequence[Spot],
    drivers: Sequence[Spot],
    candidates: Mapping[str, Collection[str]],
    travel_time_s: TravelTime,
) -> NDArray[np.float64]:
    """Pickup ETA of every (ride, driver) pair that is a candidate for the ride
    (`candidates[ride_id]`: the drivers its search found, its decliners left out); FORBIDDEN
    elsewhere. The same travel-time function greedy ranks with, so the two modes compare."""
    matrix = np.full((len(pickups), len(drivers)), FORBIDDEN, dtype=np.float64)
    column = {d.id: j for j, d in enumerate(drivers)}
    for i, ride in enumerate(pickups):
        for driver_id in candidates.get(ride.id, ()):
            j = column.get(driver_id)
            if j is not None:
                d = drivers[j]
                matrix[i, j] = travel_time_s(d.lat, d.lon, ride.lat, ride.lon)
    return matrix
