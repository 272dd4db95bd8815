"""The pure parts of the quality runner: demand shapes, seeded draws, stage grouping."""

from __future__ import annotations

import math
import random

import pytest

from loadtests.behaviours.speeds import core_radius_m
from loadtests.quality import plan
from loadtests.quality.runner import group_stages, platform_env, select
from loadtests.quality.scenario import (
    Demand,
    Hotspot,
    Scenario,
    area_centre,
    draw_fleet,
    draw_trips,
    point_in,
    rush,
    spike,
    steady,
)


def test_steady_demand_is_flat_and_zero_outside_its_duration() -> None:
    d = steady(0.5, 60)
    assert d.rate_at(0) == d.rate_at(30) == d.rate_at(60) == 0.5
    assert d.rate_at(60.1) == 0 and d.rate_at(-1) == 0
    assert d.expected() == pytest.approx(30)


def test_rush_ramps_up_holds_and_eases() -> None:
    d = rush(0.1, 0.5, 100)
    assert d.rate_at(0) == pytest.approx(0.1)
    assert d.rate_at(20) == pytest.approx(0.3)  # halfway up the ramp
    assert d.rate_at(50) == pytest.approx(0.5)
    assert d.rate_at(100) == pytest.approx(0.3)
    assert d.peak == 0.5


def test_spike_jumps_at_its_time_and_falls_back() -> None:
    d = spike(0.1, 1.0, 60, at_s=20, width_s=12)
    assert d.rate_at(10) == pytest.approx(0.1)
    assert d.rate_at(25) == pytest.approx(1.0)
    assert d.rate_at(40) == pytest.approx(0.1)
    assert d.expected() == pytest.approx(0.1 * 60 + 0.9 * 12, rel=0.01)


def test_demand_rejects_points_out_of_order_or_negative() -> None:
    with pytest.raises(ValueError, match="time order"):
        Demand(((10, 1.0), (5, 1.0)))
    with pytest.raises(ValueError, match=">= 0"):
        Demand(((0, -1.0), (5, 1.0)))


def test_arrivals_are_seeded_and_follow_the_rate() -> None:
    d = spike(0.2, 2.0, 200, at_s=100, width_s=40)
    a, b = d.arrivals(random.Random(3)), d.arrivals(random.Random(3))
    assert a == b
    assert all(0 <= t <= 200 for t in a) and a == sorted(a)
    # the spike's 40 s hold ~80 of the ~112 expected; the thinning must put them there
    in_spike = sum(100 + 2 <= t <= 140 for t in a)
    assert in_spike > 3 * sum(t < 40 for t in a) + 30
    assert abs(len(a) - d.expected()) < 4 * math.sqrt(d.expected())


def test_same_seed_same_city_and_a_different_seed_another() -> None:
    s = Scenario("s", 12, steady(0.5, 40), seed=7)
    other = Scenario("s", 12, steady(0.5, 40), seed=8, env={"RIDEPULSE_X": "1"})
    grid = s.grid()
    assert draw_trips(s, grid) == draw_trips(s, grid)
    assert draw_fleet(s, grid) == draw_fleet(s, grid)
    assert draw_trips(s, grid) != draw_trips(other, grid)
    # settings and hooks do not change the city: the same seed with other env meets it again
    same_seed = Scenario("s", 12, steady(0.5, 40), seed=7, env={"RIDEPULSE_X": "1"})
    assert draw_trips(same_seed, grid) == draw_trips(s, grid)


def test_trips_and_drivers_stay_in_the_area_with_trip_lengths_in_bounds() -> None:
    s = Scenario("s", 30, steady(1.0, 60), seed=1)
    grid = s.grid()
    centre = area_centre(grid, s.area)
    trips = draw_trips(s, grid)
    assert trips
    for t in trips:
        assert s.area.min_trip_m <= math.dist(t.pickup, t.dropoff) <= s.area.max_trip_m
        assert math.dist(t.pickup, centre) <= s.area.radius_m + 1
    for d in draw_fleet(s, grid):
        # snapped to a street corner, so within a block of the area
        assert math.dist(d.start, centre) <= s.area.radius_m + grid.block_m
        assert 0.9 <= d.pace <= 1.1


def test_stages_with_the_same_settings_share_a_platform() -> None:
    a = Scenario("a", 1, steady(1, 1), env={"RIDEPULSE_MATCH_BATCH_WINDOW_S": "1"})
    b = Scenario("b", 1, steady(1, 1), market="nyc", env={"RIDEPULSE_MATCH_BATCH_WINDOW_S": "1"})
    c = Scenario("c", 1, steady(1, 1), env={"RIDEPULSE_MATCH_BATCH_WINDOW_S": "2"})
    assert platform_env((a, b))["RIDEPULSE_MARKETS"] == "nyc,sf"
    groups = group_stages([(a, b), (a, b), (c,)])
    assert [len(stages) for _env, stages in groups] == [2, 1]
    with pytest.raises(ValueError, match="mixes"):
        platform_env((a, c))  # one platform cannot have two windows
    with pytest.raises(ValueError, match="a market each"):
        platform_env((a, a))  # two scenarios at once need a market each
    assert select([(a, b), (c,)], {"c"}) == [(c,)]


def test_the_plan_sweeps_every_window_in_a_busy_and_a_quiet_city() -> None:
    names = {s.name for stage in plan.STAGES for s in stage}
    for w in ("0", "0.5", "1", "2", "4"):
        assert {f"sweep-busy-w{w}", f"sweep-quiet-w{w}"} <= names
    assert {"steady", "rush", "spike"} <= names
    for env, _stages in group_stages(plan.STAGES):
        assert env["RIDEPULSE_RIDE_DEADLINE_S"] == "30"


def test_a_hotspot_gathers_the_pickups_of_its_window_and_only_those() -> None:
    spot = Hotspot(from_s=20, until_s=34, east_m=300, north_m=-200, radius_m=100)
    s = Scenario("spike", 10, spike(0.2, 3.0, 60, 20, 12), seed=4, hotspot=spot)
    grid = s.grid()
    cx, cy = area_centre(grid, s.area)
    trips = draw_trips(s, grid)
    inside = [t for t in trips if 20 <= t.at_s <= 34]
    outside = [t for t in trips if not 20 <= t.at_s <= 34]
    assert len(inside) > 20
    assert all(math.dist(t.pickup, (cx + 300, cy - 200)) <= 100 + 1e-6 for t in inside)
    assert sum(math.dist(t.pickup, (cx + 300, cy - 200)) > 100 for t in outside) >= 1


def test_every_city_of_the_plan_straddles_its_markets_slow_core() -> None:
    """The core's radius is 12 % of the market's smaller side (1.39 km in sf, 0.91 km in nyc):
    a disc at a fixed 1.7 km east held a fifth core streets in sf and none in nyc, so the
    rush city (nyc) had no downtown slowdown for the ETA model to learn."""
    shares: dict[str, float] = {}
    for stage in plan.STAGES:
        for s in stage:
            grid = s.grid()
            rng = random.Random(f"core:{s.name}")
            points = [point_in(s.area, grid, rng) for _ in range(4000)]
            core = sum(math.dist(p, grid.center) < core_radius_m(grid) for p in points)
            shares[s.market] = core / len(points)
    assert set(shares) == {"sf", "nyc"}
    for market, share in shares.items():
        assert 0.10 < share < 0.40, f"{market}: {share:.1%} of the city in the core"
