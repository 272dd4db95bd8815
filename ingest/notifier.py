"""Pushes ride and ETA events to connected drivers: one XREAD reader per process (not a
group: every ingest replica must see every event for the drivers connected to it), fanned out
to bounded per-driver queues so one slow phone never stalls the others."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisError

from ridepulse.bus.faults import Backoff, is_transient
from ridepulse.bus.metrics import SKIPPED_ENTRIES
from ridepulse.logs import get_logger
from ridepulse.pause import sleep_or_stop

QUEUE_SIZE = 64
DRIVER_EVENTS = {
    "ride.offered",
    "ride.matched",
    "ride.unmatched",
    "ride.cancelled",
    "ride.expired",
    "ride.driver_arrived",
    "ride.started",
    "ride.completed",
    "eta.updated",
}


class DriverNotifier:
    def __init__(self, redis: aioredis.Redis, streams: list[str], ride_driver_lookup: Any) -> None:
        self.redis = redis
        self.streams = streams
        self.lookup = ride_driver_lookup  # async (ride_id) -> driver_id | None
        self.queues: dict[str, set[asyncio.Queue[bytes]]] = defaultdict(set)
        self.dropped = 0
        self.skipped = 0
        self.failure: str | None = None
        self.log = get_logger(component="notifier")

    def subscribe(self, driver_id: str) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_SIZE)
        self.queues[driver_id].add(queue)
        return queue

    def unsubscribe(self, driver_id: str, queue: asyncio.Queue[bytes]) -> None:
        self.queues[driver_id].discard(queue)
        if not self.queues[driver_id]:
            del self.queues[driver_id]

    def deliver(self, driver_id: str, message: bytes) -> None:
        for queue in self.queues.get(driver_id, ()):
            if queue.full():
                queue.get_nowait()  # drop the oldest: the newest state matters most
                self.dropped += 1
            queue.put_nowait(message)

    async def run(self, stop: asyncio.Event) -> None:
        """Until stopped: Redis errors back off and retry, a bad entry is skipped and counted.
        Should the loop still end by surprise, `failure` says why and /readyz answers 503."""
        # XREAD may name streams of one slot only on a cluster: one read loop per slot there.
        on_cluster = isinstance(self.redis, RedisCluster)
        groups: dict[int, list[str]] = {}
        for stream in self.streams:
            groups.setdefault(key_slot(stream.encode()) if on_cluster else 0, []).append(stream)
        try:
            await asyncio.gather(*(self._read_loop(stop, streams) for streams in groups.values()))
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            self.log.error("notifier.stopped", error=self.failure)
            raise

    async def _read_loop(self, stop: asyncio.Event, streams: list[str]) -> None:
        last = dict.fromkeys(streams, "$")
        backoff = Backoff(cap_s=2.0)
        while not stop.is_set():
            try:
                reply: Any = await self.redis.xread(last, count=500, block=1000)  # type: ignore[arg-type]
            except Exception as exc:
                if not isinstance(exc, RedisError | OSError) and not is_transient(exc):
                    raise
                pause_s = backoff.next_s()
                self.log.warning("notifier.read_failed", error=str(exc), retry_in_s=pause_s)
                await sleep_or_stop(stop, pause_s)
                continue
            backoff.reset()
            for stream, entries in reply or []:
                last[stream.decode()] = entries[-1][0].decode()
                if self.queues:
                    for entry_id, fields in entries:
                        await self._route_safely(stream, entry_id, fields)

    async def _route_safely(self, stream: bytes, entry_id: bytes, fields: Any) -> None:
        try:
            await self._route(fields)
        except Exception as exc:  # bad bytes or payload: the consumers dead-letter it
            self.skipped += 1
            SKIPPED_ENTRIES.labels("notifier").inc()
            self.log.warning(
                "notifier.entry_skipped",
                stream=stream.decode(errors="replace"),
                entry_id=entry_id.decode(errors="replace"),
                error=f"{type(exc).__name__}: {exc}",
            )

    async def _route(self, fields: dict[bytes, bytes]) -> None:
        event_type = fields.get(b"type", b"").decode()
        if event_type not in DRIVER_EVENTS:
            return
        data = orjson.loads(fields[b"data"])
        driver_id = data.get("driver_id")
        if driver_id is None and "ride_id" in data:
            driver_id = await self.lookup(data["ride_id"])
        if driver_id and driver_id in self.queues:
            self.deliver(driver_id, orjson.dumps({"type": event_type, **data}))
