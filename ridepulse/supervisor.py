"""Starts, watches and stops service processes.

Each child runs in its own session (process group) so a stop reaches its whole tree; a child
that dies is restarted with exponential backoff; stop sends SIGTERM, waits, then SIGKILLs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ridepulse.logs import get_logger

ReadyProbe = Callable[[], bool]
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 30.0  # a child up this long resets its backoff
DRAIN_FIRST_TIMEOUT_S = 25.0


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready: ReadyProbe | None = None
    log_path: Path | None = None
    drain_first: bool = False


@dataclass
class Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start_at: float = 0.0
    log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(self, specs: list[ChildSpec]) -> None:
        self.children = {s.name: Child(s) for s in specs}
        self.log = get_logger(component="supervisor")
        self._stopping = False

    # ---- starting --------------------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        spec = child.spec
        if spec.log_path is not None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            if child.log_file is None:
                child.log_file = spec.log_path.open("ab")
        out = child.log_file if child.log_file is not None else None
        child.process = subprocess.Popen(
            spec.argv,
            env={**os.environ, **spec.env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
        child.started_at = time.monotonic()
        self.log.info("service.spawned", name=spec.name, pid=child.process.pid)

    def start_all(self, ready_timeout_s: float = 60.0) -> None:
        """Start every child, then wait until each reports ready (or fail with its name)."""
        for child in self.children.values():
            self._spawn(child)
        deadline = time.monotonic() + ready_timeout_s
        waiting = {n for n, c in self.children.items() if c.spec.ready is not None}
        while waiting:
            for name in sorted(waiting):
                child = self.children[name]
                if not child.alive():
                    raise RuntimeError(
                        f"service {name} exited during start; see {child.spec.log_path}"
                    )
                assert child.spec.ready is not None
                if child.spec.ready():
                    waiting.discard(name)
                    self.log.info("service.ready", name=name, pid=child.pid)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"not ready after {ready_timeout_s:.0f}s: {', '.join(sorted(waiting))}"
                )
            time.sleep(0.1)

    # ---- watching --------------------------------------------------------------------
    def poll_once(self) -> None:
        """Restart children that died, each after its backoff."""
        now = time.monotonic()
        for child in self.children.values():
            if self._stopping or child.alive():
                continue
            if child.next_start_at == 0.0:
                code = child.process.returncode if child.process else None
                uptime = now - child.started_at
                if uptime > STABLE_AFTER_S:
                    child.restarts = 0
                backoff = min(BACKOFF_MAX_S, 0.5 * 2**child.restarts)
                child.next_start_at = now + backoff
                self.log.warning(
                    "service.died",
                    name=child.spec.name,
                    exit_code=code,
                    restart_in_s=backoff,
                    restarts=child.restarts,
                )
            elif now >= child.next_start_at:
                child.restarts += 1
                child.next_start_at = 0.0
                self._spawn(child)
                self.log.info("service.restarted", name=child.spec.name, pid=child.pid)

    def watch(self, should_stop: Callable[[], bool], interval_s: float = 0.2) -> None:
        while not should_stop():
            self.poll_once()
            time.sleep(interval_s)

    # ---- stopping --------------------------------------------------------------------
    def stop_all(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every child's process group, wait for them to drain, SIGKILL stragglers.

        Children marked `drain_first` (the simulated fleet) stop before the services, so they
        can finish their users' rides against a still-running API."""
        self._stopping = True
        first = [c for c in self.children.values() if c.spec.drain_first and c.alive()]
        for child in first:
            assert child.process is not None
            _signal_group(child.process.pid, signal.SIGTERM)
        for child in first:
            assert child.process is not None
            try:
                child.process.wait(DRAIN_FIRST_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _signal_group(child.process.pid, signal.SIGKILL)
        for child in reversed(list(self.children.values())):
            if child.alive() and child.process is not None:
                _signal_group(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in self.children.values():
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log.warning("service.killed", name=child.spec.name, pid=child.pid)
                _signal_group(child.process.pid, signal.SIGKILL)
                child.process.wait()
            _signal_group(child.process.pid, signal.SIGKILL)  # grandchildren left behind
            if child.log_file is not None:
                child.log_file.close()
        self.log.info("supervisor.stopped")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
