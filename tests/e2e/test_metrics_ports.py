"""RIDEPULSE_METRICS_PORT under `ridepulse up`: each consumer process serves /metrics on a port
of its own (docs/operations.md); a port that cannot be served is one line, never a traceback."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from ridepulse.cli_checks import cannot_listen
from ridepulse.redis_server import EmbeddedRedis, free_port
from tests.support.processes import RIDEPULSE, Platform

pytestmark = pytest.mark.e2e

# the consumer processes of `up --no-sim` by default, in launch order (docs/operations.md)
CONSUMERS = ("matching", "matching-geo-1", "matching-geo-2", "eta", "pricing", "janitor")


_TRIES = random.Random(7)  # seeded; one sequence, so each test of the module gets its own run


def _free_run(length: int) -> int:
    """The first of `length` consecutive ports nothing listens on, below the kernel's ephemeral
    range: `free_port()` (the API's and dashboard's ports) is drawn from that range, and one of
    its ports inside the run made `up` refuse the run for the wrong reason (a CI failure)."""
    low, _high = (
        int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    )
    for _ in range(50):
        base = _TRIES.randrange(10_000, low - length)
        if all(cannot_listen("127.0.0.1", port) is None for port in range(base, base + length)):
            return base
    raise AssertionError(f"no {length} free consecutive ports found in 50 tries")


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _listening_ports(platform: Platform, service: str) -> set[int]:
    return {
        conn.laddr.port
        for proc in platform.service_processes(service)
        for conn in proc.net_connections(kind="tcp")
        if conn.status == "LISTEN"
    }


def test_up_gives_every_consumer_process_its_own_metrics_port(tmp_path: Path) -> None:
    """Every consumer child used to be given the same port: all but the first failed to bind,
    and `up` exited 1 after 5 s with `Address already in use`."""
    base = _free_run(len(CONSUMERS))
    platform = Platform(tmp_path / "city", "--no-sim", env={"RIDEPULSE_METRICS_PORT": str(base)})
    try:
        platform.wait_up(timeout_s=90)
        for offset, child in enumerate(CONSUMERS):
            text = _metrics(base + offset)
            assert "rp_events_processed_total" in text, (child, text[:500])
        expected = {
            "matching": {base},
            "matching-geo": {base + 1, base + 2},
            "eta": {base + 3},
            "pricing": {base + 4},
            "janitor": {base + 5},
        }
        for service, ports in expected.items():
            assert _listening_ports(platform, service) == ports, service
    finally:
        code = platform.stop()
    assert code == 0, platform.tail()


def test_up_refuses_a_busy_metrics_port_before_anything_starts(tmp_path: Path) -> None:
    base = _free_run(len(CONSUMERS))
    ports = ["--api-port", str(free_port()), "--dashboard-port", str(free_port())]
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        other.bind(("127.0.0.1", base + 3))
        other.listen()
        result = subprocess.run(
            [RIDEPULSE, "up", "--no-sim", "--data-dir", str(tmp_path), *ports],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(RIDEPULSE_METRICS_PORT=str(base)),
        )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr == (
        f"error: cannot serve /metrics of eta on 127.0.0.1:{base + 3} "
        f"(RIDEPULSE_METRICS_PORT={base} and up): the port is in use by another program\n"
    )
    assert not (tmp_path / "redis.url").exists()


def test_run_with_a_busy_metrics_port_is_one_line(tmp_path: Path) -> None:
    """`ridepulse run matching` printed a 163-line traceback from prometheus_client."""
    server = EmbeddedRedis(tmp_path / "valkey").start()
    try:
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            busy = other.getsockname()[1]
            result = subprocess.run(
                [RIDEPULSE, "run", "matching"],
                capture_output=True,
                text=True,
                timeout=60,
                env=_env(
                    RIDEPULSE_REDIS_URL=server.url,
                    RIDEPULSE_DATA_DIR=str(tmp_path / "data"),
                    RIDEPULSE_METRICS_PORT=str(busy),
                    RIDEPULSE_LOG_FORMAT="json",
                ),
            )
    finally:
        server.stop()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot serve /metrics on 127.0.0.1:{busy} (RIDEPULSE_METRICS_PORT): "
        "Address already in use"
    )


def _env(**extra: str) -> dict[str, str]:
    kept = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    return {"PATH": "/usr/bin:/bin", **kept, **extra}
