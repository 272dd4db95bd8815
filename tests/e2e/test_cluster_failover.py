"""Failover on a real cluster, mid-run: `ridepulse up --cluster` with one replica per primary and
RIDEPULSE_RIDE_REPLICA_ACKS=1; SIGKILL the primary holding the market's slot; a replica is
promoted, the services reconnect by themselves, rides go on, and no ride that got a 202 is lost.
And a node that cannot be restarted leaves the platform serving."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from ridepulse.redis_client import connect_sync
from tests.e2e.conftest import FAST_CLOCKS
from tests.support.api import DOWNTOWN, City, offset
from tests.support.processes import Platform
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e

DRIVERS = 12
OUTAGE_LIMIT_S = 90.0


def _primary_port_of_market(url: str, market: str) -> int:
    client: Any = connect_sync(url)
    try:
        return int(client.get_node_from_key("{" + market + "}").port)
    finally:
        client.close()


def _pid_listening_on(port: int) -> int:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    raise AssertionError(f"nothing listens on {port}")


def _request(city: City, rider: str, key: str) -> tuple[int, str | None, float]:
    """(status, ride id on 202, seconds the answer asks us to wait before retrying)."""
    pickup = offset(DOWNTOWN, 100, 0)
    try:
        response = city.request_ride(rider, pickup, offset(DOWNTOWN, -2500, 0), idempotency_key=key)
    except httpx.HTTPError:  # the API itself may time out while its Redis fails over
        return 0, None, 1.0
    ride_id = response.json().get("ride_id") if response.status_code == 202 else None
    return response.status_code, ride_id, float(response.headers.get("Retry-After", "1"))


def _was_offered(ride: dict[str, Any]) -> bool:
    return any(step["status"] == "offered" for step in ride["timeline"])


def test_killing_the_markets_primary_mid_run_loses_no_acknowledged_ride(tmp_path: Path) -> None:
    env = {**FAST_CLOCKS, "RIDEPULSE_RIDE_REPLICA_ACKS": "1", "RIDEPULSE_RIDE_DEADLINE_S": "120"}
    platform = Platform(
        tmp_path / "city", "--no-sim", "--cluster", "--primaries", "3", "--replicas", "1", env=env
    )
    city: City | None = None
    try:
        platform.wait_up(timeout_s=180)
        city = City(platform)
        city.wait_ready(timeout_s=60)
        for i in range(DRIVERS):
            city.go_available(f"fo-driver-{i}", *offset(DOWNTOWN, 200 + 50 * i, 0))
        acknowledged: list[str] = []
        for i in range(3):
            code, ride_id, _ = _request(city, f"fo-before-{i}", str(uuid.uuid4()))
            assert code == 202 and ride_id, f"before the kill: {code}"
            acknowledged.append(ride_id)

        url = platform.redis_url()
        victim_port = _primary_port_of_market(url, "sf")
        os.kill(_pid_listening_on(victim_port), signal.SIGKILL)
        killed_at = time.monotonic()

        # Riders keep asking; each retries with its own Idempotency-Key until it gets a 202.
        answers: list[int] = []
        after: list[str] = []
        first_202_s: float | None = None
        rider = 0
        key = str(uuid.uuid4())
        while len(after) < 3 and time.monotonic() - killed_at < OUTAGE_LIMIT_S:
            code, ride_id, retry_after_s = _request(city, f"fo-after-{rider}", key)
            answers.append(code)
            if ride_id is not None:
                after.append(ride_id)
                first_202_s = first_202_s or time.monotonic() - killed_at
                rider, key = rider + 1, str(uuid.uuid4())
            else:
                time.sleep(min(retry_after_s, 2.0))  # as a client should: Retry-After
        assert len(after) == 3, f"no ride accepted {OUTAGE_LIMIT_S:.0f} s after the kill: {answers}"
        assert not [a for a in answers if a >= 500 and a != 503], (
            f"during failover the API answered something other than 202 or 503: {answers}"
        )
        print(f"failover: first 202 {first_202_s:.1f} s after SIGKILL; answers {answers}")

        assert _primary_port_of_market(url, "sf") != victim_port, "no replica was promoted"
        for ride_id in acknowledged + after:
            assert city.ride(ride_id)["ride_id"] == ride_id, f"acknowledged ride {ride_id} lost"
        # dispatch goes on: every acknowledged ride, before and after the kill, gets an offer
        wait_until_sync(
            lambda: all(_was_offered(city.ride(r)) for r in acknowledged + after),
            timeout_s=60,
            what="every acknowledged ride to be offered a driver after the failover",
        )
        # the services rode out the failover on their own connections: none died for it
        died = [d["name"] for d in platform.log_events("service.died")]
        assert died == [], f"services died during the failover: {died}"
    finally:
        if city is not None:
            city.close()
        platform.stop()


def _take_port(port: int) -> socket.socket | None:
    """A listening socket on `port` (it accepts and answers nothing), once its node let go."""
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        squatter.bind(("127.0.0.1", port))
    except OSError:
        squatter.close()
        return None
    squatter.listen()
    return squatter


def test_a_node_that_cannot_restart_leaves_the_platform_serving(tmp_path: Path) -> None:
    """A replica SIGKILLed and its port taken by another process: its restart fails ("bind:
    Address already in use"). The launcher's watch loop then hung on a PING to that port (no
    socket timeout: no service was restarted meanwhile), and once the port was let go raised out
    of the loop, stopping every service and every healthy node, though the cluster served
    without the replica. Now the platform serves on, the supervisor keeps restarting services,
    the restart is retried, and the node is back once its port is free."""
    platform = Platform(
        tmp_path / "city",
        "--no-sim",
        "--cluster",
        "--primaries",
        "3",
        "--replicas",
        "1",
        env=FAST_CLOCKS,
    )
    city: City | None = None
    squatter: socket.socket | None = None
    try:
        platform.wait_up(timeout_s=180)
        city = City(platform)
        city.wait_ready(timeout_s=60)
        operator: Any = platform.redis_client()
        port = int(operator.get_replicas()[0].port)
        operator.close()
        os.kill(_pid_listening_on(port), signal.SIGKILL)
        squatter = wait_until_sync(lambda: _take_port(port), what=f"port {port} to take")
        wait_until_sync(
            lambda: platform.log_events("cluster.node_revive_failed") or platform.process.poll(),
            timeout_s=30,
            what="the launcher's failed restart of the node",
        )
        assert platform.process.poll() is None, f"ridepulse up stopped:\n{platform.tail()}"
        failed = platform.log_events("cluster.node_revive_failed")
        assert failed[0]["port"] == port, failed
        # the supervisor watches on meanwhile: a service that dies now is restarted
        eta = platform.service_process("eta")
        assert eta is not None
        eta.send_signal(signal.SIGKILL)
        wait_until_sync(
            lambda: [r for r in platform.log_events("service.restarted") if r["name"] == "eta"],
            timeout_s=30,
            what="eta restarted while the node cannot be",
        )

        city.go_available("squat-driver", *offset(DOWNTOWN, 200, 0))
        key = str(uuid.uuid4())  # a retry after a slow answer is the same ride
        ride_id = wait_until_sync(
            lambda: _request(city, "squat-rider", key)[1],
            timeout_s=30,
            interval_s=0.5,
            what="a 202 for a ride request while the node is down",
        )
        city.wait_ride(
            ride_id, _was_offered, timeout_s=60, what="the ride offered while the node is down"
        )

        squatter.close()
        squatter = None
        revived = wait_until_sync(
            lambda: platform.log_events("cluster.node_revived"),
            timeout_s=90,
            what="the node back once its port is free",
        )
        assert revived[0]["port"] == port, revived
        died = [d["name"] for d in platform.log_events("service.died")]
        assert died == ["eta"], f"services died while the node could not restart: {died}"
    finally:
        if squatter is not None:
            squatter.close()
        if city is not None:
            city.close()
        code = platform.stop()
    assert code == 0, platform.tail()
