"""Background loops back off while Redis is down (architecture.md: 0.1 s doubling to 5 s) and
return to their interval after a pass that succeeds. The matching sweeper retried every 0.25 s
against a server that was down, a warning each time (139 in 35 s from one process).

Each loop runs against a scripted step (fails N times, succeeds, fails again) with its pauses
recorded instead of slept: a pure unit test, no server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

import eta.speeds
import matching.batcher
import matching.sweeper
import pricing.publisher
from ridepulse import janitor, periodic
from ridepulse.bus import heartbeat

FAILURES_BEFORE = 9  # enough for the backoff to pass any of these loops' intervals


class ScriptedStep:
    """Fails FAILURES_BEFORE times, succeeds once, then fails once more."""

    def __init__(self, success: Any) -> None:
        self.calls = 0
        self.success = success

    async def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.calls == FAILURES_BEFORE + 1:
            return self.success
        raise RedisConnectionError("Connection refused")


Loop = Callable[[asyncio.Event], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    module: Any  # where the loop finds sleep_or_stop (ridepulse.periodic for most)
    run: Loop
    interval_s: float
    leading: int = 0  # pauses before the first pass (the eta persister sleeps first)


def record_pauses(monkeypatch: pytest.MonkeyPatch, case: Case, stop: asyncio.Event) -> list[float]:
    """Replace the module's sleep_or_stop: note the pause, and stop after the scripted passes."""
    pauses: list[float] = []

    async def noted(event: asyncio.Event, seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == case.leading + FAILURES_BEFORE + 2:
            stop.set()
        await asyncio.sleep(0)

    monkeypatch.setattr(case.module, "sleep_or_stop", noted)
    return pauses


def sweeper(monkeypatch: pytest.MonkeyPatch) -> Case:
    monkeypatch.setattr(matching.sweeper, "sweep_once", ScriptedStep({"expired": 0}))
    deps: Any = SimpleNamespace()
    return Case(periodic, partial(matching.sweeper.run_sweeper, deps), 0.25)


def batcher(monkeypatch: pytest.MonkeyPatch) -> Case:
    monkeypatch.setattr(matching.batcher, "batch_once", ScriptedStep({"waiting": 0}))
    deps: Any = SimpleNamespace(settings=SimpleNamespace(match_batch_window_s=0.5))
    return Case(periodic, partial(matching.batcher.run_batcher, deps), 0.5)


def janitor_loop(monkeypatch: pytest.MonkeyPatch) -> Case:
    return Case(periodic, janitor._every(1.0, "drivers_swept", ScriptedStep({})), 1.0)


def heartbeat_loop(monkeypatch: pytest.MonkeyPatch) -> Case:
    client: Any = None
    beat = heartbeat.Heartbeat(client, prefix="t", service="s", consumer="c", interval_s=2.0)
    monkeypatch.setattr(beat, "beat", ScriptedStep({}))
    return Case(periodic, beat.run, 2.0)


def surge_publisher(monkeypatch: pytest.MonkeyPatch) -> Case:
    monkeypatch.setattr(pricing.publisher, "publish_surge", ScriptedStep({}))
    deps: Any = SimpleNamespace(
        markets={"sf": None},
        owns=lambda market: True,
        settings=SimpleNamespace(surge_interval_s=2.0),
    )
    return Case(pricing.publisher, partial(pricing.publisher.run_publisher, deps), 2.0)


def speed_persister(monkeypatch: pytest.MonkeyPatch) -> Case:
    monkeypatch.setattr(eta.speeds, "persist_speeds", ScriptedStep(0))
    deps: Any = SimpleNamespace()
    return Case(eta.speeds, partial(eta.speeds.run_persister, deps), 2.0, leading=1)


@pytest.mark.parametrize(
    "loop", [sweeper, batcher, janitor_loop, heartbeat_loop, surge_publisher, speed_persister]
)
async def test_a_background_loop_backs_off_while_redis_is_down_and_resets_after_a_pass(
    monkeypatch: pytest.MonkeyPatch, loop: Callable[[pytest.MonkeyPatch], Case]
) -> None:
    case = loop(monkeypatch)
    stop = asyncio.Event()
    pauses = record_pauses(monkeypatch, case, stop)
    await asyncio.wait_for(case.run(stop), 5)

    passes = pauses[case.leading :]
    failing, after_success, failing_again = (
        passes[:FAILURES_BEFORE],
        passes[FAILURES_BEFORE],
        passes[FAILURES_BEFORE + 1],
    )
    interval_s = case.interval_s
    assert failing[0] == interval_s, passes  # a first failure: the interval, as before
    assert all(interval_s <= p <= max(interval_s, 5.0) for p in failing), passes
    assert failing[-1] >= 2.5, f"no backoff: {passes}"  # the 5 s cap, jittered down to half
    assert after_success <= interval_s, passes  # the interval again (the batcher: what is left)
    assert failing_again == interval_s, f"the backoff was not reset: {passes}"
