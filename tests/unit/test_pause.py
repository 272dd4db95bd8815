"""Every background loop pauses with sleep_or_stop: a stop request cuts the pause short."""

from __future__ import annotations

import asyncio
import time

from ridepulse.pause import sleep_or_stop


async def test_the_pause_lasts_its_seconds_when_nobody_stops() -> None:
    started = time.monotonic()
    await sleep_or_stop(asyncio.Event(), 0.05)
    assert time.monotonic() - started >= 0.045


async def test_a_stop_during_the_pause_wakes_the_loop_at_once() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    await asyncio.wait_for(sleep_or_stop(stop, 60), timeout=30)
    assert stop.is_set() and time.monotonic() - started < 30


async def test_a_set_stop_or_a_negative_pause_returns_at_once() -> None:
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(sleep_or_stop(stop, 60), timeout=5)
    await asyncio.wait_for(sleep_or_stop(asyncio.Event(), -1), timeout=5)
