"""CPU pinning on a 2-core machine: the process under test gets core 1 to itself, the load
generator and Valkey share core 0. "Per worker" then means per core, and the server under test
never competes with its own load generator (other users of the machine still can)."""

from __future__ import annotations

import contextlib
import os
import shutil
import time

import psutil

SERVER_CORES = [1]
LOAD_CORES = [0]


def can_pin() -> bool:
    # the machine's count, not this process's current affinity: restoring must work once pinned
    return hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2


def pin(pid: int, cores: list[int]) -> None:
    """Pin a process and its current descendants; a no-op where pinning is not possible."""
    if not can_pin():
        return
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            proc.cpu_affinity(cores)


def pin_profiled(profiler_pid: int, timeout_s: float = 5.0) -> None:
    """py-spy on the load core, the process it profiles on the server core (it appears shortly
    after py-spy starts; until then it would inherit py-spy's core)."""
    if not can_pin():
        return
    pin(profiler_pid, LOAD_CORES)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            children = psutil.Process(profiler_pid).children(recursive=True)
        except psutil.Error:
            return
        if children:
            for child in children:
                pin(child.pid, SERVER_CORES)
            return
        time.sleep(0.02)


def taskset(argv: list[str], cores: list[int]) -> list[str]:
    """argv prefixed to run on `cores` (for short-lived tools like wrk)."""
    if not can_pin() or shutil.which("taskset") is None:
        return argv
    return ["taskset", "-c", ",".join(map(str, cores)), *argv]


def all_cores() -> list[int]:
    return list(range(os.cpu_count() or 1))
