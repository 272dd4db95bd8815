"""Two documented promises about the platform's life cycle, tested on a real `ridepulse up`.

- Ctrl-C with the simulation running (README "Ctrl-C stops everything (no process is left
  behind)"; docs/operations.md: SIGINT "first stop[s] the simulated fleet (so its riders and
  drivers finish their rides), then every service ..., then the server; no process is left
  behind and the ports are free"; docs/reliability.md: "fleet first, then services ..., then
  the server").
- Rotation (docs/security.md "Rotating the signing secret"): a new secret in `<data dir>/secret`
  invalidates every token; deleting `redis/acl.passwords` (service users) or
  `redis/redis.password` (operator) and restarting gives new Redis passwords.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ridepulse.auth import mint_token
from ridepulse.keys import MarketKeys
from ridepulse.redis_server import EmbeddedRedis
from tests.support.processes import ON_CLUSTER, Platform, port_free, process_gone
from tests.support.waiting import wait_until_sync

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(ON_CLUSTER, reason="both promises are about the embedded server"),
]

MARKET = "sf"  # the one market `ridepulse up` runs by default
TERMINAL = frozenset({"completed", "cancelled", "expired"})
WITH_DRIVER = frozenset({"matched", "driver_arrived", "started"})
# `ridepulse up` fixes locust's -u 130; fixed counts per class shrink the fleet to a handful,
# and every driver accepts, at midday, with riders who ask again soon: rides flow in seconds.
SMALL_FLEET = {
    "RIDEPULSE_SIM_DRIVERS": "4",
    "RIDEPULSE_SIM_RIDERS": "3",
    "RIDEPULSE_SIM_ACCEPT_PROBABILITY": "1",
    "RIDEPULSE_SIM_RIDER_THINK_S": "2",
    "RIDEPULSE_SIM_START_HOUR": "12",
}
# the launcher waits up to 25 s for the fleet, 15 s per service, then the server
STOP_WITHIN_S = 90.0


# ---- helpers -------------------------------------------------------------------------------


def _label(proc: psutil.Process) -> str:
    """What the supervisor calls a child: `simulation`, a service's name, or `valkey`."""
    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return f"pid {proc.pid}"
    if any(Path(part).name == "locust" for part in cmd):
        return "simulation"
    if len(cmd) >= 2 and cmd[-2] == "run":
        return str(proc.environ().get("RIDEPULSE_CONSUMER_NAME") or cmd[-1])
    if cmd and "valkey" in Path(cmd[0]).name:
        return "valkey"
    return " ".join(cmd)[:80] or f"pid {proc.pid}"


def _ride_statuses(client: redis.Redis) -> dict[str, str]:
    """Every ride hash of the market → its status (a bounded SCAN: the fleet is small)."""
    keys = MarketKeys(MARKET)
    prefix = keys.ride("")
    statuses: dict[str, str] = {}
    for key in client.scan_iter(match=f"{prefix}*", count=500):
        status: Any = client.hget(key, "status")
        if status is not None:
            statuses[key.decode().removeprefix(prefix)] = status.decode()
    return statuses


def _rides_with_a_driver(client: redis.Redis) -> dict[str, str] | None:
    """The simulated rides that are now matched, at the pickup or under way, if any."""
    busy = {ride: s for ride, s in _ride_statuses(client).items() if s in WITH_DRIVER}
    return busy or None


def _auth_error(port: int, user: str | None, password: str) -> str | None:
    """None when AUTH as `user` succeeds (a PING answers), else the server's error. One
    attempt: redis-py retries a refused AUTH (a ConnectionError) with backoff by default."""
    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        username=user,
        password=password,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
        return None
    except redis.exceptions.AuthenticationError as exc:  # the server's WRONGPASS
        return f"refused: {exc}"
    finally:
        client.close()


def _status_as(platform: Platform, token: str) -> int:
    """An ops read of a ride that does not exist: 401 for a bad token, 404 for a good one."""
    return _status_of(f"{platform.api}/v1/rides/no-such-ride", token)


def _snapshot_status(platform: Platform, link_token: str) -> int:
    """The dashboard's feed read with a link's token: 401 for a bad one, 200 for a good one."""
    return _status_of(f"{platform.dashboard}/api/snapshot", link_token)


