"""The warm-up curve, pure: each bucket compares both estimators over the same rides."""

from __future__ import annotations

from loadtests.quality.records import RideRecord
from loadtests.quality.warmup import curve, table

START = 1_000_000


def ride(minute: float, model_s: float, base_s: float, actual_s: float) -> RideRecord:
    requested = START + int(minute * 60_000)
    return RideRecord(
        ride_id=f"r{minute}",
        requested_ms=requested,
        deadline_ms=requested + 30_000,
        matched_ms=requested + 1_000,
        arrived_ms=requested + 1_000 + int(actual_s * 1000),
        pickup_pred_s=model_s,
        pickup_base_s=base_s,
    )


def test_buckets_hold_both_estimators_over_the_same_rides() -> None:
    records = [
        ride(0.5, 80, 60, 100),  # early: the model is 20 s off, the baseline 40 s
        ride(1.0, 90, 60, 100),
        ride(2.5, 98, 60, 100),  # later: the model has learned, the baseline has not
        RideRecord("no-baseline", START + 150_000, START + 180_000, pickup_pred_s=5.0),
    ]
    rows = curve(records, START, "pickup")
    assert rows == [(0.0, 2, 15.0, 40.0), (2.0, 1, 2.0, 40.0)]
    rendered = table(rows)
    assert "| 0–2 | 2 | 15.0 | 40.0 | 0.38 |" in rendered
    assert "| 2–4 | 1 | 2.0 | 40.0 | 0.05 |" in rendered
