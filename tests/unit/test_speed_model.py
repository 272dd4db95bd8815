"""The per-cell speed model, travel times and the ETA throttle."""

from __future__ import annotations

import math
import random

import pytest

from eta.model import SpeedModel, eta_should_update
from ridepulse.contracts.events import Ping
from ridepulse.geo import cell_center, cell_of, haversine_m
from ridepulse.settings import Settings
from ridepulse.travel import DEFAULT_SPEED_MPS, travel_time_s

M_PER_DEG_LAT = 111_195.0
MISSION = cell_of(37.7599, -122.4148)
DOWNTOWN = cell_of(37.7897, -122.4000)


def drive_in_cell(
    cell: str,
    true_speed_mps: float,
    rng: random.Random,
    *,
    drivers: int = 5,
    pings_per_driver: int = 60,
    interval_ms: int = 3_000,
    gps_noise_m: float = 4.0,
    report_speed: bool = False,
) -> list[Ping]:
    """Drivers circling a cell's centre at a steady speed, GPS fixes jittered by seeded noise."""
    lat0, lon0 = cell_center(cell)
    m_per_deg_lon = M_PER_DEG_LAT * math.cos(math.radians(lat0))
    radius_m = 150.0
    pings: list[Ping] = []
    for d in range(drivers):
        phase = rng.uniform(0, 2 * math.pi)
        for i in range(pings_per_driver):
            angle = phase + true_speed_mps * i * interval_ms / 1000 / radius_m
            north = radius_m * math.sin(angle) + rng.gauss(0, gps_noise_m)
            east = radius_m * math.cos(angle) + rng.gauss(0, gps_noise_m)
            pings.append(
                Ping(
                    driver_id=f"{cell}-d{d}",
                    lat=lat0 + north / M_PER_DEG_LAT,
                    lon=lon0 + east / m_per_deg_lon,
                    ts=1_700_000_000_000 + i * interval_ms,
                    speed_mps=true_speed_mps + rng.gauss(0, 1.0) if report_speed else None,
                )
            )
    return pings


def test_learned_speed_from_noisy_positions_converges_within_ten_percent_of_the_truth() -> None:
    model = SpeedModel()
    model.observe_batch(drive_in_cell(MISSION, 11.0, random.Random(7)))
    assert model.speed_of(MISSION) == pytest.approx(11.0, rel=0.10)


def test_learned_speed_from_reported_speeds_converges_within_ten_percent_of_the_truth() -> None:
    model = SpeedModel()
    model.observe_batch(drive_in_cell(MISSION, 6.0, random.Random(11), report_speed=True))
    assert model.speed_of(MISSION) == pytest.approx(6.0, rel=0.10)


def test_different_cells_learn_different_speeds() -> None:
    rng = random.Random(3)
    model = SpeedModel()
    model.observe_batch(drive_in_cell(MISSION, 4.0, rng) + drive_in_cell(DOWNTOWN, 13.0, rng))
    assert model.speed_of(MISSION) == pytest.approx(4.0, rel=0.10)
    assert model.speed_of(DOWNTOWN) == pytest.approx(13.0, rel=0.10)


def test_unknown_cell_gets_the_default_speed() -> None:
    model = SpeedModel()
    model.observe_batch(drive_in_cell(MISSION, 10.0, random.Random(5)))
    assert model.speed_of(DOWNTOWN) == DEFAULT_SPEED_MPS
    assert SpeedModel(default_speed_mps=6.5).speed_of(DOWNTOWN) == 6.5


def test_parked_drivers_do_not_drag_a_cell_towards_zero() -> None:
    rng = random.Random(9)
    model = SpeedModel()
    model.observe_batch(drive_in_cell(MISSION, 10.0, rng))
    parked = drive_in_cell(MISSION, 0.0, rng, gps_noise_m=0.2)
    reporting_zero = drive_in_cell(MISSION, 0.0, rng, report_speed=True)
    reporting_zero = [
        p.model_copy(update={"driver_id": "r" + p.driver_id, "speed_mps": 0.1})
        for p in reporting_zero
    ]
    assert model.observe_batch(parked + reporting_zero) == 0
    assert model.speed_of(MISSION) == pytest.approx(10.0, rel=0.10)


