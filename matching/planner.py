"""The offer policy of one try to match a ride, as pure state: search nearest first, widen the
radius when nobody is free, and when the best found could still be beaten from farther out,
search once more out to where nobody could (`reach_m`) before ranking; try the best few
candidates of each search, search again after a lost race, and give up past the attempt budget
(the sweeper tries the ride again later).

The handler (matching/handlers.py try_offer) does the I/O the plan asks for; every decision is
here, so the policy is unit-tested without Redis (tests/unit/test_offer_planner.py)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from matching.candidates import MAX_OFFER_ATTEMPTS, OFFER_ATTEMPTS_PER_PASS
from ridepulse.pickups import SEARCH_RADII_M, Candidate, NearbyDriver, rank_by_pickup_eta
from ridepulse.travel import reach_m


class TravelModel(Protocol):
    """What ranking needs of the speeds (ridepulse.travel.SpeedCache): a travel time, and the
    fastest it can go, which bounds how far out a faster driver could be."""

    @property
    def fastest_mps(self) -> float: ...

    def travel_time_s(
        self, from_lat: float, from_lon: float, to_lat: float, to_lon: float
    ) -> float: ...


@dataclass
class OfferPlan:
    """Where one try stands: the radius searched, the offers lost, the drivers to skip."""

    pickup: tuple[float, float]
    declined: frozenset[str] = frozenset()
    radii_m: Sequence[float] = SEARCH_RADII_M
    max_attempts: int = MAX_OFFER_ATTEMPTS
    per_pass: int = OFFER_ATTEMPTS_PER_PASS
    radius_index: int = 0
    reach_m: float = 0.0  # searched out this far for a faster driver than the radius held
    settling: bool = False  # the coming search is that one: rank what it finds
    attempts: int = 0
    taken: set[str] = field(default_factory=set)  # candidates another ride's offer got first

    @classmethod
    def of(cls, pickup: tuple[float, float], declined: Collection[str]) -> OfferPlan:
        return cls(pickup, frozenset(declined))

    @property
    def excluded(self) -> list[str]:
        """Drivers no search should return: those who declined this ride, and the taken."""
        return [*self.declined, *self.taken]

    def next_radius_m(self) -> float | None:
        """The radius to search next, or None: give up (budget spent or every radius empty)."""
        if self.attempts >= self.max_attempts or self.radius_index >= len(self.radii_m):
            return None
        return max(self.radii_m[self.radius_index], self.reach_m)

    def candidates(self, nearby: Sequence[NearbyDriver], speeds: TravelModel) -> list[Candidate]:
        """From one search at `next_radius_m()`: the candidates to offer the ride to, in order
        (fastest to the pickup first, within the budget left); none means search again at
        `next_radius_m()` (wider: nobody was free, or a faster driver may be farther out)."""
        searched_m = max(self.radii_m[self.radius_index], self.reach_m)
        skip = self.declined | self.taken
        free = [d for d in nearby if d.driver_id not in skip]
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
        return ranked[: min(self.per_pass, self.max_attempts - self.attempts)]

    def lost(self, driver_id: str) -> None:
        """Another ride's offer got this candidate first: count the attempt, skip the driver.
        Rides offered at once near one pickup see the same nearest drivers, so the next search
        at the same radius finds the ones still free rather than leaving the ride to the sweeper."""
        self.attempts += 1
        self.taken.add(driver_id)
