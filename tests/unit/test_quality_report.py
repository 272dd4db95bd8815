"""Record assembly from the API's ride answer, and the page rendered from a small run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests.quality.city import Prediction, first_offers, record_from_ride
from loadtests.quality.metrics import service_summary
from loadtests.quality.records import RideRecord, write_csv
from loadtests.quality.report import render_page
from ridepulse.contracts.envelope import Envelope

T0 = 1_800_000_000_000


def _ride_json(**over: object) -> dict[str, object]:
    ride: dict[str, object] = {
        "ride_id": "sf-1",
        "deadline_at": T0 + 30_000,
        "fare": 12.5,
        "surge": 1.2,
        "timeline": [
            {"status": "requested", "at": T0},
            {"status": "offered", "at": T0 + 300},
            {"status": "offered", "at": T0 + 9_000},  # a second offer: the first one counts
            {"status": "matched", "at": T0 + 9_500},
            {"status": "driver_arrived", "at": T0 + 69_500},
            {"status": "started", "at": T0 + 70_000},
            {"status": "completed", "at": T0 + 159_500},
        ],
    }
    ride.update(over)
    return ride


def test_a_record_takes_step_times_from_the_timeline_and_predictions_from_the_sim() -> None:
    seen = Prediction(trip_pred_s=80, trip_base_s=60, pickup_pred_s=55, pickup_base_s=40)
    r = record_from_ride(_ride_json(), seen)
    assert (r.requested_ms, r.offered_ms, r.matched_ms) == (T0, T0 + 300, T0 + 9_500)
    assert r.pickup_actual_s == 60 and r.trip_actual_s == 90
    assert (r.pickup_pred_s, r.pickup_base_s, r.trip_pred_s, r.trip_base_s) == (55, 40, 80, 60)
    assert r.fare == 12.5 and r.surge == 1.2 and r.fulfilled


def test_an_unfinished_ride_has_no_fare_and_an_expired_one_is_not_fulfilled() -> None:
    timeline = [{"status": "requested", "at": T0}, {"status": "expired", "at": T0 + 30_000}]
    expired = record_from_ride(_ride_json(timeline=timeline), None)
    assert expired.matched_ms is None and not expired.fulfilled and expired.fare is None
    with pytest.raises(ValueError, match="no requested step"):
        record_from_ride(_ride_json(timeline=[]), None)


def _entry(seq: int, event_type: str, ride_id: str, at: int) -> tuple[bytes, dict[bytes, bytes]]:
    """One rides-stream entry as XRANGE answers it (bytes), in the envelope the scripts write."""
    data = {"ride_id": ride_id, "driver_id": "d1", "version": seq}
    envelope = Envelope(event_type, f"ride/{ride_id}", data, "matching", time=at)
    return f"{at}-{seq}".encode(), envelope.to_fields()


def test_request_to_offered_counts_a_rides_first_offer_even_when_none_was_taken() -> None:
    """A ride whose offers all timed out is back at `requested` with `offered_at` cleared, and a
    ride matched on its third offer shows only that one in its timeline: the rides stream
    keeps every `ride.offered`, and the first is the one request → offered measures."""
    stream = [
        _entry(1, "ride.requested", "sf-1", T0),
        _entry(2, "ride.requested", "sf-2", T0 + 1_000),
        _entry(3, "ride.offered", "sf-1", T0 + 24_000),
        _entry(4, "ride.offered", "sf-2", T0 + 25_000),
        _entry(5, "ride.unmatched", "sf-1", T0 + 34_000),
        _entry(6, "ride.offered", "sf-1", T0 + 34_100),
        _entry(7, "ride.offered", "sf-2", T0 + 35_000),
        _entry(8, "ride.offered", "sf-1", T0 + 44_200),
        _entry(9, "ride.matched", "sf-2", T0 + 36_000),
        _entry(10, "ride.expired", "sf-1", T0 + 54_000),
    ]
    offered = first_offers(stream)
    assert offered == {"sf-1": T0 + 24_000, "sf-2": T0 + 25_000}
    never_taken = _ride_json(
        ride_id="sf-1",
        timeline=[{"status": "requested", "at": T0}, {"status": "expired", "at": T0 + 54_000}],
    )
    on_the_second = _ride_json(
        ride_id="sf-2",
        timeline=[
            {"status": "requested", "at": T0 + 1_000},
            {"status": "offered", "at": T0 + 35_000},  # the offer on its current path
            {"status": "matched", "at": T0 + 36_000},
        ],
    )
    expired = record_from_ride(never_taken, None, offered.get("sf-1"))
    matched = record_from_ride(on_the_second, None, offered.get("sf-2"))
    assert expired.offered_ms == T0 + 24_000 and not expired.fulfilled
    assert matched.offered_ms == T0 + 25_000 and matched.matched_ms == T0 + 36_000
    summary = service_summary([expired, matched])
    assert summary.offered_p50_ms == 24_000.0  # both offered, after 24 s each
    assert summary.offered_p99_ms == 24_000.0


def _rec(i: int, pickup_s: float, offered_ms: int, *, matched: bool = True) -> RideRecord:
    start = T0 + i * 10_000
    m = start + offered_ms + 500
    return RideRecord(
        ride_id=f"r{i}",
        requested_ms=start,
        deadline_ms=start + 30_000,
        offered_ms=start + offered_ms if matched else None,
        matched_ms=m if matched else None,
        arrived_ms=int(m + pickup_s * 1000) if matched else None,
        completed_ms=int(m + pickup_s * 1000 + 100_000) if matched else None,
        pickup_pred_s=pickup_s + 5 if matched else None,
        pickup_base_s=pickup_s - 20 if matched else None,
        trip_pred_s=90.0,  # 10 s off the 100 s truth
        trip_base_s=70.0,  # 30 s off
        fare=10.0 if matched else None,
        surge=1.0,
    )


def _write_run(out: Path) -> None:
    facts = {}
    for name, recs in {
        "steady": [_rec(i, 40, 200) for i in range(6)],
        "sweep-busy-w0": [_rec(i, 60, 100) for i in range(4)] + [_rec(9, 0, 0, matched=False)],
        "sweep-busy-w1": [_rec(i, 45, 700) for i in range(5)],
        "sweep-quiet-w0": [_rec(i, 30, 50) for i in range(3)],
    }.items():
        write_csv(out / f"{name}.csv", recs)
        window = name.rsplit("-w", 1)[1] if "-w" in name else "0"
        facts[name] = {
            "drivers": 5, "seed": 1, "market": "sf", "hour": 13.0,
            "env": {"RIDEPULSE_MATCH_BATCH_WINDOW_S": window}, "demand": [[0, 1], [10, 1]],
            "requests": len(recs), "declined_for_price": 0, "unanswered": 0,
            "rides": len(recs), "utilisation": 0.5, "platform_started_ms": T0,
            "started_ms": T0, "wall_s": 60.0, "load_avg_1m": 3.0,
        }  # fmt: skip
    (out / "runs.json").write_text(json.dumps(facts))


def test_the_page_renders_tables_verdicts_and_plots_and_keeps_hand_prose(tmp_path: Path) -> None:
    out, page = tmp_path / "runs", tmp_path / "docs" / "dispatch-quality.md"
    out.mkdir()
    page.parent.mkdir()
    _write_run(out)
    page.write_text("<!-- hand:eta -->\nThe model wins.\n<!-- /hand -->\n")
    render_page(out, page, ("0", "0.5", "1"))
    text = page.read_text()
    # trip: model MAE 10 s, baseline 30 s -> 67 % lower, the 20 % goal met
    assert "| steady | trip | RidePulse | 6 | 10.0 |" in text
    assert "| steady | trip | baseline | 6 | 30.0 |" in text
    assert "met: 67 % below the baseline" in text
    # the cold model (the baseline x the 1.3 detour factor: 91 s, 9 s off) is a row and the
    # verdict says what learning adds over it: here nothing (10 s off against 9 s)
    assert "| steady | trip | cold model | 6 | 9.0 |" in text
    assert "(MAE at least 20 % below the straight-line baseline, steady, 6 trips)" in text
    assert "The cold model alone (RidePulse's before it has learned any speed) is 70 %" in text
    assert "learned speeds leave the MAE 11 % higher than the cold model's." in text
    # sweep: window 1 cuts mean pickup 60 -> 45 s (25 %) and raises fulfilment 80 -> 100 %,
    # but its p99 request->offered (700 ms) is within 1 s + 100 ms: goal met at 1 s
    assert "| busy | 1 | 5 | 45.0 |" in text
    assert "best window meeting it: 1 s" in text
    assert "The model wins." in text  # hand prose carried over
    assert "<!-- hand:batching -->" in text  # an unwritten block is marked, not dropped
    assert (page.parent / "img" / "quality-eta-warmup.png").stat().st_size > 1000
    assert (page.parent / "img" / "quality-sweep.png").stat().st_size > 1000


def test_service_summary_counts_fulfilment_and_offer_latency() -> None:
    recs = [_rec(i, 60, 100) for i in range(4)] + [_rec(9, 0, 0, matched=False)]
    s = service_summary(recs)
    assert s.rides == 5 and s.fulfilment == pytest.approx(0.8)
    assert s.mean_pickup_s == pytest.approx(60) and s.offered_p50_ms == pytest.approx(100)
