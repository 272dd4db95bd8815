"""The simulated street grid: deterministic, inside the market, and routable end to end."""

from __future__ import annotations

import math
import random

import pytest

from loadtests.behaviours.streets import Frame, Polyline, StreetGrid, bearing_deg
from ridepulse.markets import BBox, LatLon, load_markets

SF = load_markets().default


@pytest.fixture(scope="module")
def grid() -> StreetGrid:
    return StreetGrid(SF.bbox, SF.center)


def test_frame_round_trips_a_point_within_a_centimetre() -> None:
    frame = Frame(SF.bbox)
    x, y = frame.to_xy(37.7749, -122.4194)
    back = frame.to_latlon(x, y)
    assert math.isclose(back.lat, 37.7749, abs_tol=1e-7) and math.isclose(
        back.lon, -122.4194, abs_tol=1e-7
    )


def test_frame_size_matches_the_market_box_in_metres() -> None:
    frame = Frame(SF.bbox)
    assert 13_000 < frame.width_m < 15_000, frame.width_m  # ~0.16° of longitude at 37.8° N
    assert 11_000 < frame.height_m < 12_000, frame.height_m  # ~0.104° of latitude


def test_clamp_keeps_points_inside_the_market() -> None:
    frame = Frame(SF.bbox)
    for x, y in [(-50.0, -50.0), (1e6, 1e6), (-1.0, 5000.0)]:
        where = frame.to_latlon(*frame.clamp(x, y))
        assert SF.bbox.contains(where.lat, where.lon), (x, y, where)


def test_grid_is_deterministic_for_a_market() -> None:
    a, b = StreetGrid(SF.bbox, SF.center), StreetGrid(SF.bbox, SF.center)
    assert a.xs == b.xs and a.ys == b.ys and a.arterial_rows == b.arterial_rows


def test_grid_has_blocks_of_the_requested_size_and_arterials_through_the_centre(
    grid: StreetGrid,
) -> None:
    gaps = {round(b - a, 6) for a, b in zip(grid.xs, grid.xs[1:], strict=False)}
    assert gaps == {200.0}
    ci, cj = grid.nearest_intersection(grid.center)
    assert ci in grid.arterial_cols and cj in grid.arterial_rows
    assert 0 < len(grid.arterial_rows) < len(grid.ys) / 4


def test_polyline_interpolates_by_distance() -> None:
    line = Polyline([(0.0, 0.0), (100.0, 0.0), (100.0, 50.0)])
    assert line.length_m == 150.0
    assert line.position_at(50.0) == (50.0, 0.0)
    assert line.position_at(125.0) == (100.0, 25.0)
    assert line.position_at(-5.0) == (0.0, 0.0) and line.position_at(999.0) == (100.0, 50.0)


def test_single_point_polyline_has_zero_length() -> None:
    line = Polyline([(3.0, 4.0)])
    assert line.length_m == 0.0 and line.position_at(10.0) == (3.0, 4.0)


@pytest.mark.parametrize("seed", range(20))
def test_a_route_starts_at_its_origin_and_reaches_its_destination(
    grid: StreetGrid, seed: int
) -> None:
    rng = random.Random(seed)
    a = (rng.uniform(0, grid.frame.width_m), rng.uniform(0, grid.frame.height_m))
    b = (rng.uniform(0, grid.frame.width_m), rng.uniform(0, grid.frame.height_m))
    route = grid.route(a, b)
    assert route.points[0] == a and route.end == b
    assert route.length_m >= math.dist(a, b) - 1e-6


@pytest.mark.parametrize("seed", range(20))
def test_routes_follow_the_grid_between_corners(grid: StreetGrid, seed: int) -> None:
    """Apart from the short hops to and from the nearest corner, every leg is axis-aligned."""
    rng = random.Random(seed)
    a, b = grid.random_intersection(rng), grid.random_intersection(rng)
    route = grid.route(a, b)
    for p, q in zip(route.points, route.points[1:], strict=False):
        assert p[0] == q[0] or p[1] == q[1], (p, q)


def test_long_routes_use_an_arterial(grid: StreetGrid) -> None:
    a, b = grid.intersection(1, 1), grid.intersection(len(grid.xs) - 2, 3)
    route = grid.route(a, b)
    mid = route.position_at(route.length_m / 2)
    assert grid.is_arterial(mid), "the middle of a cross-town route should be on an arterial"


def test_random_intersection_near_a_point_stays_within_reach(grid: StreetGrid) -> None:
    rng = random.Random(3)
    here = grid.intersection(20, 20)
    for _ in range(200):
        p = grid.random_intersection(rng, near=here, radius_m=1000)
        assert abs(p[0] - here[0]) <= 1000 + 1e-6 and abs(p[1] - here[1]) <= 1000 + 1e-6


def test_bearing_is_a_compass_bearing() -> None:
    assert bearing_deg((0, 0), (0, 10)) == 0.0
    assert bearing_deg((0, 0), (10, 0)) == 90.0
    assert bearing_deg((0, 0), (0, -10)) == 180.0
    assert bearing_deg((0, 0), (-10, 0)) == 270.0


def test_a_tiny_market_still_has_one_street() -> None:
    tiny = BBox(min_lat=10.0, min_lon=10.0, max_lat=10.0005, max_lon=10.0005)
    grid = StreetGrid(tiny, LatLon(10.00025, 10.00025))
    assert len(grid.xs) == 1 and len(grid.ys) == 1
    assert grid.route((1.0, 1.0), (40.0, 40.0)).end == (40.0, 40.0)
