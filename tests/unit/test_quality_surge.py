"""The surge response of the quality city (riders answer the price, some drivers chase surge)
and the on/off comparison the page renders from it (issue 13.4)."""

from __future__ import annotations

import random

import h3

from loadtests.behaviours.streets import StreetGrid
from loadtests.quality.records import RideRecord
from loadtests.quality.surge_report import OFF, ON, back_after, surge_rows, surge_run, surge_verdict
from loadtests.quality.surge_response import (
    CHASER_SHARE,
    accept_probability,
    chase_target,
    is_chaser,
    rider_accepts,
)
from ridepulse.markets import load_markets

SF = load_markets(only="all").get("sf")
GRID = StreetGrid(SF.bbox, SF.center)


def test_riders_take_fewer_quotes_the_higher_the_multiplier() -> None:
    assert accept_probability(1.0) == 1.0
    assert accept_probability(0.9) == 1.0
    assert accept_probability(2.0) == 0.5
    rng = random.Random(5)
    taken = {
        m: sum(rider_accepts({"surge": m}, rng) for _ in range(4000)) / 4000 for m in (1, 1.5, 2, 3)
    }
    assert taken[1] == 1.0
    assert taken[1.5] > taken[2] > taken[3]
    assert abs(taken[2] - 0.5) < 0.03


def test_a_stable_share_of_drivers_chase_surge() -> None:
    drivers = [f"q-spike-13-{i}" for i in range(2000)]
    chasers = [d for d in drivers if is_chaser(d)]
    assert abs(len(chasers) / len(drivers) - CHASER_SHARE) < 0.04
    assert chasers == [d for d in drivers if is_chaser(d)]  # the same drivers every time


def _cell_at(x: float, y: float) -> str:
    ll = GRID.frame.to_latlon(x, y)
    return str(h3.latlng_to_cell(ll.lat, ll.lon, 8))


def test_a_chaser_heads_for_the_highest_surging_cell_in_reach() -> None:
    here = GRID.center
    near_high = _cell_at(here[0] + 900, here[1])
    near_low = _cell_at(here[0] - 900, here[1])
    far_higher = _cell_at(here[0] + 5000, here[1])
    surge = {near_high: 2.0, near_low: 1.4, far_higher: 3.0}
    target = chase_target(here, surge, GRID.frame)
    assert target is not None
    lat, lon = h3.cell_to_latlng(near_high)
    cx, cy = GRID.frame.to_xy(lat, lon)
    assert abs(target[0] - cx) < 1 and abs(target[1] - cy) < 1


def test_no_chase_without_surge_or_when_already_there() -> None:
    here = GRID.center
    assert chase_target(here, {}, GRID.frame) is None
    assert chase_target(here, {_cell_at(here[0] + 900, here[1]): 1.1}, GRID.frame) is None
    lat, lon = h3.cell_to_latlng(_cell_at(*here))
    centre = GRID.frame.to_xy(lat, lon)
    assert chase_target(centre, {_cell_at(*here): 2.5}, GRID.frame) is None


def test_the_multiplier_falls_back_when_it_is_one_again_and_stays() -> None:
    samples = [[0, 1.0], [20, 1.0], [30, 2.0], [40, 1.6], [50, 1.0], [60, 1.2], [70, 1.0]]
    assert back_after(samples, ends_s=34) == 36  # back at 70 s, for good
    assert back_after([[0, 1.0], [10, 1.0]], ends_s=34) == 0.0
    assert back_after([[0, 1.0], [40, 2.0]], ends_s=34) is None


def _ride(i: int, matched: bool, wait_s: float) -> RideRecord:
    requested = 1_000_000 + i * 1000
    return RideRecord(
        ride_id=f"r{i}",
        requested_ms=requested,
        deadline_ms=requested + 30_000,
        offered_ms=requested + 100 if matched else None,
        matched_ms=requested + 2000 if matched else None,
        arrived_ms=requested + int(wait_s * 1000) if matched else None,
    )


def test_the_comparison_says_whether_surge_served_the_spike_better() -> None:
    on_facts = {
        "requests": 10,
        "declined_for_price": 2,
        "utilisation": 0.6,
        "surge_samples": [[0, 1.0], [30, 2.2], [60, 1.0]],
    }
    off_facts = {
        "requests": 10,
        "declined_for_price": 0,
        "utilisation": 0.7,
        "surge_samples": [[0, 1.0], [30, 1.0]],
    }
    on = surge_run(on_facts, [_ride(i, True, 60) for i in range(8)], ends_s=34)
    off = surge_run(off_facts, [_ride(i, i < 6, 90) for i in range(10)], ends_s=34)
    assert on.fulfilment == 1.0 and off.fulfilment == 0.6
    assert on.declined_share == 0.2 and on.served_share == 0.8
    assert on.mean_wait_s == 60 and off.mean_wait_s == 90
    assert on.peak == 2.2 and on.back_after_s == 26
    assert [row[0] for row in surge_rows({ON: on, OFF: off})] == ["surge on", "surge off (cap 1)"]
    verdict = surge_verdict({ON: on, OFF: off})
    assert "**met**" in verdict and "+40 points" in verdict and "-33 %" in verdict
    assert "**not met**" in surge_verdict({ON: off, OFF: on})
