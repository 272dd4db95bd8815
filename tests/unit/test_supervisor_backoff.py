"""The supervisor's restart policy with tiny real processes: at once after ready, doubling
backoff only for a crash loop."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ridepulse.supervisor import (
    BACKOFF_MAX_S,
    ChildSpec,
    SpawnFailed,
    StartInterrupted,
    Supervisor,
)


def _delays(supervisor: Supervisor, name: str, deaths: int) -> list[float]:
    """Run the watch loop until `name` died `deaths` times; the backoff chosen after each."""
    child = supervisor.children[name]
    seen: list[float] = []
    deadline = time.monotonic() + 30
    while len(seen) < deaths and time.monotonic() < deadline:
        before = child.next_start_at
        supervisor.poll_once()
        if child.next_start_at and child.next_start_at != before:
            seen.append(round(child.next_start_at - time.monotonic(), 1))
        time.sleep(0.01)
    return seen


def test_a_crash_loop_backs_off_doubling() -> None:
    # no probe: start_all does not wait for it, and it dies long before it would count as ready
    spec = ChildSpec("crasher", [sys.executable, "-c", "raise SystemExit(3)"], {})
    supervisor = Supervisor([spec])
    try:
        supervisor.start_all()
        assert _delays(supervisor, "crasher", 3) == [0.5, 1.0, 2.0]
        # six deaths in: 0.5 × 2⁶ would be 32 s; the wait is capped at 30 s (docs/operations.md)
        supervisor.children["crasher"].restarts = 6
        assert _delays(supervisor, "crasher", 1) == [BACKOFF_MAX_S] == [30.0]
    finally:
        supervisor.stop_all()


def test_a_child_killed_after_ready_is_restarted_at_once() -> None:
    spec = ChildSpec(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], {}, lambda pid: True
    )
    supervisor = Supervisor([spec])
    try:
        supervisor.start_all()
        child = supervisor.children["sleeper"]
        first = child.pid
        assert child.process is not None
        child.process.kill()
        child.process.wait()
        supervisor.poll_once()
        assert child.pid != first and child.alive(), "not respawned in the same poll"
    finally:
        supervisor.stop_all()


def test_a_child_spec_with_nice_runs_at_a_lower_priority_than_the_launcher() -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    ready = lambda pid: True  # noqa: E731
    supervisor = Supervisor(
        [ChildSpec("plain", sleeper, {}, ready), ChildSpec("telemetry", sleeper, {}, ready, nice=5)]
    )
    base = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        supervisor.start_all()
        plain, telemetry = supervisor.children["plain"].pid, supervisor.children["telemetry"].pid
        assert plain is not None and telemetry is not None
        assert os.getpriority(os.PRIO_PROCESS, plain) == base
        assert os.getpriority(os.PRIO_PROCESS, telemetry) == min(base + 5, 19)
    finally:
        supervisor.stop_all()


def test_a_service_dying_during_start_names_its_last_log_line(tmp_path: Path) -> None:
    code = "import sys; print('starting'); print('OSError: address already in use'); sys.exit(1)"
    spec = ChildSpec(
        "dier",
        [sys.executable, "-c", code],
        {},
        lambda pid: False,
        log_path=tmp_path / "dier.log",
    )
    supervisor = Supervisor([spec])
    try:
        with pytest.raises(RuntimeError, match="dier exited during start: OSError: address"):
            supervisor.start_all(ready_timeout_s=20)
    finally:
        supervisor.stop_all()


def test_a_stop_asked_for_during_start_ends_the_wait_for_a_child_that_never_gets_ready() -> None:
    """Ctrl-C while `ridepulse up` starts: it waited for every service to be ready first, the
    whole 60 s timeout for one that hung."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    spec = ChildSpec("hung", sleeper, {}, lambda pid: False)
    supervisor = Supervisor([spec])
    asked_at = time.monotonic() + 0.5
    try:
        started = time.monotonic()
        with pytest.raises(StartInterrupted):
            supervisor.start_all(
                ready_timeout_s=60, should_stop=lambda: time.monotonic() > asked_at
            )
        assert time.monotonic() - started < 30, "waited for the ready timeout"
    finally:
        supervisor.stop_all()
    child = supervisor.children["hung"]
    assert child.process is not None and child.process.returncode == -signal.SIGTERM


def test_a_stopped_child_is_continued_to_act_on_its_sigterm() -> None:
    """A child stopped by SIGSTOP (or a debugger) would sit out its stop timeout and be killed
    (-9) without draining; continued, it ends on the SIGTERM (-15)."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor = Supervisor([ChildSpec("frozen", sleeper, {}, lambda pid: True)])
    supervisor.start_all()
    child = supervisor.children["frozen"]
    assert child.process is not None
    child.process.send_signal(signal.SIGSTOP)
    supervisor.stop_all()
    assert child.process.returncode == -signal.SIGTERM


def test_a_program_that_cannot_start_is_named_not_taken_for_a_disk_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "gone" / "ridepulse")
    supervisor = Supervisor([ChildSpec("ingest", [missing, "run", "ingest"], {})])
    try:
        with pytest.raises(SpawnFailed) as failed:
            supervisor.start_all()
        # a RuntimeError (the launcher's start failure), not the OSError `up` read as a full disk
        assert not isinstance(failed.value, OSError)
        assert str(failed.value) == (
            f"cannot start service ingest: {missing}: No such file or directory"
        )
    finally:
        supervisor.stop_all()


def test_a_respawn_that_cannot_start_is_tried_again_and_the_others_keep_running(
    tmp_path: Path,
) -> None:
    program = [sys.executable, "-c", "import time; time.sleep(60)"]
    vanishing = ChildSpec("vanishing", list(program), {}, lambda pid: True)
    other = ChildSpec("other", list(program), {}, lambda pid: True)
    supervisor = Supervisor([vanishing, other])
    try:
        supervisor.start_all()
        child, bystander = supervisor.children["vanishing"], supervisor.children["other"]
        vanishing.argv[0] = str(tmp_path / "rebuilt-venv" / "python")  # the venv went away
        assert child.process is not None
        child.process.kill()
        child.process.wait()
        supervisor.poll_once()  # the respawn fails: no exception out of the watch loop
        assert not child.alive() and child.next_start_at > time.monotonic()
        assert bystander.alive()
        vanishing.argv[0] = sys.executable  # the program is back
        deadline = time.monotonic() + 10
        while not child.alive() and time.monotonic() < deadline:
            supervisor.poll_once()
            time.sleep(0.05)
        assert child.alive(), "not started again once its program was back"
    finally:
        supervisor.stop_all()
