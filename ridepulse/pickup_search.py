"""The search for the driver fastest to a pickup, as pure state, shared by matching's offer plan
(matching/planner.py) and ingest's quote (ingest/quotes.py) so the two cannot drift: search
nearest first, widen the radius while nobody is free, and when the best found could still be
beaten from farther out, search once more out to where nobody could (`reach_m`), then rank.

The caller does the searches (ridepulse/pickups.py nearby_available at `next_radius_m()`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ridepulse.pickups import SEARCH_RADII_M, Candidate, NearbyDriver, rank_by_pickup_eta
from ridepulse.travel import reach_m


class TravelModel(Protocol):
    """What ranking needs of the speeds (ridepulse.travel.CellSpeeds): a travel time, and an
    upper bound on any speed it uses, which bounds how far out a faster driver could be."""

    @property
    def fastest_mps(self) -> float: ...

    def travel_time_s(
        self, from_lat: float, from_lon: float, to_lat: float, to_lon: float
    ) -> float: ...


@dataclass
class PickupSearch:
    """Where the search stands: the radius searched and how far out a faster driver could be."""

    pickup: tuple[float, float]
    radii_m: Sequence[float] = SEARCH_RADII_M
    radius_index: int = 0
    reach_m: float = 0.0  # searched out this far for a faster driver than the radius held
    settling: bool = False  # the coming search is that one: rank what it finds

    def next_radius_m(self) -> float | None:
        """The radius to search next, or None: every radius was empty."""
        if self.radius_index >= len(self.radii_m):
            return None
        return max(self.radii_m[self.radius_index], self.reach_m)

    def ranked(self, free: Sequence[NearbyDriver], speeds: TravelModel) -> list[Candidate]:
        """From one search at `next_radius_m()` (the drivers it may offer to): all of them,
        fastest to the pickup first, once no driver farther out could beat the first; none
        means search again at `next_radius_m()` (wider: nobody was free, or a faster driver
        may be farther out)."""
        searched_m = max(self.radii_m[self.radius_index], self.reach_m)
        if not free:
            self.radius_index = sum(1 for r in self.radii_m if r <= searched_m)
            self.settling = False
            return []
        ranked = rank_by_pickup_eta(free, self.pickup, speeds.travel_time_s)
        # A driver past `reach` cannot beat the best found, however fast the cells between
        reach = min(reach_m(ranked[0].pickup_eta_s, speeds.fastest_mps), self.radii_m[-1])
        if reach > searched_m and not self.settling:
            self.reach_m, self.settling = reach, True
            return []  # one more search, out to `reach`; it holds every driver found so far
        self.settling = False
        return ranked