def test_gps_jumps_gaps_and_out_of_order_pings_are_not_speed_samples() -> None:
    lat, lon = cell_center(MISSION)
    t0 = 1_700_000_000_000
    model = SpeedModel()
    pings = [
        Ping(driver_id="d", lat=lat, lon=lon, ts=t0),
        Ping(driver_id="d", lat=lat + 0.01, lon=lon, ts=t0 + 10_000),  # 1.1 km in 10 s
        Ping(driver_id="d", lat=lat + 0.0101, lon=lon, ts=t0 + 5_000),  # older than the last
        Ping(driver_id="d", lat=lat + 0.0110, lon=lon, ts=t0 + 91_000),  # after an 81 s gap
        Ping(driver_id="d", lat=lat, lon=lon, ts=t0 + 92_000, speed_mps=99.0),  # implausible
    ]
    assert model.observe_batch(pings) == 0
    assert model.snapshot() == {}


def test_an_implausible_reported_speed_falls_back_to_the_derived_one() -> None:
    lat, lon = cell_center(MISSION)
    model = SpeedModel()
    model.observe_batch(
        [
            Ping(driver_id="d", lat=lat, lon=lon, ts=0),
            Ping(driver_id="d", lat=lat + 100 / M_PER_DEG_LAT, lon=lon, ts=10_000, speed_mps=-3.0),
        ]
    )
    assert model.speed_of(MISSION) == pytest.approx(10.0, rel=0.01)


