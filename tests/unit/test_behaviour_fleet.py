"""Fleet gateway simulation: many cheap virtual drivers, batched for POST /v1/telemetry."""

from __future__ import annotations

import random

import pytest

from loadtests.behaviours.fleet import Fleet, batches
from loadtests.behaviours.speeds import MAX_SPEED_MPS
from loadtests.behaviours.streets import StreetGrid
from ridepulse.markets import load_markets

SF = load_markets().default
NOW_MS = 1_800_000_000_000


@pytest.fixture(scope="module")
def grid() -> StreetGrid:
    return StreetGrid(SF.bbox, SF.center)


def test_fleet_pings_have_the_requested_size_and_unique_driver_ids(grid: StreetGrid) -> None:
    fleet = Fleet(grid, random.Random(1), 1000, "v-abc-0")
    pings = fleet.step(4.0, NOW_MS)
    assert len(pings) == len(fleet) == 1000
    assert len({p["driver_id"] for p in pings}) == 1000
    assert {p["ts"] for p in pings} == {NOW_MS}
    assert set(pings[0]) == {"driver_id", "lat", "lon", "ts", "speed_mps", "heading"}


def test_two_fleet_users_never_share_a_driver_id(grid: StreetGrid) -> None:
    a = Fleet(grid, random.Random(1), 50, "v-run-0").driver_ids
    b = Fleet(grid, random.Random(1), 50, "v-run-1").driver_ids
    assert not set(a) & set(b)


def test_fleet_vehicles_stay_in_the_market_at_city_speeds(grid: StreetGrid) -> None:
    fleet = Fleet(grid, random.Random(2), 200, "v")
    for _ in range(100):
        for ping in fleet.step(4.0, NOW_MS):
            assert SF.bbox.contains(float(ping["lat"]), float(ping["lon"]))
            assert 0.0 <= float(ping["speed_mps"]) <= MAX_SPEED_MPS * 1.15


def test_fleet_vehicles_drive_along_the_grid(grid: StreetGrid) -> None:
    fleet = Fleet(grid, random.Random(3), 100, "v")
    for _ in range(50):
        fleet.step(4.0, NOW_MS)
        for x, y in zip(fleet.xs, fleet.ys, strict=True):
            i, j = grid.nearest_intersection((x, y))
            assert abs(x - grid.xs[i]) < 1e-6 or abs(y - grid.ys[j]) < 1e-6, (x, y)


def test_batches_split_pings_without_losing_any() -> None:
    pings = [{"driver_id": str(n)} for n in range(1234)]
    parts = batches(pings, 500)  # type: ignore[arg-type]
    assert [len(p) for p in parts] == [500, 500, 234]
    assert [p for part in parts for p in part] == pings
    with pytest.raises(ValueError, match="batch size must be at least 1"):
        batches([], 0)
