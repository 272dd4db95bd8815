"""The simulated driver stays in the market, drives at plausible speeds, reports honest headings."""

from __future__ import annotations

import math
import random

import pytest

from loadtests.behaviours.driving import DriverModel, DriverState, DriverTraits, Ping
from loadtests.behaviours.speeds import (
    MAX_SPEED_MPS,
    area_factor,
    street_speed_mps,
    time_of_day_factor,
)
from loadtests.behaviours.streets import StreetGrid, bearing_deg
from ridepulse.markets import LatLon, load_markets

SF = load_markets().default
FIXED_NOW_MS = 1_800_000_000_000


@pytest.fixture(scope="module")
def grid() -> StreetGrid:
    return StreetGrid(SF.bbox, SF.center)


def make_driver(grid: StreetGrid, seed: int = 1, **traits: float) -> DriverModel:
    return DriverModel(
        grid, random.Random(seed), DriverTraits(**traits), now_ms=lambda: FIXED_NOW_MS
    )


def drive(model: DriverModel, steps: int, dt_s: float = 4.0) -> list[Ping]:
    return [model.step(dt_s) for _ in range(steps)]


@pytest.mark.parametrize("seed", range(5))
def test_pings_stay_inside_the_market(grid: StreetGrid, seed: int) -> None:
    model = make_driver(grid, seed)
    for ping in drive(model, 500):
        assert SF.bbox.contains(ping.lat, ping.lon), ping


def test_speeds_stay_within_realistic_bounds(grid: StreetGrid) -> None:
    speeds = [p.speed_mps for seed in range(5) for p in drive(make_driver(grid, seed), 300)]
    assert max(speeds) <= MAX_SPEED_MPS * 1.15 * 1.08  # temperament and jitter on the cap
    moving = [s for s in speeds if s > 0]
    assert len(moving) > 0.9 * len(speeds), "a roaming driver should nearly always be moving"
    assert 4.0 < sum(moving) / len(moving) < 16.0  # a city average, 15–55 km/h


def test_downtown_is_slower_than_the_outskirts(grid: StreetGrid) -> None:
    downtown = grid.intersection(*grid.nearest_intersection(grid.center))
    outskirts = grid.intersection(0, 0)
    for hour in (3.0, 8.0, 13.0):
        assert street_speed_mps(grid, downtown, hour) < street_speed_mps(grid, outskirts, hour)
    assert area_factor(grid, downtown) < 1.0 < area_factor(grid, outskirts)


def test_arterials_are_faster_than_side_streets(grid: StreetGrid) -> None:
    i = min(grid.arterial_cols)
    j = next(j for j in range(len(grid.ys)) if j not in grid.arterial_rows)
    arterial = grid.intersection(i, j)
    side = (arterial[0] + grid.block_m / 2, arterial[1])  # between two corners on a side row
    assert grid.is_arterial(arterial) and not grid.is_arterial(side)
    assert area_factor(grid, arterial) == area_factor(grid, side)
    assert street_speed_mps(grid, arterial, 13.0) > street_speed_mps(grid, side, 13.0)


def test_rush_hour_is_slower_than_midday_and_night_is_fastest() -> None:
    assert time_of_day_factor(8.0) < time_of_day_factor(13.0) < time_of_day_factor(2.0)
    assert time_of_day_factor(17.5) == time_of_day_factor(8.0)
    assert time_of_day_factor(26.0) == time_of_day_factor(2.0)


def test_the_simulated_hour_advances_with_simulated_time(grid: StreetGrid) -> None:
    model = make_driver(grid, start_hour=23.5)
    drive(model, 900, dt_s=4.0)  # one simulated hour
    assert math.isclose(model.hour, 0.5, abs_tol=1e-6)


