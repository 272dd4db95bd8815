"""Following a ride from the rider's side: metrics from the timeline, and when to cancel."""

from __future__ import annotations

from loadtests.behaviours.rider import RideWatch, parse_instant_ms, timeline_ms


def test_timeline_instants_parse_from_ms_seconds_and_rfc3339() -> None:
    assert parse_instant_ms(1_800_000_000_000) == 1_800_000_000_000
    assert parse_instant_ms(1_800_000_000.5) == 1_800_000_000_500
    assert parse_instant_ms("2027-01-15T08:00:00Z") == 1_800_000_000_000
    assert parse_instant_ms("2027-01-15T09:00:00+01:00") == 1_800_000_000_000
    assert parse_instant_ms("not a time") is None and parse_instant_ms(None) is None


def test_ride_watch_reports_match_pickup_and_outcome_once_from_the_timeline() -> None:
    t0 = 1_800_000_000_000  # server instants in epoch ms; the rider's own clock is ignored
    watch = RideWatch("r1", requested_ms=t0 - 500)
    timeline = [{"status": "requested", "at": t0}]
    assert watch.observe({"status": "requested", "timeline": timeline}, now_ms=t0 + 1_000) == []
    timeline.append({"status": "matched", "at": t0 + 4_000})
    metrics = watch.observe({"status": "matched", "timeline": timeline}, now_ms=t0 + 5_000)
    assert [(m.name, m.ms) for m in metrics] == [("time_to_match", 4_000)]
    timeline += [
        {"status": "driver_arrived", "at": t0 + 60_000},
        {"status": "completed", "at": t0 + 80_000},
    ]
    metrics = watch.observe({"status": "completed", "timeline": timeline}, now_ms=t0 + 85_000)
    assert [(m.name, m.ms) for m in metrics] == [
        ("pickup_wait", 60_000),
        ("outcome:completed", 80_000),
    ]
    assert watch.terminal
    assert watch.observe({"status": "completed", "timeline": timeline}, t0 + 90_000) == []
    assert timeline_ms({"timeline": timeline}, "started") is None


def test_ride_watch_falls_back_to_observation_time_without_a_timeline() -> None:
    watch = RideWatch("r2", requested_ms=1_800_000_001_000)
    metrics = watch.observe({"status": "started"}, now_ms=1_800_000_009_000)
    assert [(m.name, m.ms) for m in metrics] == [("time_to_match", 8_000), ("pickup_wait", 8_000)]


def test_a_rider_cancels_only_after_its_patience_and_before_pickup() -> None:
    watch = RideWatch("r3", requested_ms=0, cancel_at_ms=30_000)
    assert not watch.should_cancel(10_000)
    assert watch.should_cancel(30_000)
    watch.observe({"status": "started"}, now_ms=31_000)
    assert not watch.should_cancel(40_000)
    assert not RideWatch("r4", requested_ms=0).should_cancel(10**9)
