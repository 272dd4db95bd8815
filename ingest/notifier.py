"""Pushes ride and ETA events to connected drivers: one XREAD reader per process (not a
group: every ingest replica must see every event for the drivers connected to it), fanned out
to bounded per-driver queues so one slow phone never stalls the others."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import orjson
import redis.asyncio as aioredis

from ridepulse.logs import get_logger

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
        last = dict.fromkeys(self.streams, "$")
        while not stop.is_set():
            try:
                reply: Any = await self.redis.xread(last, count=500, block=1000)  # type: ignore[arg-type]
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                self.log.warning("notifier.read_failed", error=str(exc))
                await asyncio.sleep(1)
                continue
            for stream, entries in reply or []:
                last[stream.decode()] = entries[-1][0].decode()
                if self.queues:
                    for _, fields in entries:
                        await self._route(fields)

    async def _route(self, fields: dict[bytes, bytes]) -> None:
        event_type = fields.get(b"type", b"").decode()
        if event_type not in DRIVER_EVENTS:
            return
        try:
            data = orjson.loads(fields[b"data"])
        except (KeyError, orjson.JSONDecodeError):
            return
        driver_id = data.get("driver_id")
        if driver_id is None and "ride_id" in data:
            driver_id = await self.lookup(data["ride_id"])
        if driver_id and driver_id in self.queues:
            self.deliver(driver_id, orjson.dumps({"type": event_type, **data}))
