"""The offer policy of one try to match a ride, as pure state: search nearest first, widen the
radius when nobody is free, and when the best found could still be beaten from farther out,
search once more out to where nobody could (`reach_m`) before ranking; try the best few
candidates of each search, search again after a lost race, and give up past the attempt budget
(the sweeper tries the ride again later).

The search itself is ridepulse/pickup_search.py's PickupSearch, which the quote runs too. The
handler (matching/handlers.py try_offer) does the I/O the plan asks for; every decision is
here or there, so the policy is unit-tested without Redis (tests/unit/test_offer_planner.py)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from matching.candidates import MAX_OFFER_ATTEMPTS, OFFER_ATTEMPTS_PER_PASS
from ridepulse.pickup_search import PickupSearch, TravelModel
from ridepulse.pickups import SEARCH_RADII_M, Candidate, NearbyDriver


@dataclass
class OfferPlan:
    """Where one try stands: the search (ridepulse/pickup_search.py, shared with the quote),
    the offers lost, the drivers to skip."""

    pickup: tuple[float, float]
    declined: frozenset[str] = frozenset()
    radii_m: Sequence[float] = SEARCH_RADII_M
    max_attempts: int = MAX_OFFER_ATTEMPTS
    per_pass: int = OFFER_ATTEMPTS_PER_PASS
    attempts: int = 0
    taken: set[str] = field(default_factory=set)  # candidates another ride's offer got first
    search: PickupSearch = field(init=False)

    def __post_init__(self) -> None:
        self.search = PickupSearch(self.pickup, self.radii_m)

    @classmethod
    def of(cls, pickup: tuple[float, float], declined: Collection[str]) -> OfferPlan:
        return cls(pickup, frozenset(declined))

    @property
    def excluded(self) -> list[str]:
        """Drivers no search should return: those who declined this ride, and the taken."""
        return [*self.declined, *self.taken]

    def next_radius_m(self) -> float | None:
        """The radius to search next, or None: give up (budget spent or every radius empty)."""
        if self.attempts >= self.max_attempts:
            return None
        return self.search.next_radius_m()

    def candidates(self, nearby: Sequence[NearbyDriver], speeds: TravelModel) -> list[Candidate]:
        """From one search at `next_radius_m()`: the candidates to offer the ride to, in order
        (fastest to the pickup first, within the budget left); none means search again at
        `next_radius_m()` (wider: nobody was free, or a faster driver may be farther out)."""
        skip = self.declined | self.taken
        ranked = self.search.ranked([d for d in nearby if d.driver_id not in skip], speeds)
        return ranked[: min(self.per_pass, self.max_attempts - self.attempts)]

    def lost(self, driver_id: str) -> None:
        """Another ride's offer got this candidate first: count the attempt, skip the driver.
        Rides offered at once near one pickup see the same nearest drivers, so the next search
        at the same radius finds the ones still free rather than leaving the ride to the sweeper."""
        self.attempts += 1
        self.taken.add(driver_id)
