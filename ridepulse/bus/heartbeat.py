"""Heartbeats: who is alive, what it processed, its lag. Ops tooling, the dashboard and the
supervisor read the TTL'd key (present = alive); the health stream keeps a short history."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import psutil
import redis.asyncio as aioredis

from ridepulse.bus.backlog import groups_backlog
from ridepulse.bus.consumer import ConsumerRuntime
from ridepulse.bus.metrics import CONSUMER_LAG, EVENTS_PUBLISHED
from ridepulse.contracts.envelope import now_ms
from ridepulse.contracts.registry import make
from ridepulse.keys import GlobalKeys
from ridepulse.logs import get_logger
from ridepulse.periodic import every

HEALTH_MAXLEN = 10_000


async def group_lag(redis: aioredis.Redis, stream: str, group: str) -> int:
    """Entries appended after the group's position and still in the stream: those trimmed
    before it read them will never be delivered (the janitor counts them as lost)."""
    backlog = (await groups_backlog(redis, stream, 0, {group})).get(group)
    return backlog.unread if backlog else 0


class Heartbeat:
    """Publishes one service's heartbeat every `interval_s` until stopped."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        service: str,
        consumer: str,
        interval_s: float,
        runtimes: Sequence[ConsumerRuntime] = (),
        processed: Callable[[], int] | None = None,
        telemetry_admitted: Callable[[], float] | None = None,
        durable_writes: bool | None = None,
    ) -> None:
        """`processed` counts the work of a service without consumer groups (ingest: pings
        appended), added to what its runtimes processed. `telemetry_admitted` is ingest's share
        of pings let in: its shedding is in-process, and `ridepulse status` must see it.
        `durable_writes` is ingest's RIDEPULSE_DURABLE_WRITES: whether an AOF off fails its ride
        requests is its setting, not the one of the shell `ridepulse status` runs in."""
        self.redis = redis
        self.keys = GlobalKeys(prefix)
        self.service = service
        self.consumer = consumer
        self.interval_s = interval_s
        self.runtimes = list(runtimes)
        self._processed = processed
        self._telemetry_admitted = telemetry_admitted
        self._durable_writes = durable_writes
        self.key = self.keys.heartbeat(service, consumer)
        self._process = psutil.Process(os.getpid())
        self.log = get_logger(consumer=consumer)

    async def snapshot(self) -> dict[str, Any]:
        lag = pending = 0
        for runtime in self.runtimes:
            for source in runtime.sources:
                stream_lag = await group_lag(self.redis, source.key, runtime.group)
                CONSUMER_LAG.labels(runtime.group, source.key).set(stream_lag)
                lag += stream_lag
                pending += await self._pending(runtime, source.key)
        admitted = self._telemetry_admitted
        return {
            **({"telemetry_admitted": round(admitted(), 3)} if admitted else {}),
            **({} if self._durable_writes is None else {"durable_writes": self._durable_writes}),
            "service": self.service,
            "consumer": self.consumer,
            "processed": sum(r.stats.processed for r in self.runtimes)
            + (self._processed() if self._processed else 0),
            "failed": sum(r.stats.failed for r in self.runtimes),
            "dead_lettered": sum(r.stats.dead_lettered for r in self.runtimes),
            "conflated": sum(r.stats.conflated for r in self.runtimes),
            "lag": lag,
            "pending": pending,
            "pid": os.getpid(),
            "rss_bytes": self._process.memory_info().rss,
        }

    async def _pending(self, runtime: ConsumerRuntime, stream: str) -> int:
        try:
            summary = await self.redis.xpending(stream, runtime.group)
        except aioredis.ResponseError:
            return 0
        for entry in summary.get("consumers") or []:
            name = entry["name"].decode() if isinstance(entry["name"], bytes) else entry["name"]
            if name == runtime.consumer:
                return int(entry["pending"])
        return 0

    async def beat(self) -> dict[str, Any]:
        data = await self.snapshot()
        ttl_s = max(2, int(self.interval_s * 3 + 0.999))
        envelope = make("service.heartbeat", f"service/{self.service}", data, self.consumer)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.key, orjson.dumps({**data, "time": now_ms()}), ex=ttl_s)
        pipe.sadd(self.keys.heartbeats, self.key)
        pipe.xadd(self.keys.health, envelope.to_fields(), maxlen=HEALTH_MAXLEN, approximate=True)  # type: ignore[arg-type]
        await pipe.execute()
        EVENTS_PUBLISHED.labels(self.keys.health).inc()
        return data

    async def run(self, stop: asyncio.Event) -> None:
        # a blip, OOM, a lost group: beat again later
        await every(stop, self.interval_s, self.beat, log=self.log, failed="heartbeat.failed")

    async def clear(self) -> None:
        """On clean exit: the service is gone on purpose, not dead."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self.key)
        pipe.srem(self.keys.heartbeats, self.key)
        await pipe.execute()
