"""Helpers to fill streams and run consumers in tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis

from ridepulse.bus.consumer import ConsumerRuntime, StreamSource
from ridepulse.bus.handlers import HandlerTable
from ridepulse.bus.producer import Producer
from ridepulse.contracts.envelope import Envelope
from ridepulse.contracts.registry import make
from ridepulse.keys import MarketKeys
from ridepulse.settings import Settings


def expired_events(count: int, start: int = 0) -> list[Envelope]:
    return [
        make("ride.expired", f"ride/r{i}", {"ride_id": f"r{i}", "version": 2}, "test")
        for i in range(start, start + count)
    ]


async def publish_many(producer: Producer, items: Iterable[tuple[str, Envelope]]) -> None:
    """Many appends in one pipeline, trimmed as the producer trims each stream."""
    pipe = producer.redis.pipeline(transaction=False)
    for stream, envelope in items:
        fields: Any = envelope.to_fields()
        pipe.xadd(stream, fields, maxlen=producer._maxlen(stream), approximate=True)
    await pipe.execute()


async def fill(
    redis: aioredis.Redis, stream: str, events: Sequence[Envelope], chunk: int = 1000
) -> None:
    producer = Producer(redis, telemetry_maxlen=1_000_000)
    for i in range(0, len(events), chunk):
        await publish_many(producer, ((stream, e) for e in events[i : i + chunk]))


def runtime(
    redis: aioredis.Redis,
    settings: Settings,
    handlers: HandlerTable,
    *,
    consumer: str = "c1",
    group: str = "g",
    burst: bool = True,
    deps: Any = None,
    concurrency: int = 1,
    batches_in_flight: int = 1,
    linger_ms: int = 0,
) -> ConsumerRuntime:
    keys = MarketKeys("sf", settings.key_prefix)
    return ConsumerRuntime(
        redis,
        settings=settings,
        service="test",
        group=group,
        consumer=consumer,
        sources=[StreamSource(keys.rides, "sf")],
        handlers=handlers,
        deps=deps,
        burst=burst,
        concurrency=concurrency,
        batches_in_flight=batches_in_flight,
        linger_ms=linger_ms,
    )


def start_consumer_process(
    settings: Settings, consumer: str | None, *extra: str
) -> subprocess.Popen[bytes]:
    """A tests.support.consumer_proc process; `consumer=None` leaves the name to the default."""
    assert settings.redis_url
    named = ["--consumer", consumer] if consumer else []
    env = {k: v for k, v in os.environ.items() if k != "RIDEPULSE_CONSUMER_NAME"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.consumer_proc",
            "--redis-url",
            settings.redis_url,
            "--prefix",
            settings.key_prefix,
            *named,
            *extra,
        ],
        cwd=os.getcwd(),
        env=env,
    )


async def wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    for _ in range(int(timeout_s / 0.05)):
        code = proc.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    raise AssertionError(f"process {proc.pid} did not exit within {timeout_s}s")
