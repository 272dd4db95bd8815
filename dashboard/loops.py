"""The feed's background loops: a step repeated until stop, surviving Redis outages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from dashboard.metrics import READ_ERRORS
from ridepulse.logs import get_logger

REDIS_ERRORS = (aioredis.ConnectionError, aioredis.TimeoutError)
FIRST_RETRY_S, LAST_RETRY_S = 0.2, 5.0


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))


async def sleep_or_wake(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    """Sleep until `seconds` pass, `stop` is set, or `wake` is set (then cleared for next time)."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    wake.clear()


async def every(
    name: str,
    period_s: float | Callable[[], float],
    step: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    wake: asyncio.Event | None = None,
) -> None:
    """Run `step` every `period_s` (back to back when 0: the blocking stream read) until `stop`;
    `period_s` may be a function, asked after each step, and `wake` cuts a pause short.
    A Redis error is counted, logged and retried after a growing pause; it is never fatal."""
    log = get_logger(component="feed", loop=name)
    pause_s = FIRST_RETRY_S
    while not stop.is_set():
        try:
            await step()
            pause_s = FIRST_RETRY_S
        except REDIS_ERRORS as exc:
            READ_ERRORS.labels(name).inc()
            log.warning("feed.read_failed", error=str(exc))
            await sleep_or_stop(stop, pause_s)
            pause_s = min(pause_s * 2, LAST_RETRY_S)
            continue
        pause = period_s() if callable(period_s) else period_s
        if pause > 0 and wake is not None:
            await sleep_or_wake(stop, wake, pause)
        elif pause > 0:
            await sleep_or_stop(stop, pause)
