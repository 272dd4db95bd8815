"""H3 and distance helpers."""

from __future__ import annotations

import itertools

import h3
import pytest

from ridepulse.geo import (
    DEFAULT_RESOLUTION,
    bearing_deg,
    cell_boundary,
    cell_center,
    cell_of,
    cells_along,
    haversine_m,
    neighbours,
    ring,
)

FERRY_BUILDING = (37.7955, -122.3937)
CIVIC_CENTER = (37.7793, -122.4193)


def test_default_resolution_is_eight_with_hexagons_of_about_three_quarters_of_a_km2() -> None:
    assert DEFAULT_RESOLUTION == 8
    assert h3.average_hexagon_area(8, unit="km^2") == pytest.approx(0.737, abs=0.001)


def test_a_point_lies_in_its_cell_and_near_the_cell_centre() -> None:
    cell = cell_of(*CIVIC_CENTER)
    assert h3.get_resolution(cell) == 8
    assert cell_of(*cell_center(cell)) == cell
    assert haversine_m(*CIVIC_CENTER, *cell_center(cell)) < 600


def test_resolution_can_be_chosen_per_call() -> None:
    assert h3.get_resolution(cell_of(*CIVIC_CENTER, resolution=9)) == 9


def test_one_ring_of_neighbours_is_the_cell_and_its_six_neighbours() -> None:
    cell = cell_of(*CIVIC_CENTER)
    disk = neighbours(cell, 1)
    assert len(disk) == 7
    assert cell in disk
    assert ring(cell, 1) == disk - {cell}
    assert len(neighbours(cell, 2)) == 19


def test_cell_boundary_is_six_vertices_around_the_centre() -> None:
    cell = cell_of(*CIVIC_CENTER)
    boundary = cell_boundary(cell)
    assert len(boundary) == 6
    centre = cell_center(cell)
    for lat, lon in boundary:
        assert 300 < haversine_m(*centre, lat, lon) < 800


def test_haversine_matches_a_known_distance() -> None:
    # Ferry Building to Civic Center is about 2.9 km as the crow flies.
    assert haversine_m(*FERRY_BUILDING, *CIVIC_CENTER) == pytest.approx(2_950, rel=0.03)
    assert haversine_m(*FERRY_BUILDING, *FERRY_BUILDING) == 0.0


@pytest.mark.parametrize(
    ("to", "expected_deg"),
    [
        ((38.0, -122.4), 0.0),
        ((37.7, -122.3), 90.0),
        ((37.6, -122.4), 180.0),
        ((37.7, -122.5), 270.0),
    ],
)
def test_bearing_points_clockwise_from_north(to: tuple[float, float], expected_deg: float) -> None:
    assert bearing_deg(37.7, -122.4, *to) == pytest.approx(expected_deg, abs=0.1)


def test_cells_along_a_line_start_and_end_at_its_endpoints_and_touch_each_other() -> None:
    cells = cells_along(CIVIC_CENTER, FERRY_BUILDING)
    assert cells[0] == cell_of(*CIVIC_CENTER)
    assert cells[-1] == cell_of(*FERRY_BUILDING)
    assert len(cells) == len(set(cells))
    for a, b in itertools.pairwise(cells):
        assert h3.are_neighbor_cells(a, b), f"{a} and {b} are consecutive but not adjacent"
    # ~2.9 km across 531 m edges (~920 m across a hexagon) crosses a handful of cells.
    assert 3 <= len(cells) <= 8


def test_cells_along_a_zero_length_line_is_the_one_cell() -> None:
    assert cells_along(CIVIC_CENTER, CIVIC_CENTER) == [cell_of(*CIVIC_CENTER)]
