"""Runs a consumer service: its runtimes, heartbeat and background tasks, until SIGTERM.

SIGTERM/SIGINT stop reading; each runtime finishes and acknowledges the batch in hand; the
heartbeat key is removed; then the process exits 0."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import redis.asyncio as aioredis
import uvloop
from prometheus_client import start_http_server

from ridepulse.bus.consumer import ConsumerRuntime
from ridepulse.bus.heartbeat import Heartbeat
from ridepulse.gc_tuning import tune_gc
from ridepulse.logs import configure_logging, get_logger
from ridepulse.settings import Settings

BackgroundTask = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def consumer_name(settings: Settings, service: str) -> str:
    """Stable per replica (hostname in a container, the supervisor's name locally), never
    random per start, or the group's consumer table grows without bound (DESIGN §11)."""
    return settings.consumer_name or f"{service}@{socket.gethostname()}"


async def run_service(
    redis: aioredis.Redis,
    settings: Settings,
    *,
    service: str,
    consumer: str,
    runtimes: Sequence[ConsumerRuntime],
    background: Sequence[BackgroundTask] = (),
) -> None:
    log = get_logger(consumer=consumer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host)
    heartbeat = Heartbeat(
        redis,
        prefix=settings.key_prefix,
        service=service,
        consumer=consumer,
        interval_s=settings.heartbeat_interval_s,
        runtimes=runtimes,
    )
    for runtime in runtimes:
        await runtime.ensure_groups()
    await heartbeat.beat()  # the supervisor reads this as "ready"
    log.info("service.started", runtimes=[r.group for r in runtimes])
    tasks = [asyncio.create_task(r.run(), name=f"runtime:{r.group}") for r in runtimes]
    tasks += [asyncio.create_task(b(stop)) for b in background]
    tasks.append(asyncio.create_task(heartbeat.run(stop)))
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    failure = next((t for t in done if t is not waiter and t.exception() is not None), None)
    stop.set()
    for runtime in runtimes:
        runtime.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    await heartbeat.clear()
    log.info("service.stopped")
    if failure is not None:
        raise failure.exception()  # type: ignore[misc]


async def run_consumer_service(
    redis: aioredis.Redis,
    settings: Settings,
    *,
    service: str,
    runtimes: Sequence[ConsumerRuntime],
    background: Sequence[BackgroundTask] = (),
    warm_up: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """The whole life of a consumer service: warm up its state, run until SIGTERM, close."""
    try:
        if warm_up is not None:
            await warm_up()
        await run_service(
            redis,
            settings,
            service=service,
            consumer=runtimes[0].consumer,
            runtimes=runtimes,
            background=background,
        )
    finally:
        await redis.aclose()


def start_service(
    service: str, settings: Settings, serve: Callable[[Settings], Coroutine[Any, Any, None]]
) -> None:
    """Entry point of `ridepulse run <service>`: logging once, then the event loop (uvloop)."""
    configure_logging(service, settings.log_level, settings.log_format)
    tune_gc()
    uvloop.run(serve(settings))
