"""The pause of every background loop: sleep for a while, but wake at once when asked to stop,
so a SIGTERM never waits out a sweep or tick interval."""

from __future__ import annotations

import asyncio
import contextlib


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Return after `seconds`, or as soon as `stop` is set (at once if it already is)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
