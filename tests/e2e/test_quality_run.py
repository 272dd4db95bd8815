"""A tiny quality scenario through a real `ridepulse up`: the ground-truth city drives rides to
completion and every ride comes back with the platform's step times, the API's predicted ETAs,
the baseline and the simulated actuals (loadtests/quality, issue 13)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import uvloop

from loadtests.quality.records import consistency_errors
from loadtests.quality.runner import platform_env, play_stage
from loadtests.quality.scenario import Area, Scenario, steady
from tests.support.processes import Platform

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PLAY_TIMEOUT_S = 420.0

TINY = Scenario(
    "tiny",
    6,
    steady(0.3, 12.0),
    seed=3,
    env={"RIDEPULSE_RIDE_DEADLINE_S": "30"},
    area=Area(radius_m=400.0, outside_core_m=210.7, min_trip_m=150.0, max_trip_m=300.0),
    drain_s=120.0,
)


def test_a_tiny_city_records_rides_with_predicted_and_actual_etas(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "city", "--no-sim", env=platform_env((TINY,)))
    try:
        platform.wait_up(180)
        # bounded: the scenario takes about 2.5 min at most (12 s of demand, a drain of up to
        # 120 s, the collection); a stuck run fails here instead of holding CI to its cap
        (result,) = uvloop.run(asyncio.wait_for(play_stage((TINY,), platform), PLAY_TIMEOUT_S))
        denied = platform.acl_denials()
    finally:
        code = platform.stop(90)
    assert code == 0
    assert not denied, f"services were refused by their Redis users: {denied}"
    assert result.requests >= 2 and result.unanswered == 0
    assert len(result.records) == result.requests
    completed = [r for r in result.records if r.completed_ms is not None]
    assert completed, f"no ride completed: {result.records}"
    for r in result.records:
        assert consistency_errors(r) == [], r
        assert r.trip_pred_s is not None and r.trip_pred_s > 0  # the quote's, at request time
        assert r.trip_base_s is not None and r.trip_base_s > 0
    for r in completed:
        assert r.fulfilled and r.fare is not None and r.fare > 0
        assert r.pickup_pred_s is not None and r.pickup_base_s is not None
        # the sim drove real streets at real speeds: a 150-300 m trip takes seconds, not zero
        assert r.trip_actual_s is not None and 10 < r.trip_actual_s < 200
        assert r.pickup_actual_s is not None and r.pickup_actual_s >= 0
    assert result.utilisation is not None and 0 < result.utilisation <= 1
