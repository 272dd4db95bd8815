"""The consumer-group runtime: read, dispatch, publish, acknowledge, claim, dead-letter.

Order of a batch: decode → handle → publish what the handlers returned → XACK (one pipeline).
An entry is acked only after its effects and its follow-up events are written (at-least-once);
a failed entry stays pending and is retried by this consumer after `retry_idle_ms`, or claimed
by another after `claim_idle_ms`; on its `max_deliveries`-th failure it is dead-lettered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ridepulse.bus import metrics as m
from ridepulse.bus.deadletter import DEAD_LETTER_MAXLEN, dead_letter_fields
from ridepulse.bus.handlers import DepsT, HandlerTable
from ridepulse.bus.producer import Producer
from ridepulse.contracts.envelope import Envelope
from ridepulse.contracts.registry import Event, decode
from ridepulse.errors import InvalidEvent
from ridepulse.keys import GlobalKeys
from ridepulse.logs import get_logger
from ridepulse.settings import Settings

RawEntry = tuple[bytes, dict[bytes, bytes] | None]


@dataclass(frozen=True, slots=True)
class StreamSource:
    """A stream this consumer reads, and the market whose streams its outputs go to."""

    key: str
    market: str


@dataclass
class ConsumerStats:
    processed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    lost: int = 0


@dataclass(slots=True)
class _Item:
    stream: StreamSource
    entry_id: bytes
    fields: dict[bytes, bytes] | None
    deliveries: int
    event: Event | None = None


class ConsumerRuntime(Generic[DepsT]):
    """One consumer of one group over one or more streams. `burst=True` returns once nothing
    is left to read or retry, so tests drive a consumer to completion deterministically."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        settings: Settings,
        service: str,
        group: str,
        consumer: str,
        sources: Sequence[StreamSource],
        handlers: HandlerTable[DepsT],
        deps: DepsT,
        burst: bool = False,
        read_count: int | None = None,
        concurrency: int = 1,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.service = service
        self.group = group
        self.consumer = consumer
        self.sources = list(sources)
        self.by_key = {s.key: s for s in self.sources}
        self.handlers = handlers
        self.deps = deps
        self.burst = burst
        # Telemetry groups read few entries at a time: an entry holds up to 1000 pings, and a
        # batch is CPU work without an await, so small batches keep the process's other groups
        # (and its memory) responsive.
        self.read_count = read_count or settings.read_count
        # Handlers of different subjects may run at once only where they are written for it
        # (matching's offers are atomic, version-checked scripts); the default is one by one.
        self.concurrency = concurrency
        self.producer = Producer(
            redis, telemetry_maxlen=settings.telemetry_maxlen, prefix=settings.key_prefix
        )
        self.global_keys = GlobalKeys(settings.key_prefix)
        self.stats = ConsumerStats()
        self._stopping = asyncio.Event()
        self._last_claim = 0.0
        self.log = get_logger(group=group, consumer=consumer)

    # ---- lifecycle -------------------------------------------------------------------
    def stop(self) -> None:
        """Stop reading; the batch in hand is finished and acknowledged before run() returns."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def ensure_groups(self, start_id: str = "0") -> None:
        """Create missing groups at the stream's start: a service deployed after events were
        written still sees them (handlers are idempotent, so replay is harmless)."""
        for source in self.sources:
            try:
                await self.redis.xgroup_create(source.key, self.group, id=start_id, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def run(self) -> None:
        await self.ensure_groups()
        await self._drain_own_pending()
        while not self.stopping:
            worked = await self._claim_cycle()
            worked = await self._read_new() or worked
            if self.burst and not worked:
                if not await self._group_has_pending():
                    break
                await asyncio.sleep(0.05)  # entries held elsewhere: wait until claimable
        self.log.info("consumer.stopped", **self.stats.__dict__)

    # ---- reading ---------------------------------------------------------------------
    async def _read_new(self) -> bool:
        block = None if self.burst else self.settings.block_ms
        try:
            reply: Any = await self.redis.xreadgroup(
                self.group,
                self.consumer,
                {s.key: ">" for s in self.sources},
                count=self.read_count,
                block=block,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._recover_lost_group()
            return True
        if not reply:
            return False
        items = [
            _Item(self.by_key[key.decode()], entry_id, fields, 1)
            for key, entries in reply
            for entry_id, fields in entries
        ]
        await self._process(items)
        return True

    async def _recover_lost_group(self) -> None:
        """The server restarted without its data: recreate from the start and say so loudly."""
        m.GROUPS_RECREATED.labels(self.group).inc()
        self.log.error("consumer.group_missing", detail="server lost its data; group recreated")
        await self.ensure_groups(start_id="0")

    async def _drain_own_pending(self) -> None:
        """After a restart, finish what this consumer name had in hand before taking new work."""
        for source in self.sources:
            start = "-"
            while True:
                pending: Any = await self.redis.xpending_range(
                    source.key,
                    self.group,
                    min=start,
                    max="+",
                    count=self.read_count,
                    consumername=self.consumer,
                )
                if not pending:
                    break
                await self._claim_ids(source, pending, min_idle_ms=0)
                start = "(" + pending[-1]["message_id"].decode()
                if len(pending) < self.read_count:
                    break

    async def _group_has_pending(self) -> bool:
        for source in self.sources:
            summary: Any = await self.redis.xpending(source.key, self.group)
            if summary["pending"]:
                return True
        return False

    # ---- claiming --------------------------------------------------------------------
    async def _claim_cycle(self) -> bool:
        """Retry own failed entries, and take over entries idle on dead consumers."""
        interval_s = min(self.settings.retry_idle_ms, self.settings.claim_idle_ms) / 1000
        now = time.monotonic()
        if not self.burst and now - self._last_claim < interval_s:
            return False
        self._last_claim = now
        worked = False
        for source in self.sources:
            own = await self.redis.xpending_range(
                source.key,
                self.group,
                min="-",
                max="+",
                count=self.read_count,
                consumername=self.consumer,
                idle=self.settings.retry_idle_ms,
            )
            if own:
                worked = await self._claim_ids(source, own, self.settings.retry_idle_ms) or worked
            worked = await self._autoclaim(source) or worked
        return worked

    async def _claim_ids(
        self, source: StreamSource, pending: list[dict[str, Any]], min_idle_ms: int
    ) -> bool:
        ids = [p["message_id"] for p in pending]
        deliveries = {p["message_id"]: int(p["times_delivered"]) + 1 for p in pending}
        entries: Any = await self.redis.xclaim(
            source.key, self.group, self.consumer, min_idle_time=min_idle_ms, message_ids=ids
        )
        present = {e[0] for e in entries}
        gone = [i for i in ids if i not in present]
        if gone:
            await self._count_lost(source, gone)
        items = [_Item(source, eid, f, deliveries.get(eid, 1)) for eid, f in entries]
        await self._process(items)
        return bool(entries)

    async def _autoclaim(self, source: StreamSource) -> bool:
        reply = await self.redis.xautoclaim(
            source.key,
            self.group,
            self.consumer,
            self.settings.claim_idle_ms,
            "0-0",
            count=self.read_count,
        )
        entries: list[RawEntry] = reply[1]
        deleted: list[bytes] = reply[2] if len(reply) > 2 else []
        if deleted:
            await self._count_lost(source, deleted)  # XAUTOCLAIM drops these ids silently
        if not entries:
            return False
        counts = await self.redis.xpending_range(
            source.key,
            self.group,
            min=entries[0][0],
            max=entries[-1][0],
            count=len(entries) * 2,
            consumername=self.consumer,
        )
        deliveries = {p["message_id"]: int(p["times_delivered"]) for p in counts}
        self.log.warning("consumer.claimed", stream=source.key, count=len(entries))
        await self._process([_Item(source, eid, f, deliveries.get(eid, 2)) for eid, f in entries])
        return True

    async def _count_lost(self, source: StreamSource, ids: list[bytes]) -> None:
        """Pending ids whose bodies were trimmed away: acknowledged, counted, logged."""
        self.stats.lost += len(ids)
        m.ENTRIES_LOST.labels(self.service, self.group, source.key).inc(len(ids))
        self.log.error("consumer.entries_lost", stream=source.key, count=len(ids))
        await self.redis.xack(source.key, self.group, *ids)

    # ---- processing ------------------------------------------------------------------
    async def _process(self, items: list[_Item]) -> None:
        acks: list[_Item] = []
        dead: list[tuple[_Item, str]] = []
        outgoing: list[tuple[str, Envelope]] = []
        by_batch_type: dict[tuple[str, str], list[_Item]] = {}
        by_subject: dict[str, list[_Item]] = {}
        for item in items:
            if item.fields is None:  # body trimmed while pending
                await self._count_lost(item.stream, [item.entry_id])
                continue
            try:
                item.event = decode(item.fields, item.stream.market)
            except InvalidEvent as exc:
                dead.append((item, exc.detail))
                continue
            event_type = item.event.type
            if event_type in self.handlers.batch:
                # grouped per stream too: a batch's outputs go to that stream's market
                by_batch_type.setdefault((event_type, item.stream.key), []).append(item)
            elif event_type in self.handlers.per_event:
                by_subject.setdefault(item.event.envelope.subject, []).append(item)
            else:
                acks.append(item)  # a type this group does not care about
        await self._run_subjects(list(by_subject.values()), acks, outgoing, dead)
        for (event_type, _), group_items in by_batch_type.items():
            if await self._run_batch(event_type, group_items, outgoing, dead):
                acks.extend(group_items)
        await self._commit(acks, dead, outgoing)

    async def _run_subjects(
        self,
        subjects: list[list[_Item]],
        acks: list[_Item],
        outgoing: list[tuple[str, Envelope]],
        dead: list[tuple[_Item, str]],
    ) -> None:
        """Events of one subject (a ride, a driver) in stream order; up to `concurrency`
        subjects at once, so one handler's round trips to Redis do not hold up the others."""
        lanes = iter(subjects)

        async def lane() -> None:
            for subject_items in lanes:
                for item in subject_items:
                    if await self._run_one(item, outgoing, dead):
                        acks.append(item)

        await asyncio.gather(*(lane() for _ in range(min(self.concurrency, len(subjects)))))

    async def _run_one(
        self, item: _Item, outgoing: list[tuple[str, Envelope]], dead: list[tuple[_Item, str]]
    ) -> bool:
        assert item.event is not None
        handler = self.handlers.per_event[item.event.type]
        started = time.perf_counter()
        try:
            produced = await handler(item.event, self.deps)
        except Exception as exc:
            self._failed(item, exc, dead)
            return False
        m.HANDLER_SECONDS.labels(self.service, item.event.type).observe(
            time.perf_counter() - started
        )
        outgoing.extend((self.producer.route(e, item.stream.market), e) for e in produced or ())
        return True

    async def _run_batch(
        self,
        event_type: str,
        items: list[_Item],
        outgoing: list[tuple[str, Envelope]],
        dead: list[tuple[_Item, str]],
    ) -> bool:
        handler = self.handlers.batch[event_type]
        started = time.perf_counter()
        try:
            produced = await handler([i.event for i in items if i.event is not None], self.deps)
        except Exception as exc:
            for item in items:
                self._failed(item, exc, dead)
            return False
        m.HANDLER_SECONDS.labels(self.service, event_type).observe(time.perf_counter() - started)
        market = items[0].stream.market
        outgoing.extend((self.producer.route(e, market), e) for e in produced or ())
        return True

    def _failed(self, item: _Item, exc: Exception, dead: list[tuple[_Item, str]]) -> None:
        assert item.event is not None
        self.stats.failed += 1
        m.EVENTS_FAILED.labels(self.service, self.group, item.event.type).inc()
        self.log.warning(
            "consumer.handler_failed",
            stream=item.stream.key,
            entry_id=item.entry_id.decode(),
            event_id=item.event.id,
            type=item.event.type,
            deliveries=item.deliveries,
            traceparent=item.event.envelope.traceparent or None,
            error=f"{type(exc).__name__}: {exc}",
        )
        if item.deliveries >= self.settings.max_deliveries:
            dead.append((item, f"failed {item.deliveries} deliveries: {type(exc).__name__}: {exc}"))

    async def _commit(
        self,
        acks: list[_Item],
        dead: list[tuple[_Item, str]],
        outgoing: list[tuple[str, Envelope]],
    ) -> None:
        """Publish follow-ups, dead-letter, then acknowledge — in one pipeline, in that order."""
        if not (acks or dead or outgoing):
            return
        pipe = self.redis.pipeline(transaction=False)
        for stream, envelope in outgoing:
            fields = envelope.to_fields()
            pipe.xadd(stream, fields, maxlen=self.producer._maxlen(stream), approximate=True)  # type: ignore[arg-type]
        for item, reason in dead:
            dead_fields = dead_letter_fields(
                stream=item.stream.key,
                group=self.group,
                consumer=self.consumer,
                entry_id=item.entry_id.decode(),
                fields=item.fields,
                reason=reason,
                deliveries=item.deliveries,
            )
            dead_key = self.global_keys.dead_letters
            pipe.xadd(dead_key, dead_fields, maxlen=DEAD_LETTER_MAXLEN, approximate=True)  # type: ignore[arg-type]
        by_stream: dict[str, list[bytes]] = {}
        for item in acks + [d[0] for d in dead]:
            by_stream.setdefault(item.stream.key, []).append(item.entry_id)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.group, *ids)
        await pipe.execute()
        for item, reason in dead:
            self.stats.dead_lettered += 1
            m.EVENTS_DEAD_LETTERED.labels(self.service, self.group, reason.split(":")[0]).inc()
            self.log.error(
                "consumer.dead_lettered",
                stream=item.stream.key,
                entry_id=item.entry_id.decode(),
                event_id=item.event.id if item.event else None,
                reason=reason,
            )
        self.stats.processed += len(acks)
        for item in acks:
            if item.event is not None:
                m.EVENTS_PROCESSED.labels(self.service, self.group, item.event.type).inc()
