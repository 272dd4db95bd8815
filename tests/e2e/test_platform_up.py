"""`ridepulse up` supervises real processes: restarts the dead, leaves no orphan on stop."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import psutil
import pytest
import redis

from ridepulse.redis_client import connect_sync
from tests.support.processes import RIDEPULSE, Platform
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


def test_run_with_unreachable_redis_is_a_one_line_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [RIDEPULSE, "run", "janitor"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "RIDEPULSE_DATA_DIR": str(tmp_path),
            "RIDEPULSE_REDIS_URL": "redis://127.0.0.1:1/0",
        },
    )
    assert result.returncode == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in result.stderr
    assert "Traceback" not in result.stderr


def test_redis_command_prints_a_working_url_and_stops_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [RIDEPULSE, "redis", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("redis://:") and "@127.0.0.1:" in url, url
        client = redis.Redis.from_url(url)
        assert client.ping() is True
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        rewrite = client.config_get("auto-aof-rewrite-*")
        assert rewrite == {
            "auto-aof-rewrite-percentage": "400",
            "auto-aof-rewrite-min-size": str(256 * 1024 * 1024),
        }
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
