"""`ridepulse up` supervises real processes: restarts the dead, leaves no orphan on stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import redis

from ridepulse.redis_client import connect_sync
from ridepulse.redis_server import EmbeddedRedis, free_port
from tests.support.processes import ON_CLUSTER, RIDEPULSE, Platform, process_gone
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e


def test_supervisor_restarts_a_killed_service_and_stop_leaves_no_process(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "city", "--no-sim")
    try:
        platform.wait_up()
        assert "RidePulse is up." in platform.text()
        victim = platform.service_process("janitor")
        assert victim is not None, f"janitor not found under {platform.process.pid}"
        tree = {p.pid for p in platform.descendants()}
        victim.send_signal(signal.SIGKILL)
        replacement = wait_until_sync(
            lambda: _replacement(platform, victim.pid), timeout_s=20, what="janitor restarted"
        )
        tree |= {p.pid for p in platform.descendants()}
        client = connect_sync(platform.redis_url())
        # the URL holds the operator's password; the server listens on loopback only
        assert (tmp_path / "city" / "redis.url").stat().st_mode & 0o777 == 0o600
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        _assert_durable_config(client)  # `up`'s server as `ridepulse redis`'s (below)
        wait_until_sync(
            lambda: client.exists("rp:heartbeat:janitor:janitor-1"),
            timeout_s=10,
            what="the restarted janitor's heartbeat",
        )
        client.close()
        assert replacement.is_running()
        assert "service.restarted" in (platform.text())
    finally:
        code = platform.stop()
    assert code == 0, f"ridepulse up exited {code} on SIGTERM:\n{platform.text()[-2000:]}"
    survivors = [
        pid for pid in tree if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    ]
    assert survivors == [], f"processes left behind: {survivors}"
    assert not (tmp_path / "city" / "redis.url").exists()


@pytest.mark.skipif(ON_CLUSTER, reason="the embedded single server's port")
def test_up_starts_its_server_on_the_previous_port_again(tmp_path: Path) -> None:
    """A `ridepulse run` started outside `up` reads <data dir>/redis.url once: `up` moved the
    server to a new port on every start (as `ridepulse redis` once did), stranding it."""
    ports = []
    for _ in range(2):
        platform = Platform(tmp_path / "city", "--no-sim")
        try:
            platform.wait_up()
            ports.append(platform.redis_port())
        finally:
            code = platform.stop()
        assert code == 0, f"ridepulse up exited {code} on SIGTERM:\n{platform.tail()}"
    assert ports[0] == ports[1], f"the second start moved the server: {ports}"


def _assert_durable_config(client: redis.Redis) -> None:
    """AOF on, fsynced every second, rewritten at 5x its size past 256 MB (docs/operations.md)."""
    assert client.config_get("appendonly")["appendonly"] == "yes"
    assert client.config_get("appendfsync")["appendfsync"] == "everysec"
    rewrite = client.config_get("auto-aof-rewrite-*")
    assert rewrite == {
        "auto-aof-rewrite-percentage": "400",
        "auto-aof-rewrite-min-size": str(256 * 1024 * 1024),
    }


def _replacement(platform: Platform, old_pid: int) -> psutil.Process | None:
    proc = platform.service_process("janitor")
    return proc if proc is not None and proc.pid != old_pid else None


def test_run_unknown_service_gives_one_line_error() -> None:
    result = subprocess.run(
        [RIDEPULSE, "run", "teleporter"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert "unknown service 'teleporter'" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_without_redis_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [RIDEPULSE, "run", "janitor"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "RIDEPULSE_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "RIDEPULSE_REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


@dataclass(frozen=True)
class Ended:
    code: int | None
    stderr: str
    after_s: float  # since the three were started

    @property
    def last_line(self) -> str:
        return self.stderr.strip().splitlines()[-1]


def _run_three_services(tmp_path: Path, redis_url: str) -> dict[str, Ended]:
    """`ridepulse run` of a consumer service and the two HTTP services at once against
    `redis_url`, each waited for (60 s at most)."""
    started = time.monotonic()
    procs = {
        service: subprocess.Popen(
            [RIDEPULSE, "run", service],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **_bare_env(),
                "RIDEPULSE_DATA_DIR": str(tmp_path / service),
                "RIDEPULSE_REDIS_URL": redis_url,
                "RIDEPULSE_API_PORT": str(free_port()),
                "RIDEPULSE_DASHBOARD_PORT": str(free_port()),
                "RIDEPULSE_LOG_FORMAT": "json",
            },
        )
        for service in ("janitor", "ingest", "dashboard")
    }
    ended = {}
    try:
        for service, proc in procs.items():
            _, stderr = proc.communicate(timeout=60)
            ended[service] = Ended(proc.returncode, stderr, time.monotonic() - started)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return ended


def test_run_with_unreachable_redis_is_a_one_line_error(tmp_path: Path) -> None:
    """architecture.md: start-up retries for 15 s, then exits 1 with a one-line error. The HTTP
    services (ingest, the dashboard) waited for ever, a warning a second."""
    for service, end in _run_three_services(tmp_path, "redis://127.0.0.1:1/0").items():
        assert end.code == 1, (service, end.stderr[-2000:])
        assert 10 <= end.after_s <= 40, f"{service} gave up after {end.after_s:.0f} s"
        assert end.last_line.startswith("error: cannot reach Redis at redis://127.0.0.1:1/0"), (
            service,
            end.last_line,
        )
        assert "Traceback" not in end.stderr, (service, end.stderr[-2000:])


def test_run_with_a_wrong_password_fails_at_once(tmp_path: Path) -> None:
    """A refused password is not a Redis that is away: waiting cannot fix it, so a service says
    so at once instead of retrying it for its 15 s of start-up patience (the HTTP services
    retried every error, the consumer services every connection error, WRONGPASS among them)."""
    server = EmbeddedRedis(tmp_path / "valkey").start()
    try:
        url = f"redis://ingest:not-its-password@127.0.0.1:{server.port}/0"
        ended = _run_three_services(tmp_path, url)
    finally:
        server.stop()
    for service, end in ended.items():
        assert end.code == 1, (service, end.stderr[-2000:])
        # start-up of three interpreters on a loaded machine, far inside the 15 s
        assert end.after_s < 10, f"{service} gave up after {end.after_s:.0f} s"
        assert end.last_line.startswith("error: cannot reach Redis at redis://***@127.0.0.1:"), (
            service,
            end.last_line,
        )
        assert "password" in end.last_line, (service, end.last_line)
        assert "redis_unavailable" not in end.stderr, (service, end.stderr[-2000:])


def _bare_env() -> dict[str, str]:
    """A minimal environment, keeping PYTHONPATH: the command runs the checkout under test."""
    kept = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    return {"PATH": "/usr/bin:/bin", **kept}


def test_redis_command_prints_a_working_url_and_stops_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [RIDEPULSE, "redis", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=_bare_env(),
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("redis://:") and "@127.0.0.1:" in url, url
        client = redis.Redis.from_url(url)
        assert client.ping() is True
        _assert_durable_config(client)
        assert (tmp_path / "redis.url").read_text().strip() == url
        assert (tmp_path / "redis.url").stat().st_mode & 0o777 == 0o600
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0
    assert not (tmp_path / "redis.url").exists()


def _redis_command(data_dir: Path, out: Path) -> tuple[subprocess.Popen[bytes], psutil.Process]:
    """`ridepulse redis` as a terminal's job (a session of its own), and its server."""
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [RIDEPULSE, "redis", "--data-dir", str(data_dir)],
            stdout=sink,
            env=_bare_env(),
            start_new_session=True,
        )
    wait_until_sync(lambda: out.read_text().startswith("redis://:"), timeout_s=20, what="its URL")
    (server,) = psutil.Process(proc.pid).children()
    return proc, server


