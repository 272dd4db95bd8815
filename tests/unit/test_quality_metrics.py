"""Pure maths of the dispatch-quality records and ETA-accuracy metrics (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.quality.metrics import (
    BASELINE_SPEED_MPS,
    baseline_eta_s,
    error_summary,
    fulfilment_rate,
    improvement,
    mae_by_minute,
)
from loadtests.quality.records import RideRecord, consistency_errors, read_csv, write_csv
from ridepulse.geo import haversine_m


def _ride(**overrides: object) -> RideRecord:
    base: dict[str, object] = {
        "ride_id": "r1",
        "requested_ms": 1_000,
        "deadline_ms": 61_000,
        "offered_ms": 1_200,
        "matched_ms": 1_500,
        "arrived_ms": 121_500,
        "completed_ms": 421_500,
        "pickup_pred_s": 100.0,
        "trip_pred_s": 330.0,
        "fare": 12.5,
        "surge": 1.2,
    }
    base.update(overrides)
    return RideRecord(**base)  # type: ignore[arg-type]


def test_error_summary_computes_mae_mape_median_and_p95() -> None:
    summary = error_summary([(110, 100), (90, 100), (130, 100), (100, 100), (200, 100)])
    assert summary is not None
    assert summary.n == 5
    assert summary.mae_s == pytest.approx((10 + 10 + 30 + 0 + 100) / 5)
    assert summary.mape == pytest.approx(0.3)
    assert summary.median_abs_s == pytest.approx(10)
    # abs errors sorted 0,10,10,30,100 → rank 3.8 → 30 + 0.8 * 70
    assert summary.p95_abs_s == pytest.approx(86)


def test_error_summary_skips_zero_actuals_for_mape_only() -> None:
    summary = error_summary([(5, 0), (120, 100)])
    assert summary is not None
    assert summary.mae_s == pytest.approx(12.5)
    assert summary.mape == pytest.approx(0.2)
    assert error_summary([(5, 0)]) is not None and error_summary([(5, 0)]).mape is None  # type: ignore[union-attr]
    assert error_summary([]) is None


def test_baseline_is_straight_line_at_constant_speed() -> None:
    a, b = (52.52, 13.40), (52.53, 13.42)
    assert baseline_eta_s(*a, *b) == pytest.approx(haversine_m(*a, *b) / BASELINE_SPEED_MPS)
    assert baseline_eta_s(*a, *a) == 0


def test_improvement_is_the_fraction_the_model_is_below_the_baseline() -> None:
    assert improvement(80, 100) == pytest.approx(0.2)
    assert improvement(120, 100) == pytest.approx(-0.2)
    assert improvement(5, 0) == 0.0


def test_mae_by_minute_buckets_error_by_time_since_start() -> None:
    rows = [(0.2, 110, 100), (0.9, 130, 100), (1.5, 105, 100), (3.1, 100, 100)]
    assert mae_by_minute(rows) == [(0.0, 20.0, 2), (1.0, 5.0, 1), (3.0, 0.0, 1)]
    assert mae_by_minute(rows, bucket_min=2) == [(0.0, 15.0, 3), (2.0, 0.0, 1)]


def test_actual_durations_and_fulfilment_come_from_the_step_times() -> None:
    ride = _ride()
    assert ride.pickup_actual_s == 120
    assert ride.trip_actual_s == 300
    assert ride.fulfilled
    assert not _ride(matched_ms=70_000, arrived_ms=190_000, completed_ms=490_000).fulfilled
    assert _ride(arrived_ms=None, completed_ms=None).fulfilled  # served; the run ended first
    assert not _ride(offered_ms=None, matched_ms=None, arrived_ms=None, completed_ms=None).fulfilled
    assert _ride(arrived_ms=None, completed_ms=None).pickup_actual_s is None
    assert fulfilment_rate([True, False, True, True]) == 0.75
    assert fulfilment_rate([]) is None


def test_consistency_flags_out_of_order_or_missing_steps() -> None:
    assert consistency_errors(_ride()) == []
    assert (
        consistency_errors(
            _ride(offered_ms=None, matched_ms=None, arrived_ms=None, completed_ms=None)
        )
        == []
    )
    assert "matched before offered" in consistency_errors(_ride(matched_ms=1_100))
    assert "arrived without matched" in consistency_errors(_ride(matched_ms=None))
    assert "completed without a fare" in consistency_errors(_ride(fare=None))
    assert "surge below 1.0" in consistency_errors(_ride(surge=0.5))


def test_csv_round_trip_keeps_every_field(tmp_path: Path) -> None:
    rides = [_ride(), _ride(ride_id="r2", arrived_ms=None, completed_ms=None, fare=None)]
    path = tmp_path / "rides.csv"
    write_csv(path, rides)
    assert read_csv(path) == rides
    header = path.read_text().splitlines()[0].split(",")
    assert header[-3:] == ["pickup_actual_s", "trip_actual_s", "fulfilled"]
