"""Matching's offer policy without Redis: who is tried, when the radius widens, when a try
gives up (matching/planner.py)."""

from __future__ import annotations

from matching.candidates import MAX_OFFER_ATTEMPTS, OFFER_ATTEMPTS_PER_PASS, SEARCH_RADII_M
from matching.geo_index import NearbyDriver
from matching.planner import OfferPlan

PICKUP = (37.7793, -122.4193)


def straight_line_s(lat: float, lon: float, to_lat: float, to_lon: float) -> float:
    """A stand-in travel time: degrees apart, so nearer is faster."""
    return abs(lat - to_lat) + abs(lon - to_lon)


def driver(driver_id: str, north_m: float) -> NearbyDriver:
    return NearbyDriver(driver_id, PICKUP[0] + north_m / 111_000, PICKUP[1], north_m)


def ids(plan: OfferPlan, nearby: list[NearbyDriver]) -> list[str]:
    return [c.driver_id for c in plan.candidates(nearby, straight_line_s)]


def test_a_try_starts_with_the_nearest_radius() -> None:
    assert OfferPlan.of(PICKUP, ()).next_radius_m() == SEARCH_RADII_M[0]


def test_candidates_come_fastest_first_and_at_most_a_pass_at_a_time() -> None:
    nearby = [driver(f"d{i}", 100.0 * (10 - i)) for i in range(10)]
    assert ids(OfferPlan.of(PICKUP, ()), nearby) == ["d9", "d8", "d7", "d6", "d5"]
    assert OFFER_ATTEMPTS_PER_PASS == 5


def test_ties_in_pickup_time_are_broken_by_driver_id() -> None:
    assert ids(OfferPlan.of(PICKUP, ()), [driver("b", 200), driver("a", 200)]) == ["a", "b"]


def test_drivers_who_declined_the_ride_are_never_offered_it_again() -> None:
    plan = OfferPlan.of(PICKUP, ["d1"])
    assert ids(plan, [driver("d1", 50), driver("d2", 400)]) == ["d2"]
    assert "d1" in plan.excluded


def test_nobody_free_widens_the_radius_until_every_radius_is_searched() -> None:
    plan = OfferPlan.of(PICKUP, ())
    seen = []
    while (radius := plan.next_radius_m()) is not None:
        seen.append(radius)
        assert ids(plan, []) == []
    assert seen == [1_500, 4_000, 10_000]  # docs/architecture.md: "1.5, 4, 10 km"


def test_a_lost_race_searches_the_same_radius_again_without_the_taken_driver() -> None:
    plan = OfferPlan.of(PICKUP, ())
    nearby = [driver("d1", 100), driver("d2", 300)]
    assert ids(plan, nearby)[0] == "d1"
    plan.lost("d1")
    assert plan.next_radius_m() == SEARCH_RADII_M[0]
    assert ids(plan, nearby) == ["d2"]
    assert plan.excluded == ["d1"]


def test_only_declined_or_taken_drivers_nearby_means_widen() -> None:
    plan = OfferPlan.of(PICKUP, ["d1"])
    plan.lost("d2")
    assert ids(plan, [driver("d1", 100), driver("d2", 200)]) == []
    assert plan.next_radius_m() == SEARCH_RADII_M[1]


def test_a_try_gives_up_once_its_attempt_budget_is_spent() -> None:
    plan = OfferPlan.of(PICKUP, ())
    for i in range(MAX_OFFER_ATTEMPTS - 2):
        plan.lost(f"lost{i}")
    nearby = [driver(f"d{i}", 100.0 + i) for i in range(10)]
    assert len(ids(plan, nearby)) == 2  # never past the budget, even mid-pass
    plan.lost("d0")
    plan.lost("d1")
    assert plan.next_radius_m() is None
