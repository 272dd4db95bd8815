"""The shape of the services' background loops: a pass every interval; a Redis error logged and
the pass retried later, backing off while the errors last (a sweep retried four times a second
against a server that is down only floods the log); a stop that ends the wait at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from ridepulse.bus.faults import Backoff, is_transient
from ridepulse.pause import sleep_or_stop

# What a pass may fail with and the loop outlives: the next pass redoes what this one missed.
PASS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)


async def every(
    stop: asyncio.Event,
    interval_s: float,
    one_pass: Callable[[], Awaitable[object]],
    *,
    log: Any,
    failed: str,
    fixed_cadence: bool = False,
) -> None:
    """Run `one_pass` every `interval_s` until `stop`; a failed pass logs `failed` with the
    error and the pause before the next. With `fixed_cadence` the interval runs from each
    pass's start (a batch window), else from its end."""
    backoff = Backoff()
    while not stop.is_set():
        started = time.monotonic()
        try:
            await one_pass()
        except Exception as exc:
            if not (isinstance(exc, PASS_ERRORS) or is_transient(exc)):
                raise
            pause_s = backoff.after_failure_s(interval_s)
            log.warning(failed, error=str(exc), retry_in_s=round(pause_s, 2))
        else:
            backoff.reset()
            pause_s = interval_s - (time.monotonic() - started) if fixed_cadence else interval_s
        await sleep_or_stop(stop, pause_s)