def _status_of(url: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(url, headers=headers, timeout=10).status_code


def _banner_link_token(platform: Platform) -> str:
    """The token of the dashboard link the banner printed (`.../?token=<jwt>`)."""
    lines = [line for line in platform.text().splitlines() if "Dashboard:" in line]
    assert len(lines) == 1 and "?token=" in lines[0], lines
    return lines[0].split("?token=", 1)[1].strip()


def _passwords(redis_dir: Path) -> dict[str, str]:
    """The operator's password (as `default`) and every service user's, as stored on disk."""
    lines = (redis_dir / "acl.passwords").read_text().splitlines()
    services = dict(line.split("=", 1) for line in lines if "=" in line)
    return {"default": (redis_dir / "redis.password").read_text().strip(), **services}


# ---- Ctrl-C with the simulation running ----------------------------------------------------


@pytest.mark.parametrize("transport", ["http", "websocket"])
def test_ctrl_c_with_the_simulation_stops_the_fleet_first_and_leaves_no_ride_or_process(
    tmp_path: Path, transport: str
) -> None:
    """With the simulated drivers on HTTP, and on the driver WebSocket
    (RIDEPULSE_SIM_USE_WS=1: pings in, offers out), which nothing else runs."""
    data_dir = tmp_path / "city"
    use_ws = {"RIDEPULSE_SIM_USE_WS": "1"} if transport == "websocket" else {}
    platform = Platform(data_dir, env={**SMALL_FLEET, **use_ws})
    try:
        platform.wait_up()
        assert "simulation: running" in platform.text(), platform.tail()
        operator = platform.redis_client()
        try:
            busy = wait_until_sync(
                lambda: _rides_with_a_driver(operator),
                timeout_s=90,
                interval_s=0.2,
                what="a simulated ride with a driver (matched, arrived or started)",
            )
            before = _ride_statuses(operator)
        finally:
            operator.close()
        tree = platform.descendants()  # every descendant must go; the children are ordered
        labels = {proc.pid: _label(proc) for proc in tree}
        children = [proc for proc in tree if proc.ppid() == platform.process.pid]
        fleet = [proc for proc in children if labels[proc.pid] == "simulation"]
        server = [proc for proc in children if labels[proc.pid] == "valkey"]
        services = [p for p in children if labels[p.pid] not in ("simulation", "valkey")]
        assert len(fleet) == 1 and len(server) == 1 and services, labels
        ports = [platform.api_port, platform.dashboard_port, platform.redis_port()]
    except BaseException:
        platform.stop(timeout_s=STOP_WITHIN_S)
        raise

    os.killpg(platform.process.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends its job
    gone_at: dict[int, float] = {}
    deadline = time.monotonic() + STOP_WITHIN_S
    while time.monotonic() < deadline:
        for proc in tree:
            if proc.pid not in gone_at and process_gone(proc):
                gone_at[proc.pid] = time.monotonic()
        if len(gone_at) == len(tree) and platform.process.poll() is not None:
            break
        time.sleep(0.01)
    try:
        code = platform.process.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        platform.stop(timeout_s=5, sig=signal.SIGKILL)
        raise AssertionError(
            f"ridepulse up still running {STOP_WITHIN_S:.0f}s after Ctrl-C:\n{platform.tail()}"
        ) from None

    # exit 0; no process left behind; the ports free
    assert code == 0, f"ridepulse up exited {code} after Ctrl-C:\n{platform.tail()}"
    left = {proc.pid: labels[proc.pid] for proc in tree if not process_gone(proc)}
    assert left == {}, f"processes left behind after Ctrl-C: {left}"
    busy_ports = [port for port in ports if not port_free(port)]
    assert busy_ports == [], f"ports still held after Ctrl-C: {busy_ports}"

    # the fleet first, then every service, then the server: by the processes' exits ...
    fleet_gone, server_gone = gone_at[fleet[0].pid], gone_at[server[0].pid]
    early = sorted(labels[p.pid] for p in services if gone_at[p.pid] <= fleet_gone)
    assert early == [], f"services exited before (or with) the simulated fleet: {early}"
    late = sorted(labels[p.pid] for p in services if gone_at[p.pid] >= server_gone)
    assert late == [], f"the server exited before services: {late}"
    # ... and by the launcher's own lines
    stopped = [record["name"] for record in platform.log_events("service.stopped")]
    assert stopped and stopped[0] == "simulation", f"stop order in the launcher's log: {stopped}"
    assert stopped[-1] == "valkey", f"stop order in the launcher's log: {stopped}"
    killed = platform.log_events("service.killed")
    assert killed == [], f"the launcher had to SIGKILL children that did not drain: {killed}"

    if transport == "websocket":  # the drivers did ping over their sockets (locust's summary)
        summary = (data_dir / "logs" / "simulation.log").read_text()
        assert re.search(r"^WS\s+ping\s+[1-9]", summary, re.MULTILINE), summary[-3000:]

    # "so its riders and drivers finish their rides": no ride the fleet made is left open. The
    # server is read back from its own data dir (its AOF), as the next `ridepulse up` would.
    after_stop = EmbeddedRedis(data_dir / "redis").start()
    try:
        reader = redis.Redis.from_url(after_stop.url)
        try:
            after = _ride_statuses(reader)
            active = reader.zrange(MarketKeys(MARKET).active_rides, 0, -1)
        finally:
            reader.close()
    finally:
        after_stop.stop()
    assert set(busy) <= set(after), f"rides seen before the stop are missing: {busy}, {after}"
    open_rides = {ride: status for ride, status in after.items() if status not in TERMINAL}
    assert open_rides == {} and active == [], (
        f"rides left open after Ctrl-C: {open_rides}, still active: {active}; "
        f"with a driver at Ctrl-C: {busy}; all before: {before}"
    )


# ---- rotation: a new signing secret, new Redis passwords -----------------------------------


def test_a_new_secret_and_deleted_password_files_rotate_tokens_and_redis_passwords(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "city"
    redis_dir = data_dir / "redis"
    first = Platform(data_dir, "--no-sim")
    try:
        first.wait_up()
        old_secret = first.secret
        old_passwords = _passwords(redis_dir)
        old_port = first.redis_port()
        old_token = mint_token(old_secret, "ops", "rotation")
        assert _status_as(first, old_token) == 404, "a token of the first secret was refused"
        old_link = _banner_link_token(first)
        assert _snapshot_status(first, old_link) == 200, "the banner's dashboard link failed"
        assert _auth_error(old_port, "eta", old_passwords["eta"]) is None
    finally:
        code = first.stop(timeout_s=STOP_WITHIN_S)
    assert code == 0, f"the first ridepulse up exited {code}:\n{first.tail()}"

    # the doc's steps: stop (done), a new secret in <data dir>/secret at 0600, delete both
    # password files, start again on the same data dir
    new_secret = "rotated-" + os.urandom(24).hex()
    (data_dir / "secret").write_text(new_secret + "\n")
    os.chmod(data_dir / "secret", 0o600)
    (redis_dir / "acl.passwords").unlink()
    (redis_dir / "redis.password").unlink()

    second = Platform(data_dir, "--no-sim")
    try:
        second.wait_up()
        denied = second.acl_denials()  # before this test's own failed AUTHs below
        assert denied == [], f"services were refused by the rotated server: {denied}"
        new_passwords = _passwords(redis_dir)
        assert set(new_passwords) == set(old_passwords), (old_passwords, new_passwords)
        same = sorted(user for user in new_passwords if new_passwords[user] == old_passwords[user])
        assert same == [], f"passwords not rotated after deleting their files: {same}"
        port = second.redis_port()
        still_open = sorted(
            user
            for user, password in old_passwords.items()
            if not _auth_error(port, user, password)
        )
        assert still_open == [], f"old passwords the restarted server accepts: {still_open}"
        refused_new = {
            user: error
            for user, password in new_passwords.items()
            if (error := _auth_error(port, user, password)) is not None
        }
        assert refused_new == {}, f"new passwords the server refuses: {refused_new}"
        # the URL the launcher writes for operators carries the new operator password
        expected_url = f"redis://:{new_passwords['default']}@127.0.0.1:{port}/0"
        assert second.redis_url() == expected_url, "redis.url kept an old password"

        assert second.secret == new_secret
        assert _status_as(second, old_token) == 401, "a token of the old secret was accepted"
        new_token = mint_token(new_secret, "ops", "rotation")
        assert _status_as(second, new_token) == 404, "a token of the new secret was refused"
        # "dashboard links and sessions" too: the old banner's link is refused, the new one works
        assert _snapshot_status(second, old_link) == 401, "an old dashboard link was accepted"
        assert _snapshot_status(second, _banner_link_token(second)) == 200
    finally:
        code = second.stop(timeout_s=STOP_WITHIN_S)
    assert code == 0, f"the restarted ridepulse up exited {code}:\n{second.tail()}"