@pytest.mark.parametrize("how", ["hangup", "sigkill"])
def test_the_redis_commands_server_goes_with_it_however_it_ends(tmp_path: Path, how: str) -> None:
    """A closed terminal (SIGHUP to the job) stops `ridepulse redis` cleanly; a SIGKILLed one
    takes its server along (the parent-death signal) and frees the data dir for the next. Either
    way no server is left writing the AOF another one is about to open."""
    data_dir = tmp_path / "data"
    proc, server = _redis_command(data_dir, tmp_path / "first.out")
    try:
        if how == "hangup":
            os.killpg(proc.pid, signal.SIGHUP)
            assert proc.wait(20) == 0
            assert not (data_dir / "redis.url").exists()
        else:
            proc.kill()
            proc.wait(20)
        wait_until_sync(lambda: process_gone(server), timeout_s=20, what="the server to stop")
        again, second = _redis_command(data_dir, tmp_path / "second.out")  # the lock is free
        _stop_cleanly(again, second)
    finally:
        for left in (proc, server):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                left.kill()


def _stop_cleanly(command: subprocess.Popen[bytes], server: psutil.Process) -> None:
    """SIGTERM to `ridepulse redis`: it exits 0 and its server goes with it."""
    command.send_signal(signal.SIGTERM)
    assert command.wait(20) == 0
    wait_until_sync(lambda: process_gone(server), timeout_s=20, what="the server to stop")


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def test_the_redis_commands_server_is_restarted_on_its_port_when_it_dies(tmp_path: Path) -> None:
    """README: `ridepulse redis` supervises its server as `up` does. SIGKILLed, the server comes
    back on the same port, password and AOF, so a client holding the printed URL works again
    with its data (the command used to wait on with no server, the data dir still locked). The
    next start of the command takes the same port again when it is free."""
    data_dir = tmp_path / "data"
    proc, server = _redis_command(data_dir, tmp_path / "first.out")
    try:
        url = (tmp_path / "first.out").read_text().splitlines()[0]
        client = redis.Redis.from_url(url)
        client.set("kept", "yes")
        client.waitaof(1, 0, 2000)  # on disk before the kill
        client.close()
        server.kill()
        wait_until_sync(lambda: process_gone(server), timeout_s=20, what="the server to die")
        wait_until_sync(lambda: _answers(url), timeout_s=30, what="the server back on its URL")
        (restarted,) = psutil.Process(proc.pid).children()
        assert restarted.pid != server.pid
        back = redis.Redis.from_url(url)
        assert back.get("kept") == b"yes"
        back.close()
        assert proc.poll() is None, "the command ended with its server"
        _stop_cleanly(proc, restarted)

        again, second = _redis_command(data_dir, tmp_path / "second.out")
        try:
            assert (tmp_path / "second.out").read_text().splitlines()[0] == url
        finally:
            _stop_cleanly(again, second)
    finally:
        for left in (proc, server):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                left.kill()