def test_heading_matches_the_direction_of_movement(grid: StreetGrid) -> None:
    model = make_driver(grid, seed=7, gps_sigma_m=0.0)
    checked = 0
    for _ in range(300):
        before = model.position
        ping = model.step(4.0)
        after = model.position
        if math.dist(before, after) > 1.0:
            expected = bearing_deg(before, after)
            diff = abs((ping.heading - expected + 180) % 360 - 180)
            assert diff < 0.1, (ping.heading, expected)
            checked += 1
    assert checked > 200


def test_reported_speed_is_the_distance_driven_over_the_interval(grid: StreetGrid) -> None:
    model = make_driver(grid, seed=2, gps_sigma_m=0.0)
    model.start_pickup(grid.frame.to_latlon(*grid.intersection(0, 0)))  # far away: no arrival
    for _ in range(20):
        start_m = model.travelled_m
        ping = model.step(2.0)
        assert math.isclose(ping.speed_mps, (model.travelled_m - start_m) / 2.0, abs_tol=0.01)


def test_gps_noise_is_a_few_metres(grid: StreetGrid) -> None:
    model = make_driver(grid, seed=4)
    errors = []
    for _ in range(400):
        ping = model.step(4.0)
        x, y = grid.frame.to_xy(ping.lat, ping.lon)
        errors.append(math.dist((x, y), model.position))
    mean = sum(errors) / len(errors)
    assert 3.0 < mean < 9.0, mean  # a 2-D gaussian with σ = 5 m has a mean error of ~6.3 m


def test_the_same_seed_replays_the_same_drive(grid: StreetGrid) -> None:
    assert drive(make_driver(grid, 11), 50) == drive(make_driver(grid, 11), 50)
    assert drive(make_driver(grid, 11), 50) != drive(make_driver(grid, 12), 50)


def test_a_ride_takes_the_driver_to_pickup_then_dropoff(grid: StreetGrid) -> None:
    model = make_driver(grid, seed=5, gps_sigma_m=0.0)
    pickup = LatLon(37.7790, -122.4180)
    dropoff = LatLon(37.7600, -122.4350)
    model.start_pickup(pickup)
    assert model.state is DriverState.TO_PICKUP
    for _ in range(2000):
        if model.at_destination:
            break
        model.step(4.0)
    assert model.at_destination
    assert math.dist(grid.frame.to_xy(pickup.lat, pickup.lon), model.position) < 1.0
    model.start_trip(dropoff)
    assert model.state.value == "on_trip" and not model.at_destination  # .value: mypy narrowing
    for _ in range(2000):
        if model.at_destination:
            break
        model.step(4.0)
    assert math.dist(grid.frame.to_xy(dropoff.lat, dropoff.lon), model.position) < 1.0
    model.finish()
    assert model.state.value == "roaming" and not model.at_destination


def test_offers_are_accepted_at_the_configured_rate(grid: StreetGrid) -> None:
    model = make_driver(grid, seed=9, accept_probability=0.7)
    accepted = sum(model.decide_offer() for _ in range(5000))
    assert 0.67 < accepted / 5000 < 0.73


def test_only_an_idle_driver_goes_offline_and_it_comes_back(grid: StreetGrid) -> None:
    model = make_driver(grid, seed=3, mean_online_s=60.0, mean_offline_s=30.0)
    model.start_pickup(LatLon(37.77, -122.42))
    assert not any(model.wants_offline(4.0) for _ in range(500))
    model.finish()
    assert any(model.wants_offline(4.0) for _ in range(500))
    model.go_offline()
    before = model.position
    ping = model.step(4.0)
    assert model.position == before and ping.speed_mps == 0.0
    assert any(model.wants_online(4.0) for _ in range(500))
    model.go_online()
    assert model.state is DriverState.ROAMING


def test_ping_json_has_the_api_fields(grid: StreetGrid) -> None:
    body = make_driver(grid).step(4.0).to_json()
    assert set(body) == {"lat", "lon", "ts", "speed_mps", "heading", "accuracy_m"}
    assert body["ts"] == FIXED_NOW_MS
