"""Runs a consumer service: its runtimes, heartbeat and background tasks, until SIGTERM.

SIGTERM/SIGINT stop reading; each runtime finishes and acknowledges the batch in hand; the
heartbeat key is removed; then the process exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import redis.asyncio as aioredis
import uvloop
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from ridepulse.background import BackgroundTask, restarting
from ridepulse.bus.consumer import ConsumerRuntime
from ridepulse.bus.faults import Backoff, is_transient, refused_credentials
from ridepulse.bus.heartbeat import Heartbeat
from ridepulse.errors import CannotStart
from ridepulse.gc_tuning import tune_gc
from ridepulse.logs import configure_logging, get_logger
from ridepulse.pause import sleep_or_stop
from ridepulse.settings import Settings


def consumer_name(settings: Settings, service: str) -> str:
    """The configured name (the supervisor gives each replica a stable one), else one unique to
    this process: two processes sharing a consumer would ack each other's work. Names of dead
    processes are removed by the runtime once they hold nothing (DESIGN §11)."""
    return settings.consumer_name or f"{service}@{socket.gethostname()}-{os.getpid()}"


# How long a starting service waits for Redis (a restart, an AOF replay) before it gives up
# with a one-line error: a wrong URL must not look like a hang.
START_PATIENCE_S = 15.0


async def until_redis_answers(
    step: Callable[[], Coroutine[Any, Any, None]],
    stop: asyncio.Event,
    what: str,
    patience_s: float = START_PATIENCE_S,
) -> bool:
    """Run `step`, retrying with backoff while Redis is away (up to `patience_s`, then the
    error is raised); False if stopped meanwhile. A refused password is raised at once: no
    wait makes a wrong credential right, and 15 s of retries would only hide it."""
    log = get_logger()
    backoff = Backoff()
    deadline = time.monotonic() + patience_s
    while not stop.is_set():
        try:
            await step()
            return True
        except Exception as exc:
            if refused_credentials(exc) or not is_transient(exc) or time.monotonic() >= deadline:
                raise
            pause_s = backoff.next_s()
            log.warning(f"{what}.redis_unavailable", error=str(exc), retry_in_s=round(pause_s, 2))
            await sleep_or_stop(stop, pause_s)
    return False


def serve_metrics(settings: Settings) -> None:
    """/metrics on RIDEPULSE_METRICS_PORT; a port that cannot be bound is CannotStart (one
    line from `ridepulse run`), not a traceback."""
    try:
        start_http_server(settings.metrics_port, addr=settings.host)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f"{settings.host}:{settings.metrics_port}"
        raise CannotStart(
            f"cannot serve /metrics on {where} (RIDEPULSE_METRICS_PORT): {reason}"
        ) from None
    get_logger().info("service.metrics_served", host=settings.host, port=settings.metrics_port)


def stop_on_signals() -> asyncio.Event:
    """An event SIGTERM or SIGINT sets, on the running loop (which owns the handlers)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_service(
    redis: aioredis.Redis,
    settings: Settings,
    *,
    service: str,
    consumer: str,
    runtimes: Sequence[ConsumerRuntime],
    background: Sequence[BackgroundTask] = (),
    stop: asyncio.Event | None = None,
) -> None:
    """Until SIGTERM or SIGINT (`stop`, if the caller installed it already)."""
    log = get_logger(consumer=consumer)
    stop = stop or stop_on_signals()
    if settings.metrics_port:
        serve_metrics(settings)
    heartbeat = Heartbeat(
        redis,
        prefix=settings.key_prefix,
        service=service,
        consumer=consumer,
        interval_s=settings.heartbeat_interval_s,
        runtimes=runtimes,
    )

    async def start() -> None:
        for runtime in runtimes:
            await runtime.ensure_groups()
        await heartbeat.beat()  # the supervisor reads this as "ready"

    if not await until_redis_answers(start, stop, "service.start"):
        log.info("service.stopped")  # before it started: still a clean stop, exit 0
        return
    log.info("service.started", runtimes=[r.group for r in runtimes])
    tasks = [asyncio.create_task(r.run(), name=f"runtime:{r.group}") for r in runtimes]
    tasks += [asyncio.create_task(restarting(b, stop)) for b in background]
    tasks.append(asyncio.create_task(heartbeat.run(stop)))
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    failure = next((t for t in done if t is not waiter and t.exception() is not None), None)
    stop.set()
    for runtime in runtimes:
        runtime.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(RedisError, OSError):
        await heartbeat.clear()  # Redis may be away; the key's TTL ends it then
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
    """The whole life of a consumer service: warm up its state, run until SIGTERM, close. A
    stop while it waits for Redis to warm up ends it as cleanly (exit 0) as one later: it was
    Python's KeyboardInterrupt (exit 130) or SIGTERM's default death."""
    stop = stop_on_signals()
    try:
        if warm_up is not None and not await until_redis_answers(warm_up, stop, "service.warm_up"):
            get_logger().info("service.stopped")
            return
        await run_service(
            redis,
            settings,
            service=service,
            consumer=runtimes[0].consumer,
            runtimes=runtimes,
            background=background,
            stop=stop,
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
