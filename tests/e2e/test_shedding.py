"""Telemetry is shed (429 + Retry-After) when matching's geo index trails it by seconds; a lag
of a group dispatch does not depend on (eta) sheds nothing; ride requests are never shed."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from ingest.admission import CEILING, EARLY
from ridepulse.redis_client import connect_sync
from ridepulse.settings import Settings
from ridepulse.status import collect_status
from tests.e2e.conftest import start_city
from tests.support.api import DOWNTOWN, City, offset
from tests.support.processes import Platform
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e

SHED_LAG_S = 1.0
_PING_COUNTER = itertools.count()
TELEMETRY = "rp:{sf}:telemetry"


def group_lag_s(client: redis.Redis, group: str) -> float:
    """Age of the oldest telemetry entry `group` has not been delivered, by the server's clock."""
    info = next(g for g in client.xinfo_groups(TELEMETRY) if g["name"] == group.encode())
    unread = client.xrange(TELEMETRY, min=b"(" + info["last-delivered-id"], count=1)
    if not unread:
        return 0.0
    seconds, micros = client.time()
    entry_id = unread[0][0]
    assert isinstance(entry_id, bytes), entry_id
    return seconds + micros / 1e6 - int(entry_id.split(b"-")[0]) / 1000


def ping_until(
    city: City, accept: Callable[[httpx.Response], bool], timeout_s: float
) -> httpx.Response:
    """Ping from a few drivers until a reply satisfies `accept`; the last reply either way."""
    deadline = time.monotonic() + timeout_s
    while True:
        n = next(_PING_COUNTER)
        response = city.ping(f"d-shed-{n % 4}", *offset(DOWNTOWN, n % 50, 0))
        if accept(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def metric(platform: Platform, sample: str) -> float | None:
    """A sample of ingest's Prometheus metrics, by its name and labels as exposed."""
    metrics = httpx.get(f"{platform.api}/metrics", timeout=5).text
    for line in metrics.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def status_problems(client: redis.Redis) -> list[str]:
    return collect_status(client, ["sf"], Settings().key_prefix).problems


def admitted_share(platform: Platform) -> float | None:
    """Ingest's share of telemetry let in, from its Prometheus gauge."""
    return metric(platform, "rp_ingest_telemetry_admitted_ratio")


def test_pings_are_shed_on_matching_lag_in_seconds_not_on_eta_lag(tmp_path: Path) -> None:
    platform, city = start_city(tmp_path / "city", RIDEPULSE_TELEMETRY_SHED_LAG_S=str(SHED_LAG_S))
    client = connect_sync(platform.redis_url())
    try:
        # eta's telemetry group falls seconds behind: matching still has every ping, so no 429
        with platform.paused("eta"):
            ping_until(city, lambda r: group_lag_s(client, "eta.speeds") > SHED_LAG_S, 20)
            assert group_lag_s(client, "eta.speeds") > SHED_LAG_S, "eta's group never fell behind"
            # over more than two periods of ingest's lag check, with eta still behind: all 202
            window_end = time.monotonic() + 3 * Settings().telemetry_shed_check_s
            while time.monotonic() < window_end:
                reply = ping_until(city, lambda r: True, timeout_s=0)
                assert reply.status_code == 202, f"an eta lag shed pings: {reply.text}"
                time.sleep(0.1)  # pacing: four drivers stay under their 5 pings/s
            assert group_lag_s(client, "eta.speeds") > SHED_LAG_S

        # matching's geo group falls behind: pings get 429 with Retry-After; rides still 202
        with platform.paused("matching-geo"):  # every replica
            reply = ping_until(city, lambda r: r.status_code == 429, timeout_s=20)
            assert reply.status_code == 429, f"expected shedding, got {reply.status_code}"
            assert reply.json()["error"] == "overloaded"
            assert int(reply.headers["Retry-After"]) >= 1
            # a share is shed from EARLY thresholds on, if the lag is rising (ingest.admission)
            assert group_lag_s(client, "matching.geo") > EARLY * SHED_LAG_S
            # a stopped consumer: once it trails by the ceiling, every ping is shed
            wait_until_sync(
                lambda: admitted_share(platform) == 0.0,
                timeout_s=20,
                what=f"ingest to shed every ping past {CEILING:g}x the threshold",
            )
            assert group_lag_s(client, "matching.geo") > CEILING * SHED_LAG_S
            replies = [ping_until(city, lambda r: True, timeout_s=0) for _ in range(5)]
            assert [r.status_code for r in replies] == [429] * 5, [r.text for r in replies]
            # ingest's shedding is in-process: its heartbeat carries it to `ridepulse status`
            wait_until_sync(
                lambda: any(
                    "sheds telemetry: lets in 0% of pings" in p for p in status_problems(client)
                ),
                timeout_s=10,
                what="ridepulse status to name ingest's shedding (by its next heartbeat)",
            )
            # what docs/operations.md tells an operator to look at for a 429 on pings
            lag = metric(
                platform,
                f'rp_ingest_dispatch_lag_seconds{{group="matching.geo",stream="{TELEMETRY}"}}',
            )
            assert lag is not None and lag > CEILING * SHED_LAG_S, lag
            shed = metric(platform, "rp_telemetry_requests_shed_total")
            assert shed is not None and shed >= 5, shed
            ride = city.request_ride("r-shed", DOWNTOWN, offset(DOWNTOWN, -1500, 0))
            assert ride.status_code == 202, ride.text
        reply = ping_until(city, lambda r: r.status_code == 202, timeout_s=20)
        assert reply.status_code == 202, (
            f"shedding should stop once matching caught up: {reply.text}"
        )
        wait_until_sync(
            lambda: not any("sheds telemetry" in p for p in status_problems(client)),
            timeout_s=30,
            what="ridepulse status to stop naming ingest's shedding once it let every ping in",
        )
    finally:
        client.close()
        city.close()
        platform.stop()
