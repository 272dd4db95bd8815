"""A service's background loops never end unseen. Each runs under one restart policy: a Redis
blip that ends it starts it again after a backoff; any other error ends it (a bug). A consumer
service then stops, for the supervisor to see; an HTTP service keeps answering and names the loop
in `Background.stopped`, for its /readyz to answer 503 with the reason (ingest's heartbeat loop
once ended for good while /readyz said 200)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from ridepulse.bus.faults import Backoff, is_transient
from ridepulse.logs import get_logger
from ridepulse.pause import sleep_or_stop

BackgroundTask = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


async def restarting(task: BackgroundTask, stop: asyncio.Event, name: str = "") -> None:
    """A background loop that a Redis blip ended is started again after a backoff; any other
    error still ends it (a bug the supervisor should see). `name` is the function's unless
    given."""
    backoff = Backoff()
    name = name or str(
        getattr(task, "__name__", None) or getattr(getattr(task, "func", None), "__name__", "")
    )
    while not stop.is_set():
        try:
            await task(stop)
            return
        except Exception as exc:
            if not is_transient(exc):
                raise
            pause_s = backoff.next_s()
            get_logger().warning(
                "service.background_restarted", task=name, error=str(exc), retry_in_s=pause_s
            )
            await sleep_or_stop(stop, pause_s)


class Background:
    """The named loops of an HTTP service, each `restarting`, until `close`."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.stopped: dict[str, str] = {}  # loop → why it ended before `close`

    def start(self, name: str, loop: BackgroundTask) -> None:
        task = asyncio.create_task(restarting(loop, self.stop, name), name=name)
        task.add_done_callback(partial(self._ended, name))
        self.tasks[name] = task

    def _ended(self, name: str, task: asyncio.Task[None]) -> None:
        if self.stop.is_set() or task.cancelled():
            return  # stopped on purpose
        exc = task.exception()
        self.stopped[name] = f"{type(exc).__name__}: {exc}" if exc else "returned"
        get_logger().error("service.background_stopped", task=name, error=self.stopped[name])

    async def close(self) -> None:
        self.stop.set()
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
