"""Starts, watches and stops the platform's processes, the embedded server included.

Each child runs in its own session (process group), so a stop reaches its whole tree and a
terminal's Ctrl-C or hangup reaches only the launcher, which then stops the children in order.
Children start and stop by tier: the server (tier 0) first up and last down, then the services,
then the simulated fleet (first down, so it can finish its rides against a running API).
A child that had become ready and then died is restarted at once; one that dies before it is
ready (a crash loop) waits a backoff that doubles on every such death."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ridepulse.logs import get_logger

ReadyProbe = Callable[[int], bool]  # given the child's pid: is this process ready?
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
READY_WITHOUT_PROBE_S = 5.0  # a child without a probe counts as ready once up this long
PROBE_EVERY_S = 0.3  # how often a started child's readiness is checked until it is ready
TIER_SERVER, TIER_SERVICE, TIER_LOAD = 0, 1, 2
_PR_SET_PDEATHSIG = 1


def last_log_line(path: Path | None) -> str:
    """The line a dying service wrote last (its error, as a rule), so the start failure says
    why without a trip to a log file that a test's temporary directory may not keep."""
    if path is None or not path.exists():
        return "no log"
    with path.open("rb") as log:
        log.seek(max(0, log.seek(0, 2) - 4096))
        lines = log.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:500] if lines else "empty log"


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready: ReadyProbe | None = None
    log_path: Path | None = None
    tier: int = TIER_SERVICE
    stop_timeout_s: float = 15.0
    nice: int = 0  # added to the launcher's niceness: >0 runs it after its siblings on a busy CPU
    # Why it exited, for the start failure and `service.died`: the log's last line unless given
    # (Valkey writes its own log, which says more: the AOF it could not load and its repair).
    why_exited: Callable[[], str] | None = None

    def exit_reason(self) -> str:
        return self.why_exited() if self.why_exited else last_log_line(self.log_path)


@dataclass
class Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready: bool = False
    probed_at: float = 0.0
    restarts: int = 0  # deaths before ready in a row: the backoff exponent
    next_start_at: float = 0.0
    log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the launcher itself dies (even SIGKILLed),
    so no service or server outlives `ridepulse up` holding its ports."""
    # not Linux: the stop path still reaps every child
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _prepare_child(nice: int) -> None:
    """Runs in the child before exec (only system calls: no lock is taken): die with the
    launcher, and lower its own priority by `nice` so the scheduler runs it after its siblings
    when the CPU is short (telemetry after rides, DESIGN: rides first)."""
    die_with_parent()
    if nice > 0:
        with contextlib.suppress(OSError):
            os.nice(nice)


class StartInterrupted(Exception):
    """A stop was asked for before every child was ready."""


class SpawnFailed(RuntimeError):
    """A child's program could not be started at all (its executable gone, not executable)."""


