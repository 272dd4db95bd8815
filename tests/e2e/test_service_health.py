"""Every service of a running platform reports itself: `ridepulse status` lists ingest (no
consumer group, but alive and counting the pings it appended) beside the consumer services."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import orjson
import pytest

from tests.support.api import DOWNTOWN, City, offset
from tests.support.processes import RIDEPULSE
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e
SERVICES = {"ingest", "matching", "matching-geo", "eta", "pricing", "janitor"}


def _status(city: City) -> dict[str, Any]:
    env = {**os.environ, "RIDEPULSE_REDIS_URL": city.platform.redis_url()}
    result = subprocess.run(
        [RIDEPULSE, "status", "--json"], capture_output=True, text=True, env=env, timeout=30
    )
    report: dict[str, Any] = orjson.loads(result.stdout)
    return report


def test_status_shows_ingest_alive_with_the_pings_it_appended(shared_city: City) -> None:
    for i in range(3):
        assert shared_city.ping(f"hb{i}", *offset(DOWNTOWN, 100 * i, 0)).status_code == 202

    def ingest_counted() -> dict[str, Any] | None:
        report = _status(shared_city)
        ingest = [s for s in report["services"] if s["service"] == "ingest"]
        return report if ingest and ingest[0]["alive"] and ingest[0]["processed"] >= 3 else None

    report = wait_until_sync(
        ingest_counted, timeout_s=15, what="ingest's heartbeat counting 3 pings"
    )
    assert {s["service"] for s in report["services"] if s["alive"]} >= SERVICES, report["services"]
    assert report["healthy"], report["problems"]


def test_telemetry_only_services_run_niced_below_the_ride_path(shared_city: City) -> None:
    """Rides first, in CPU: `up` starts matching-geo and eta at `telemetry_nice` (10) above
    ingest, matching and pricing, so a CPU short of time runs the ride path first."""
    processes = shared_city.platform.processes_by_service()
    launcher = os.getpriority(os.PRIO_PROCESS, shared_city.platform.process.pid)
    niceness = {name: {p.nice() for p in processes[name]} for name in SERVICES}
    expected = min(launcher + 10, 19)
    assert len(processes["matching-geo"]) == 2, "up runs two matching-geo replicas by default"
    assert niceness["matching-geo"] == niceness["eta"] == {expected}, niceness
    for name in ("ingest", "matching", "pricing"):
        assert niceness[name] == {launcher}, niceness
