"""`pytest --cpu-hogs N` (make test-slow-machine): the hogs really burn CPU, and stop after."""

from __future__ import annotations

import time

import psutil

from tests.support.cpu_hogs import running_hogs


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def test_hogs_burn_cpu_while_running_and_are_gone_after() -> None:
    with running_hogs(2) as hogs:
        assert len(hogs) == 2 and all(h.pid is not None for h in hogs)
        pids = [h.pid for h in hogs if h.pid is not None]
        deadline = time.monotonic() + 30
        while min(cpu_seconds(pid) for pid in pids) < 0.3:  # a spawned child needs ~0.1 s to start
            assert time.monotonic() < deadline, "the hogs never got busy"
            time.sleep(0.05)
    assert not any(h.is_alive() for h in hogs)
    assert not any(psutil.pid_exists(pid) for pid in pids)  # joined: reaped, not zombies
