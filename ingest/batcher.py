"""Coalesced telemetry appends: concurrent requests share one XADD (group commit).

While one append is in flight, new pings accumulate; the next append takes them all. Under
load, one round trip serves hundreds of requests; when idle, a ping goes out at once (no
timer adds latency). Each caller awaits the append that carried its pings, so a 202 means
the ping is in Redis (and, with several markets, so is the driver's market: ingest.driver_homes;
the driver then leaves its old market in the background: ingest.market_moves).
A failed append fails every request it carried alike (_for_waiters)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ingest.driver_homes import DriverHomes
from ingest.fast_batch import FleetPing
from ridepulse.bus.faults import is_transient
from ridepulse.bus.metrics import EVENTS_PUBLISHED
from ridepulse.contracts.envelope import new_event_id, now_ms

MAX_PINGS_PER_ENTRY = 2_000  # keeps one entry well under a few hundred KB
# a single ping arrives as check_ping's dict, a batch as decoded structs; both encode alike
Ping = dict[str, Any] | FleetPing
_encode = msgspec.json.Encoder().encode


def _driver_of(ping: Ping) -> str:
    return ping.driver_id if isinstance(ping, FleetPing) else str(ping["driver_id"])


def _for_waiters(exc: Exception) -> Exception:
    """The error every request a failed append carried re-raises. A torn connection (a
    RuntimeError or AttributeError raised inside redis-py) is told from our own bug by its
    traceback's frames (ridepulse.bus.faults), and a shared exception keeps them only for the
    first waiter to re-raise it: the next ones answered 500, not 503. So it is judged here,
    while the traceback is whole, and handed on as a redis ConnectionError, which every waiter
    answers 503 + Retry-After by its class alone."""
    if is_transient(exc) and not isinstance(exc, RedisError):
        failure = RedisConnectionError(f"{type(exc).__name__}: {exc}")
        failure.__cause__ = exc
        return failure
    return exc


@dataclass
class _Pending:
    pings: list[Ping] = field(default_factory=list)
    homes: dict[str, str] = field(default_factory=dict)  # driver → market records to write
    future: asyncio.Future[None] | None = None


class TelemetryBatcher:
    def __init__(
        self,
        redis: Any,
        *,
        source: str,
        maxlen: int,
        homes: DriverHomes | None = None,
        moved: Callable[[dict[str, str], int], None] | None = None,
    ) -> None:
        self.redis = redis
        self.homes = homes
        self.moved = moved  # told of the records written in a new market (ingest.market_moves)
        self.source = source.encode()
        self.maxlen = maxlen
        self._pending: dict[str, _Pending] = {}
        self._flushing: set[str] = set()
        self.pings_appended = 0  # this process's total, reported in its heartbeat

    async def submit(self, stream: str, pings: Sequence[Ping], market_id: str = "") -> None:
        pending = self._pending.get(stream)
        if pending is None:
            pending = self._pending[stream] = _Pending()
        if pending.future is None:
            pending.future = asyncio.get_running_loop().create_future()
        pending.pings.extend(pings)
        if self.homes is not None and market_id:
            pending.homes.update(self.homes.unrecorded(market_id, map(_driver_of, pings)))
        future = pending.future
        if stream not in self._flushing:
            self._flushing.add(stream)
            asyncio.get_running_loop().create_task(self._flush(stream))
        await future

    async def _flush(self, stream: str) -> None:
        try:
            while True:
                pending = self._pending.get(stream)
                if pending is None or not pending.pings:
                    return
                self._pending[stream] = _Pending()
                try:
                    await self._append(stream, pending)
                except Exception as exc:
                    if pending.future is not None and not pending.future.done():
                        pending.future.set_exception(_for_waiters(exc))
                        pending.future.exception()  # mark retrieved: callers may be gone
                    continue
                if pending.future is not None and not pending.future.done():
                    pending.future.set_result(None)
        finally:
            self._flushing.discard(stream)

    async def _append(self, stream: str, pending: _Pending) -> None:
        pings = pending.pings
        pipe = self.redis.pipeline(transaction=False)
        for i in range(0, len(pings), MAX_PINGS_PER_ENTRY):
            chunk = pings[i : i + MAX_PINGS_PER_ENTRY]
            first = _driver_of(chunk[0])
            alone = all(_driver_of(p) == first for p in chunk)
            subject = f"driver/{first}" if alone else "fleet/batch"
            fields = {
                b"id": new_event_id().encode(),
                b"type": b"driver.location",
                b"v": b"1",
                b"source": self.source,
                b"time": str(now_ms()).encode(),
                b"subject": subject.encode(),
                b"data": _encode({"pings": chunk}),
                b"traceparent": b"",
            }
            pipe.xadd(stream, fields, maxlen=self.maxlen, approximate=True)
        written_ms = 0
        if self.homes is not None and pending.homes:
            written_ms = self.homes.write(pipe, pending.homes)
        results = await pipe.execute()
        if self.homes is not None and pending.homes:
            moved = self.homes.moved(pending.homes)  # before `recorded` forgets the old markets
            self.homes.recorded(pending.homes)
            if self.moved is not None and moved:
                self.moved(moved, written_ms)
        EVENTS_PUBLISHED.labels(stream).inc(len(results) - len(pending.homes))
        self.pings_appended += len(pings)