class Supervisor:
    def __init__(self, specs: list[ChildSpec]) -> None:
        self.children = {s.name: Child(s) for s in specs}
        self.log = get_logger(component="supervisor")
        self._stopping = False

    def tiers(self) -> list[list[Child]]:
        levels = sorted({c.spec.tier for c in self.children.values()})
        return [[c for c in self.children.values() if c.spec.tier == t] for t in levels]

    # ---- starting --------------------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        spec = child.spec
        if spec.log_path is not None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            if child.log_file is None:
                child.log_file = spec.log_path.open("ab")
        out = child.log_file if child.log_file is not None else subprocess.DEVNULL
        try:
            child.process = subprocess.Popen(
                spec.argv,
                env={**os.environ, **spec.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=functools.partial(_prepare_child, spec.nice),
            )
        except OSError as exc:
            # named as what it is: left an OSError, `up` blamed the data dir ("cannot write")
            raise SpawnFailed(
                f"cannot start service {spec.name}: {spec.argv[0]}: {exc.strerror or exc}"
            ) from exc
        child.started_at = time.monotonic()
        child.ready = False
        self.log.info("service.spawned", name=spec.name, pid=child.process.pid)

    def _check_ready(self, child: Child) -> bool:
        """Whether the current process of `child` is ready; remembered once true."""
        if child.ready:
            return True
        if not child.alive() or child.pid is None:
            return False
        now = time.monotonic()
        if child.spec.ready is None:
            child.ready = now - child.started_at >= READY_WITHOUT_PROBE_S
        elif now - child.probed_at >= PROBE_EVERY_S:
            child.probed_at = now
            child.ready = _safe_probe(child.spec.ready, child.pid)
        if child.ready:
            child.restarts = 0
            self.log.info("service.ready", name=child.spec.name, pid=child.pid)
        return child.ready

    def start_all(
        self, ready_timeout_s: float = 60.0, should_stop: Callable[[], bool] = lambda: False
    ) -> None:
        """Start each tier and wait until its children report ready (or fail with a name).
        A stop asked for meanwhile (Ctrl-C) ends the start with StartInterrupted: it used to
        wait for every service to be ready first, up to the timeout for one that hung."""
        for tier in self.tiers():
            for child in tier:
                if should_stop():
                    raise StartInterrupted
                self._spawn(child)
            deadline = time.monotonic() + ready_timeout_s
            waiting = [c for c in tier if c.spec.ready is not None]
            while waiting:
                if should_stop():
                    raise StartInterrupted
                for child in list(waiting):
                    if not child.alive():
                        raise RuntimeError(
                            f"service {child.spec.name} exited during start: "
                            f"{child.spec.exit_reason()} (see {child.spec.log_path})"
                        )
                    if self._check_ready(child):
                        waiting.remove(child)
                if time.monotonic() > deadline:
                    names = ", ".join(sorted(c.spec.name for c in waiting))
                    raise RuntimeError(f"not ready after {ready_timeout_s:.0f}s: {names}")
                time.sleep(0.05)

    # ---- watching --------------------------------------------------------------------
    def poll_once(self) -> None:
        """Restart children that died: at once if they had been ready, else after a backoff."""
        now = time.monotonic()
        for child in self.children.values():
            if self._stopping:
                return
            if child.alive():
                self._check_ready(child)
                continue
            if child.next_start_at == 0.0:
                self._schedule_restart(child, now)
            if now >= child.next_start_at:
                child.next_start_at = 0.0
                try:
                    self._spawn(child)
                except SpawnFailed as exc:
                    # tried again after the crash-loop backoff: the program may come back (a
                    # venv being rebuilt), and the other services keep running meanwhile
                    child.ready = False
                    self._schedule_restart(child, now, str(exc))
                    continue
                self.log.info("service.restarted", name=child.spec.name, pid=child.pid)

    def _schedule_restart(self, child: Child, now: float, spawn_failed: str = "") -> None:
        """The next start's time, logged: `service.died` with how the process ended, or
        `service.spawn_failed` with why no process started (nothing ran: no exit code)."""
        if child.ready:
            backoff = 0.0  # it worked until something killed it: bring it back now
        else:
            backoff = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**child.restarts)
            child.restarts += 1
        child.next_start_at = now + backoff
        if spawn_failed:
            self.log.warning(
                "service.spawn_failed",
                name=child.spec.name,
                restart_in_s=backoff,
                reason=spawn_failed,
            )
            return
        code = child.process.returncode if child.process else None
        # a child that exited by itself said why; a killed one's log ends with older news
        why = {"reason": child.spec.exit_reason()} if code is not None and code > 0 else {}
        self.log.warning(
            "service.died",
            name=child.spec.name,
            exit_code=code,
            was_ready=child.ready,
            uptime_s=round(now - child.started_at, 2),
            restart_in_s=backoff,
            **why,
        )

    def watch(self, should_stop: Callable[[], bool], interval_s: float = 0.1) -> None:
        while not should_stop():
            self.poll_once()
            time.sleep(interval_s)

    # ---- stopping --------------------------------------------------------------------
    def stop_all(self) -> None:
        """Stop tier by tier, last started first: SIGTERM the tier's process groups, wait for
        them to drain, SIGKILL stragglers; only then the next tier (the server comes last)."""
        self._stopping = True
        for tier in reversed(self.tiers()):
            running = [c for c in tier if c.alive()]
            for child in running:
                assert child.process is not None
                _signal_group(child.process.pid, signal.SIGTERM)
                # a stopped child (SIGSTOP, a debugger) acts on the SIGTERM only once continued;
                # left stopped it would sit out the timeout and be killed without draining
                _signal_group(child.process.pid, signal.SIGCONT)
            for child in tier:
                self._reap(child)
        self.log.info("supervisor.stopped")

    def _reap(self, child: Child) -> None:
        if child.process is not None:
            try:
                child.process.wait(child.spec.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.log.warning("service.killed", name=child.spec.name, pid=child.pid)
                _signal_group(child.process.pid, signal.SIGKILL)
                child.process.wait()
            _signal_group(child.process.pid, signal.SIGKILL)  # grandchildren left behind
            self.log.info("service.stopped", name=child.spec.name, pid=child.pid)
        if child.log_file is not None:
            child.log_file.close()
            child.log_file = None


def _safe_probe(probe: ReadyProbe, pid: int) -> bool:
    try:
        return probe(pid)
    except Exception:  # a probe that cannot reach its target means "not ready yet"
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