def test_observing_ten_thousand_pings_in_one_batch_counts_every_usable_sample() -> None:
    rng = random.Random(13)
    pings = drive_in_cell(MISSION, 9.0, rng, drivers=100, pings_per_driver=100)
    model = SpeedModel()
    # One sample per >= 10 s baseline: every 4th ping at 3 s intervals.
    assert model.observe_batch(pings) == 100 * (99 // 4)
    assert model.speed_of(MISSION) == pytest.approx(9.0, rel=0.10)


def test_snapshot_restores_into_a_fresh_model_and_survives_one_new_sample() -> None:
    model = SpeedModel()
    model.observe_batch(drive_in_cell(MISSION, 7.0, random.Random(17)))
    restored = SpeedModel()
    restored.restore(model.snapshot())
    assert restored.snapshot() == model.snapshot()
    lat, lon = cell_center(MISSION)
    restored.observe_batch([Ping(driver_id="x", lat=lat, lon=lon, ts=0, speed_mps=20.0)])
    assert restored.speed_of(MISSION) == pytest.approx(7.0, rel=0.10)


def test_restore_ignores_unusable_values() -> None:
    model = SpeedModel()
    model.restore({MISSION: float("nan"), DOWNTOWN: 0.0})
    assert model.snapshot() == {}


def test_travel_time_grows_with_distance() -> None:
    lat, lon = 37.7749, -122.4194
    times = [
        travel_time_s(lat, lon, lat + km / 111.195, lon, lambda _: 10.0) for km in (0.5, 1, 2, 4, 8)
    ]
    assert times == sorted(times)
    assert times[0] < times[-1]


def test_travel_time_is_detoured_distance_over_speed_at_a_uniform_speed() -> None:
    lat, lon = 37.7749, -122.4194
    to_lat = lat + 0.02
    expected = haversine_m(lat, lon, to_lat, lon) * 1.3 / 10.0
    assert travel_time_s(lat, lon, to_lat, lon, lambda _: 10.0) == pytest.approx(expected)
    assert travel_time_s(lat, lon, lat, lon, lambda _: 10.0) == 0.0


@pytest.mark.parametrize("speed", [math.inf, math.nan, -math.inf])
def test_a_cell_whose_speed_is_no_number_travels_at_the_default(speed: float) -> None:
    """The speeds hash is read as floats by matching and ingest (only eta's restore checked
    them): an `inf` there made every ETA through the cell a ZeroDivisionError."""
    a, b = (37.77, -122.42), (37.78, -122.41)
    at_default = travel_time_s(*a, *b, lambda _: DEFAULT_SPEED_MPS)
    assert travel_time_s(*a, *b, lambda _: speed) == pytest.approx(at_default)


def test_one_slow_cell_on_the_way_slows_the_whole_trip() -> None:
    lat, lon = 37.7749, -122.4194
    slow = cell_of(lat + 0.01, lon)
    fast = travel_time_s(lat, lon, lat + 0.02, lon, lambda _: 10.0)
    jammed = travel_time_s(lat, lon, lat + 0.02, lon, lambda c: 2.0 if c == slow else 10.0)
    assert jammed > fast * 1.3


def test_travel_time_uses_what_the_model_learned() -> None:
    model = SpeedModel()
    model.observe_batch(drive_in_cell(MISSION, 4.0, random.Random(19)))
    lat, lon = cell_center(MISSION)
    learned = model.travel_time_s(lat, lon, lat + 0.001, lon)
    default = travel_time_s(lat, lon, lat + 0.001, lon, lambda _: DEFAULT_SPEED_MPS)
    assert learned > default


def test_first_eta_is_always_sent() -> None:
    assert eta_should_update(None, 300.0, None, 1_000)


def test_eta_is_not_resent_within_five_seconds_even_if_it_changed_a_lot() -> None:
    assert not eta_should_update(300.0, 100.0, last_sent_ms=10_000, now_ms=14_999)


def test_eta_is_resent_after_five_seconds_when_it_moved_ten_percent_or_fifteen_seconds() -> None:
    assert eta_should_update(100.0, 89.0, last_sent_ms=0, now_ms=5_000)  # 11%
    assert eta_should_update(1_000.0, 1_015.0, last_sent_ms=0, now_ms=5_000)  # 15 s


def test_small_eta_changes_are_not_resent_however_long_ago_the_last_was() -> None:
    assert not eta_should_update(100.0, 95.0, last_sent_ms=0, now_ms=60_000)
    assert not eta_should_update(0.0, 0.0, last_sent_ms=0, now_ms=60_000)


def test_learning_from_one_ping_per_driver_every_six_seconds_still_converges() -> None:
    """eta_learn_interval_ms: a third of the 2 s pings are used, the speed is as good."""
    pings = drive_in_cell(MISSION, 9.0, random.Random(5), interval_ms=2_000, report_speed=True)
    every = SpeedModel()
    sampled = SpeedModel(learn_interval_ms=6_000)
    used_all, used_sampled = every.observe_batch(pings), sampled.observe_batch(pings)
    assert used_sampled <= used_all / 3 + 5  # 1 in 3, plus each driver's first ping
    assert sampled.speed_of(MISSION) == pytest.approx(9.0, rel=0.10)


def test_the_default_learn_interval_keeps_every_ping_of_a_phone_and_samples_faster_devices() -> (
    None
):
    """The documented default: phones pinging every 2 s (the quality city) teach with every
    ping; the sweep's fleet pinging every 1.25 s teaches with every other one."""
    interval = Settings.model_fields["eta_learn_interval_ms"].default
    for every_ms, kept in ((2_000, 1.0), (1_250, 0.5)):
        pings = drive_in_cell(
            MISSION, 9.0, random.Random(3), interval_ms=every_ms, report_speed=True
        )
        used = SpeedModel(learn_interval_ms=interval).observe_batch(pings)
        assert used == pytest.approx(len(pings) * kept, abs=5)  # each driver's first ping
