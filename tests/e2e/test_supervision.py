"""`ridepulse up` supervises the embedded server like every service, stops in order, and leaves
nothing behind on a hangup (issue 9.6)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import start_city
from tests.support.api import DOWNTOWN, offset
from tests.support.processes import ON_CLUSTER, Platform, port_free, process_gone
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e
embedded_only = pytest.mark.skipif(ON_CLUSTER, reason="the cluster is not the embedded server")


def _answered(call: Any, ok: tuple[int, ...], what: str, timeout_s: float = 60) -> httpx.Response:
    """Retry a call while the platform recovers (connection errors, 5xx) until it answers."""

    def attempt() -> httpx.Response | None:
        try:
            response: httpx.Response = call()
        except httpx.HTTPError:
            return None
        return response if response.status_code in ok else None

    return wait_until_sync(attempt, timeout_s=timeout_s, interval_s=0.2, what=what)


@embedded_only
def test_killed_valkey_restarts_on_its_port_and_rides_survive(tmp_path: Path) -> None:
    platform, city = start_city(tmp_path / "city")
    try:
        rider_a = city.request_ride("rider-a", DOWNTOWN, offset(DOWNTOWN, 1500, 0))
        assert rider_a.status_code == 202, rider_a.text
        ride_a = rider_a.json()["ride_id"]
        port = platform.redis_port()
        old = platform.service_process("valkey")
        assert old is not None
        old.send_signal(signal.SIGKILL)
        new = wait_until_sync(
            lambda: (p := platform.service_process("valkey")) and p.pid != old.pid and p,
            timeout_s=20,
            what="a new valkey process",
        )
        assert str(port) in " ".join(new.cmdline())  # argv, or the title valkey sets later
        assert platform.redis_port() == port
        read = _answered(
            lambda: city.http.get(f"/v1/rides/{ride_a}", headers=city.token("ops", "t")),
            (200,),
            "the ride requested before the kill",
        )
        assert read.json()["ride_id"] == ride_a
        driver, where = "driver-after-kill", offset(DOWNTOWN, 100, 0)
        _answered(lambda: city.ping(driver, *where), (202,), "a ping after the kill")
        _answered(
            lambda: city.http.put(
                f"/v1/drivers/{driver}/status",
                json={"status": "available"},
                headers=city.token("driver", driver),
            ),
            (200,),
            "the driver going available",
        )
        ride_b = _answered(
            lambda: city.request_ride(
                "rider-b", DOWNTOWN, offset(DOWNTOWN, 0, 1500), idempotency_key="after-kill"
            ),
            (202,),
            "a ride request after the kill",
        ).json()["ride_id"]
        city.wait_ride(
            ride_b,
            lambda r: r["status"] in ("offered", "matched"),
            timeout_s=60,
            what="the new ride offered to the driver",
        )
        # The services ride out the server's restart on their own connections (issue 9.5):
        # none of them died and was restarted for it; only the server itself did.
        died = {d["name"] for d in platform.log_events("service.died")}
        assert "valkey" in died  # the log is read: the server's own death is in it
        assert died == {"valkey"}, f"services died with the server: {sorted(died)}"
    finally:
        city.close()
        code = platform.stop()
    assert code == 0, platform.tail()


def test_hangup_stops_everything_and_frees_the_ports(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "city", "--no-sim")
    platform.wait_up()
    tree = platform.descendants()
    ports = [platform.api_port, platform.dashboard_port]
    if not ON_CLUSTER:
        ports.append(platform.redis_port())
    os.killpg(platform.process.pid, signal.SIGHUP)  # what a closed terminal sends its job
    code = platform.process.wait(60)
    assert code == 0, platform.tail()
    left = [p.pid for p in tree if not process_gone(p)]
    assert left == [], f"processes left behind after SIGHUP: {left}"
    busy = [port for port in ports if not port_free(port)]
    assert busy == [], f"ports still held after SIGHUP: {busy}"
    log = (tmp_path / "city" / "logs" / "supervisor.log").read_text()
    assert "supervisor.stopped" in log, log[-2000:]


def test_ctrl_c_stops_every_service_before_the_server(tmp_path: Path) -> None:
    """The terminal's Ctrl-C reaches the whole job; only the launcher may act on it, stopping
    the services before the server they drain into (each node of `--cluster` too: a node that
    took the Ctrl-C itself left every service logging refused connections as it stopped)."""
    platform = Platform(tmp_path / "city", "--no-sim")
    platform.wait_up()
    procs = platform.processes()
    servers = {name: procs.pop(name) for name in list(procs) if name.startswith("valkey")}
    assert servers, "no server found"
    assert procs, "no service found"
    os.killpg(platform.process.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the group
    everything = {**procs, **servers}
    gone_at: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while len(gone_at) < len(everything) and time.monotonic() < deadline:
        for name, proc in everything.items():
            if name not in gone_at and process_gone(proc):
                gone_at[name] = time.monotonic()
        time.sleep(0.01)
    assert platform.process.wait(30) == 0, platform.tail()
    assert len(gone_at) == len(everything), f"still running: {set(everything) - set(gone_at)}"
    first_server_gone = min(gone_at[name] for name in servers)
    late = [name for name in procs if gone_at[name] >= first_server_gone]
    assert late == [], f"a server stopped before {late}: {gone_at}"


def test_a_service_killed_after_ready_restarts_at_once(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "city", "--no-sim")
    try:
        platform.wait_up()
        victim = platform.service_process("pricing")
        assert victim is not None
        killed_at = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        wait_until_sync(
            lambda: (p := platform.service_process("pricing")) and p.pid != victim.pid,
            timeout_s=10,
            interval_s=0.02,
            what="a new pricing process",
        )
        took_s = time.monotonic() - killed_at
        deaths = wait_until_sync(
            lambda: [d for d in platform.log_events("service.died") if d["name"] == "pricing"],
            timeout_s=10,
            what="the supervisor's service.died line",
        )
        assert deaths[0]["was_ready"] is True and deaths[0]["restart_in_s"] == 0.0, deaths
        assert took_s < 2.0, f"pricing came back {took_s:.2f}s after SIGKILL (want ~1 s)"
    finally:
        code = platform.stop()
    assert code == 0, platform.tail()


def test_children_stop_when_the_launcher_itself_is_killed(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "city", "--no-sim")
    platform.wait_up()
    tree = platform.descendants()
    platform.process.kill()  # no handler runs: the kernel's parent-death signal must do it
    platform.process.wait(10)
    wait_until_sync(
        lambda: all(process_gone(p) for p in tree),
        timeout_s=60,
        what=f"every child to exit after the launcher's SIGKILL: {[p.pid for p in tree]}",
    )
