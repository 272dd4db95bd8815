"""A stop asked for while a command is still starting ends it there, exit 0 (operations.md):
`ridepulse up --cluster` while its cluster forms, `ridepulse run <service>` while it waits for
Redis. They exited 130 (Python's KeyboardInterrupt) or died by SIGTERM, depending on the
service."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from loadtests.platform import clean_env
from ridepulse.redis_server import free_port
from tests.support.processes import RIDEPULSE, process_gone
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e

# Every service, by SIGINT (a terminal's Ctrl-C); SIGTERM (a supervisor's stop) where it took
# another path: eta's warm-up and ingest's wait had no handler of theirs.
STOPS = [
    (service, signal.SIGINT)
    for service in ("ingest", "dashboard", "eta", "pricing", "matching", "matching-geo", "janitor")
] + [("eta", signal.SIGTERM), ("ingest", signal.SIGTERM)]


@contextlib.contextmanager
def _started(argv: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """The command in its own session (a test signals its group), its output in `log`; killed
    on the way out if still running."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_run_stopped_while_waiting_for_redis_exits_0_for_every_service(tmp_path: Path) -> None:
    """ingest, the dashboard, eta and pricing exited 130 on Ctrl-C while Redis was away (eta
    and pricing's warm-up and the HTTP services' wait had no stop of their own); the consumer
    services exited 0."""
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"
    with contextlib.ExitStack() as stack:
        procs = []
        for n, (service, sig) in enumerate(STOPS):
            log = tmp_path / f"{n}-{service}.log"
            env = clean_env(
                RIDEPULSE_REDIS_URL=nothing_there,
                RIDEPULSE_DATA_DIR=str(tmp_path / str(n)),
                RIDEPULSE_API_PORT=str(free_port()),
                RIDEPULSE_DASHBOARD_PORT=str(free_port()),
                RIDEPULSE_LOG_FORMAT="json",
            )
            procs.append(
                (
                    service,
                    sig,
                    log,
                    stack.enter_context(_started([RIDEPULSE, "run", service], log, env)),
                )
            )
        for service, sig, log, proc in procs:
            # waiting for Redis (it gives up after 15 s: the signal comes well before)
            wait_until_sync(
                _waiting_or_ended(log, proc), timeout_s=12, what=f"{service} to wait for Redis"
            )
            os.killpg(proc.pid, sig)
        for service, sig, log, proc in procs:
            code = proc.wait(timeout=30)
            text = log.read_text()
            assert code == 0, f"{service} on {sig.name} exited {code}:\n{text[-1500:]}"
            assert "service.stopped" in text and "Traceback" not in text, (service, text[-1500:])


def test_up_cluster_stopped_while_forming_exits_0_and_leaves_no_node(tmp_path: Path) -> None:
    """Ctrl-C while `up --cluster` formed its cluster exited 130 with no word: the stop
    handling was installed after the formation."""
    data_dir = tmp_path / "city"
    argv = [
        RIDEPULSE,
        "up",
        "--cluster",
        "--primaries",
        "3",
        "--replicas",
        "0",
        "--no-sim",
        "--data-dir",
        str(data_dir),
        "--api-port",
        str(free_port()),
        "--dashboard-port",
        str(free_port()),
    ]
    with _started(argv, tmp_path / "up.out", clean_env()) as up:
        wait_until_sync(  # the first node is up: the others start, then the cluster forms
            lambda: (data_dir / "cluster" / "node-0" / "port").exists() or up.poll() is not None,
            timeout_s=60,
            interval_s=0.02,
            what="the cluster's first node",
        )
        assert up.poll() is None, "up ended before the test could stop it"
        os.killpg(up.pid, signal.SIGINT)
        code = up.wait(timeout=60)
    text = (tmp_path / "up.out").read_text()
    assert code == 0, f"up exited {code}:\n{text[-1500:]}"
    assert "platform.start_interrupted" in text and "Traceback" not in text, text[-1500:]
    assert "RidePulse is up." not in text, "the stop came too late to test the formation"
    wait_until_sync(
        lambda: not _running_in(data_dir), timeout_s=10, what="no process left in the data dir"
    )


def _waiting_or_ended(log: Path, proc: subprocess.Popen[bytes]) -> Callable[[], bool]:
    return lambda: "redis_unavailable" in log.read_text() or proc.poll() is not None


def _running_in(data_dir: Path) -> list[int]:
    """Processes whose command line names the data dir (the cluster's nodes do)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if str(data_dir) in " ".join(proc.info["cmdline"] or []) and not process_gone(proc):
                found.append(proc.pid)
    return found
