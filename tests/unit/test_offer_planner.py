"""Matching's offer policy without Redis: who is tried, when the radius widens, when a try
gives up (matching/planner.py)."""

from __future__ import annotations

from matching.candidates import MAX_OFFER_ATTEMPTS, OFFER_ATTEMPTS_PER_PASS
from matching.planner import OfferPlan
from ridepulse.pickups import SEARCH_RADII_M, NearbyDriver
from ridepulse.travel import CellSpeeds
from tests.support import two_sides
from tests.support.two_sides import FAST_B, SLOW_A

PICKUP = (37.7793, -122.4193)
UNIFORM = CellSpeeds()  # every cell at the default speed: nearer is faster


def driver(driver_id: str, north_m: float) -> NearbyDriver:
    return NearbyDriver(driver_id, PICKUP[0] + north_m / 111_000, PICKUP[1], north_m)


def ids(plan: OfferPlan, nearby: list[NearbyDriver], speeds: CellSpeeds = UNIFORM) -> list[str]:
    return [c.driver_id for c in plan.candidates(nearby, speeds)]


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


def test_a_faster_driver_just_past_the_first_radius_is_offered_before_a_slower_nearer_one() -> None:
    """t11_radius.py: A 1.40 km away through slow cells (345 s), B 1.60 km away on a fast
    road (189 s). The 1.5 km search finds A only; B, from outside it, arrives 45% sooner."""
    speeds = CellSpeeds(two_sides.learned_speeds())
    a, b = two_sides.nearby("A", SLOW_A), two_sides.nearby("B", FAST_B)
    plan = OfferPlan.of(two_sides.PICKUP, ())
    assert plan.next_radius_m() == SEARCH_RADII_M[0] < b.distance_m
    assert ids(plan, [a], speeds) == [], "A was offered without looking past 1.5 km for faster"
    reach = plan.next_radius_m()
    assert reach is not None and b.distance_m < reach < SEARCH_RADII_M[-1], reach
    assert ids(plan, [a, b], speeds) == ["B", "A"]


def test_the_search_for_a_faster_driver_is_one_more_search_at_most() -> None:
    speeds = CellSpeeds(two_sides.learned_speeds())
    a = two_sides.nearby("A", SLOW_A)
    plan = OfferPlan.of(two_sides.PICKUP, ())
    assert ids(plan, [a], speeds) == []
    assert ids(plan, [a], speeds) == ["A"]  # nobody faster out there: A, without a third search


def test_a_best_driver_nobody_farther_could_beat_is_offered_without_another_search() -> None:
    speeds = CellSpeeds(two_sides.learned_speeds())
    near = driver("near", 300)  # 49 s at 8 m/s: no driver past 0.45 km beats it at 13.5 m/s
    plan = OfferPlan.of(PICKUP, ())
    assert ids(plan, [near, driver("far", 1_400)], speeds) == ["near", "far"]
    assert plan.next_radius_m() == SEARCH_RADII_M[0]


def test_the_search_for_a_faster_driver_stops_at_the_widest_radius() -> None:
    motorway = CellSpeeds({"8928308280fffff": 45.0})  # somewhere fast, far from the pickup
    far = driver("d1", 3_000)  # 487 s: a 45 m/s driver could beat it from 16.9 km
    plan = OfferPlan.of(PICKUP, ())
    assert ids(plan, [], motorway) == [] and plan.next_radius_m() == SEARCH_RADII_M[1]
    assert ids(plan, [far], motorway) == []
    assert plan.next_radius_m() == SEARCH_RADII_M[-1]
    assert ids(plan, [far], motorway) == ["d1"]
    plan.lost("d1")
    assert plan.next_radius_m() == SEARCH_RADII_M[-1]
    assert ids(plan, [], motorway) == [] and plan.next_radius_m() is None
