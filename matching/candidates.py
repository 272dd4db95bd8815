"""Pure decisions of matching: the search radii and the ranking of candidates by pickup ETA."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from matching.geo_index import NearbyDriver

SEARCH_RADII_M = (1_500.0, 4_000.0, 10_000.0)  # expanding: near drivers first, then wider
OFFER_ATTEMPTS_PER_PASS = 5  # candidates tried from one search before searching again
# per ride and try, above matching_concurrency (32): a ride can lose one race to every ride
# offered at the same time; past it the sweeper retries the ride
MAX_OFFER_ATTEMPTS = 100


@dataclass(frozen=True, slots=True)
class Candidate:
    driver_id: str
    pickup_eta_s: float


def rank_by_pickup_eta(
    drivers: Sequence[NearbyDriver],
    pickup: tuple[float, float],
    eta_s: Callable[[float, float, float, float], float],
) -> list[Candidate]:
    """Nearest by time, not by distance: a driver on a fast arterial can beat a closer one."""
    ranked = [Candidate(d.driver_id, eta_s(d.lat, d.lon, pickup[0], pickup[1])) for d in drivers]
    ranked.sort(key=lambda c: (c.pickup_eta_s, c.driver_id))
    return ranked
