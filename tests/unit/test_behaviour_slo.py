"""The run's verdict: the SLO rule, the ledger of open rides, the rush-hour curve."""

from __future__ import annotations

from loadtests.behaviours.ledger import RideLedger
from loadtests.behaviours.rush import RushHour
from loadtests.behaviours.slo import SloLimits, breaches


def test_slo_passes_a_clean_run_and_lists_every_breach() -> None:
    limits = SloLimits(max_fail_ratio=0.01, max_p95_ms=500)
    assert breaches(fail_ratio=0.0, p95_ms=120, requests=10, stuck_ride_ids=[], limits=limits) == []
    reasons = breaches(
        fail_ratio=0.02, p95_ms=900, requests=10, stuck_ride_ids=["r-1", "r-2"], limits=limits
    )
    assert len(reasons) == 3 and "r-1, r-2" in reasons[2]
    assert breaches(fail_ratio=0.0, p95_ms=0, requests=0, stuck_ride_ids=[], limits=limits)


def test_ledger_tracks_open_rides() -> None:
    ledger = RideLedger()
    ledger.opened("b", "rider-1")
    ledger.opened("a", "rider-2")
    ledger.opened("a", "rider-2")  # an idempotent replay is the same ride
    ledger.closed("b")
    assert ledger.open_ride_ids() == ["a"] and ledger.created == 2


def test_rush_hour_ramps_holds_and_drains() -> None:
    rush = RushHour(base_users=10, peak_users=110, ramp_s=100, peak_s=50, drain_s=100)
    assert rush.users_at(0) == 10 and rush.users_at(50) == 60 and rush.users_at(100) == 110
    assert rush.users_at(149) == 110 and rush.users_at(200) == 60
    assert rush.users_at(250) is None
    assert rush.spawn_rate() >= 1.0
