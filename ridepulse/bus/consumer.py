"""The consumer-group runtime: read, dispatch, publish, acknowledge, claim, dead-letter.

Order of a batch: decode → handle → publish what the handlers returned and dead-letter (one
pipeline, every reply checked) → XACK only the entries whose writes all went in (at-least-once).
An entry that cannot be decoded is dead-lettered at once with the reason. A failed entry stays
pending and is retried by this consumer after `retry_idle_ms`, doubling per delivery, or
claimed by another after `claim_idle_ms`; on its `max_deliveries`-th failure it is
dead-lettered, and an entry delivered more often than that (its handler never finished: the
process died) is dead-lettered before its handler runs again. Transient Redis errors
(connection, timeout, OOM) stop the batch and back off, and are refunded from the delivery
count (XCLAIM RETRYCOUNT on the retry), so a Redis blip never dead-letters a healthy event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoPermissionError, ResponseError
from redis.typing import StreamIdT

from ridepulse.bus import metrics as m
from ridepulse.bus.conflation import Conflation, catch_up_read_size, conflate
from ridepulse.bus.deadletter import DEAD_LETTER_MAXLEN, dead_letter_fields, envelope_attribute
from ridepulse.bus.faults import Backoff, is_nogroup, is_transient
from ridepulse.bus.handlers import DepsT, HandlerTable
from ridepulse.bus.producer import Producer
from ridepulse.bus.trimming import parse_id
from ridepulse.contracts.envelope import Envelope
from ridepulse.contracts.events import DriverLocationV1
from ridepulse.contracts.registry import Event, decode
from ridepulse.errors import InvalidEvent
from ridepulse.keys import GlobalKeys
from ridepulse.leases import LeaseLost
from ridepulse.logs import get_logger
from ridepulse.pause import sleep_or_stop
from ridepulse.replies import text
from ridepulse.settings import Settings

GATE_POLL_S = 0.2  # how soon a closed gate (a market not held) notices it has opened
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
    transient_errors: int = 0
    conflated: int = 0  # pings skipped because a newer one of the same driver was read too
    reads: int = 0  # reads that brought entries: processed / reads is the events per wake-up


# Removes a consumer only if, at that instant, it holds nothing and has been idle long enough:
# XGROUP DELCONSUMER drops a consumer's pending entries for good (DESIGN §11), so the check
# and the delete must be one atomic step.
REAP_SCRIPT = """
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, c in ipairs(consumers) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] == ARGV[2] then
    if tonumber(f['pending']) == 0 and tonumber(f['idle']) >= tonumber(ARGV[3]) then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
      return 1
    end
    return 0
  end
end
return 0
"""


@dataclass(slots=True)
class _Item:
    stream: StreamSource
    entry_id: bytes
    fields: dict[bytes, bytes] | None
    deliveries: int
    event: Event | None = None
    written: bool = True  # False once one of its outputs or its dead letter was refused
    failed: bool = False  # this delivery counts against the budget (the handler failed)
    acked: bool = False
    conflated: int = 0  # its pings skipped as superseded by newer ones in the same read


@dataclass
class _Batch:
    acks: list[_Item] = field(default_factory=list)
    dead: list[tuple[_Item, str]] = field(default_factory=list)
    outgoing: list[tuple[str, Envelope, list[_Item]]] = field(default_factory=list)
    transient: BaseException | None = None  # the first connection/timeout/OOM error met


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
        batches_in_flight: int = 1,
        conflation: Conflation | None = None,
        gate: Callable[[], bool] | None = None,
        linger_ms: int = 0,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.service = service
        self.group = group
        self.consumer = consumer
        self.sources = list(sources)
        self.by_key = {s.key: s for s in self.sources}
        # One XREADGROUP may name streams of one slot only on a cluster: there the sources are
        # read per slot, each read in flight on its own (see _read_new); one server: one read.
        self._slot_groups = _slot_groups(self.sources, on_cluster=isinstance(redis, RedisCluster))
        self._reads: dict[int, asyncio.Task[Any]] = {}
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
        # Reads ahead of the batch in hand: a batch ends with its slowest handler, and a ride
        # requested meanwhile should not wait for it. Events of one subject still run in stream
        # order across batches (`_subject_turns`); a batch handler gets no such order, so only
        # one indifferent to it may be given more than one (matching-geo's: newest ping wins).
        self.batches_in_flight = batches_in_flight
        self._batches: set[asyncio.Task[None]] = set()
        # Their entries are pending under this name and look idle to the server: the claim
        # cycle must not take them for failed ones and run them a second time meanwhile.
        self._in_flight: set[tuple[str, bytes]] = set()
        self._batch_error: BaseException | None = None
        self._subject_turns: dict[str, asyncio.Future[None]] = {}
        # A position feed (telemetry): superseded pings are skipped, and a consumer behind by
        # more than `catch_up_lag_s` reads bigger slices, so it catches up in seconds.
        self.conflation = conflation
        # Leased markets (ridepulse.leases): the runtime reads and claims only while `gate()`
        # says this replica owns its market; closed, it holds nothing new and the owner's
        # runtime of the same group claims what it left pending.
        self.gate = gate
        # Off the offer path (eta's and pricing's ride groups), a read that did not fill up is
        # followed by this pause: at 100 rides/s a back-to-back reader wakes for every event,
        # and the wake-up (read, decode, ack round trips) costs more than the handler.
        self.linger_s = linger_ms / 1000
        self._last_read_entries = 0
        self.lag_s = 0.0  # age of the oldest entry of the last read, by its id's ms (server clock)
        # entries of the next read when behind: the backlog, so a driver's pings meet in it
        self._catch_up_count = settings.telemetry_catch_up_read_count
        self.producer = Producer(
            redis, telemetry_maxlen=settings.telemetry_maxlen, prefix=settings.key_prefix
        )
        self.global_keys = GlobalKeys(settings.key_prefix)
        self.stats = ConsumerStats()
        self._stopping = asyncio.Event()
        self._last_claim = 0.0
        self._last_reap = 0.0
        # Deliveries spent on transient errors, per (stream, entry id): given back on the retry.
        self._refunds: dict[tuple[str, bytes], int] = {}
        self._reap = redis.register_script(REAP_SCRIPT)
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
        """Until stopped: a Redis blip (restart, failover, OOM) backs off and reconnects; a
        missing group is recreated and reported; neither ends the process."""
        backoff = Backoff()
        started = False
        while not self.stopping:
            if self.gate is not None and not self.gate():
                if self.burst:
                    break
                await self._drain_batches()
                self._cancel_reads()
                started = False  # reopened: first finish what this name still holds
                await sleep_or_stop(self._stopping, GATE_POLL_S)
                continue
            try:
                self._raise_batch_error()
                if not started:
                    await self._drain_batches()  # own pending is re-read: none may be in hand
                    await self.ensure_groups()
                    await self._drain_own_pending()
                    started = True
                worked = await self._claim_cycle()
                worked = await self._read_new() or worked
                backoff.reset()
                if self._lingers():
                    await sleep_or_stop(self._stopping, self.linger_s)
            except LeaseLost as exc:
                # the market went to another replica mid-batch: what is left stays pending
                self.log.info("consumer.lease_lost", market=str(exc))
                continue
            except Exception as exc:
                if is_nogroup(exc):
                    self._report_lost_group(exc)
                    started = False
                    continue
                if not is_transient(exc):
                    raise
                self.stats.transient_errors += 1
                m.TRANSIENT_ERRORS.labels(self.service, self.group).inc()
                pause_s = backoff.next_s()
                self.log.warning(
                    "consumer.redis_unavailable",
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=round(pause_s, 2),
                )
                await sleep_or_stop(self._stopping, pause_s)
                continue
            if self.burst and not worked:
                if not await self._group_has_pending():
                    break
                await asyncio.sleep(0.05)  # entries held elsewhere: wait until claimable
        await self._drain_batches()
        self._cancel_reads()
        self.log.info("consumer.stopped", **self.stats.__dict__)

    def _cancel_reads(self) -> None:
        for task in self._reads.values():
            # A read cancelled in flight may have been served: its entries stay pending under
            # this consumer name and are drained at its next start or claimed by another.
            task.cancel()
        self._reads.clear()

    def _report_lost_group(self, exc: BaseException) -> None:
        """The server restarted without its data: the group is recreated from the stream's start
        on the next turn; what it had delivered or pending is gone, so say so loudly."""
        m.GROUPS_RECREATED.labels(self.group).inc()
        self.log.error(
            "consumer.group_missing",
            detail="the server lost the group (data loss); recreating it",
            error=str(exc),
        )

    # ---- reading ---------------------------------------------------------------------
    def _xreadgroup(self, sources: Sequence[StreamSource]) -> Any:
        block = None if self.burst else self.settings.block_ms
        return self.redis.xreadgroup(
            self.group,
            self.consumer,
            {s.key: ">" for s in sources},
            count=self._read_size(),
            block=block,
        )

    async def _read_new(self) -> bool:
        if len(self._slot_groups) == 1:
            reply: Any = await self._xreadgroup(self._slot_groups[0])
        else:
            reply = await self._read_per_slot()
        self._last_read_entries = sum(len(entries) for _, entries in reply or [])
        if not reply:
            self.lag_s = 0.0
            return False
        self.stats.reads += 1
        if self.conflation is not None:
            # how far behind this read started: a catch-up read ends near the head, but what
            # it holds is a backlog, so it is conflated as one
            oldest_ms = min(parse_id(entries[0][0])[0] for _, entries in reply if entries)
            newest_ms = max(parse_id(entries[-1][0])[0] for _, entries in reply if entries)
            self.lag_s = max(time.time() - oldest_ms / 1000, 0.0)
            self._catch_up_count = catch_up_read_size(
                oldest_ms,
                newest_ms,
                self._last_read_entries,
                int(time.time() * 1000),
                floor=self.settings.telemetry_catch_up_read_count,
                cap=self.settings.telemetry_catch_up_max_read_count,
            )
        items = [
            _Item(self.by_key[key.decode()], entry_id, fields, 1)
            for key, entries in reply
            for entry_id, fields in entries
        ]
        await self._dispatch(items)
        return True

    async def _dispatch(self, items: list[_Item]) -> None:
        """Process a read: in hand, or (batches_in_flight > 1) alongside the batches before it,
        waiting only when that many are in flight."""
        if self.batches_in_flight <= 1:
            await self._process(items)
            return
        ids = {(item.stream.key, item.entry_id) for item in items}
        self._in_flight |= ids
        task = asyncio.ensure_future(self._process(items))
        self._batches.add(task)
        task.add_done_callback(self._batch_done)
        task.add_done_callback(lambda _: self._in_flight.difference_update(ids))
        while len(self._batches) >= self.batches_in_flight:
            await asyncio.wait(self._batches, return_when=asyncio.FIRST_COMPLETED)
        self._raise_batch_error()

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        if not task.cancelled() and task.exception() is not None and self._batch_error is None:
            self._batch_error = task.exception()

    def _raise_batch_error(self) -> None:
        """A batch in flight met a transient error, a lost lease or a lost group: the run loop
        handles it as if the batch had been in hand."""
        if self._batch_error is not None:
            error, self._batch_error = self._batch_error, None
            raise error

    async def _drain_batches(self) -> None:
        """Let the batches in flight finish (and acknowledge) before re-reading or stopping."""
        while self._batches:
            await asyncio.wait(set(self._batches))
        self._batch_error = None  # what they met is left pending; the retry finds it

    def _lingers(self) -> bool:
        """After a read that brought some entries but not a full count: more are coming one by
        one, so wait for a few of them (an empty read already waited out its BLOCK)."""
        return (
            self.linger_s > 0 and not self.burst and 0 < self._last_read_entries < self._read_size()
        )

    def _read_size(self) -> int:
        """Entries to read: more when a conflating consumer is behind, since the cost of a read
        then follows the drivers in it rather than the pings."""
        if self._catching_up():
            return max(self.read_count, self._catch_up_count)
        return self.read_count

    def _catching_up(self) -> bool:
        """Whether a conflating consumer is behind by more than `telemetry_catch_up_lag_s`,
        or that is 0 ("always"): a lag is never below 0, so `>` alone left a read at lag
        exactly 0 (the read after an empty one, or entries stamped by a server clock ahead of
        this host's) reading small slices and conflating nothing."""
        threshold_s = self.settings.telemetry_catch_up_lag_s
        return self.conflation is not None and (threshold_s == 0 or self.lag_s > threshold_s)

    async def _read_per_slot(self) -> list[Any]:
        """One blocking read per slot, all in flight at once; returns what the first to answer
        brought (a quiet market's read stays in flight for the next turn rather than holding a
        busy market's entries back until its BLOCK times out)."""
        for index, sources in enumerate(self._slot_groups):
            if index not in self._reads:
                self._reads[index] = asyncio.ensure_future(self._xreadgroup(sources))
        done, _ = await asyncio.wait(self._reads.values(), return_when=asyncio.FIRST_COMPLETED)
        reply: list[Any] = []
        failure: BaseException | None = None
        for index, task in list(self._reads.items()):
            if task not in done:
                continue
            del self._reads[index]
            if task.exception() is not None:
                failure = task.exception()
            else:
                reply += task.result() or []
        if failure is not None and not reply:
            raise failure
        return reply

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
        """Retry own failed entries when their backoff is over, and take over entries idle on
        dead consumers; now and then, remove consumers that are long gone and hold nothing."""
        interval_s = min(self.settings.retry_idle_ms, self.settings.claim_idle_ms) / 1000
        now = time.monotonic()
        if not self.burst and now - self._last_claim < interval_s:
            return False
        self._last_claim = now
        worked = False
        for source in self.sources:
            own: Any = await self.redis.xpending_range(
                source.key,
                self.group,
                min="-",
                max="+",
                # the batches in flight may hold more than a read: all of them are listed
                count=self.read_count + len(self._in_flight),
                consumername=self.consumer,
                idle=self.settings.retry_idle_ms,
            )
            held: list[StreamIdT] = [
                p["message_id"] for p in own if (source.key, p["message_id"]) in self._in_flight
            ]
            if held:
                await self._touch(source, held)
            due = [
                p
                for p in own
                if (source.key, p["message_id"]) not in self._in_flight
                and self._retry_due(source, p)
            ][: self.read_count]
            if due:
                worked = await self._claim_ids(source, due, self.settings.retry_idle_ms) or worked
            worked = await self._autoclaim(source) or worked
        await self._maybe_reap(now)
        return worked

    async def _touch(self, source: StreamSource, entry_ids: list[StreamIdT]) -> None:
        """Entries of a batch still being handled here look idle to the server, and past
        `claim_idle_ms` XAUTOCLAIM (this consumer's, or another replica's) would take them and run
        them again, a delivery counted each time. XCLAIM to this consumer resets their idle time;
        JUSTID counts no delivery. `min_idle_time`: one another consumer claimed meanwhile (its
        idle time just reset) is left to it."""
        await self.redis.xclaim(
            source.key,
            self.group,
            self.consumer,
            min_idle_time=self.settings.retry_idle_ms,
            message_ids=entry_ids,
            justid=True,
        )

    def _retry_due(self, source: StreamSource, pending: dict[str, Any]) -> bool:
        """Retries back off: retry_idle_ms after the first delivery, doubling after each
        (capped at claim_idle_ms), so a 3–5 s outage in a handler's dependency is ridden out
        before the delivery budget is spent."""
        spent = int(pending["times_delivered"]) - self._refunds.get(
            (source.key, pending["message_id"]), 0
        )
        wait_ms: int = self.settings.retry_idle_ms * 2 ** max(spent - 1, 0)
        idle_ms = int(pending["time_since_delivered"])
        return idle_ms >= min(wait_ms, self.settings.claim_idle_ms)

    async def _claim_ids(
        self, source: StreamSource, pending: list[dict[str, Any]], min_idle_ms: int
    ) -> bool:
        """XCLAIM this consumer's pending ids. An id XCLAIM does not return was either just
        claimed by another consumer (idle reset: leave it alone, it is theirs now) or deleted
        from the stream: only ids confirmed absent count as lost."""
        by_retrycount: dict[int | None, list[Any]] = {}
        deliveries: dict[bytes, int] = {}
        for p in pending:
            entry_id: bytes = p["message_id"]
            times = int(p["times_delivered"])
            refund = self._refunds.get((source.key, entry_id), 0)
            # XCLAIM adds one delivery; with RETRYCOUNT it sets the count instead, which gives
            # back the deliveries that transient errors spent.
            deliveries[entry_id] = max(times - refund, 0) + 1
            by_retrycount.setdefault(deliveries[entry_id] if refund else None, []).append(entry_id)
        entries: list[RawEntry] = []
        for retrycount, ids in by_retrycount.items():
            claimed: Any = await self.redis.xclaim(
                source.key,
                self.group,
                self.consumer,
                min_idle_time=min_idle_ms,
                message_ids=ids,
                retrycount=retrycount,
            )
            entries.extend(claimed)
        entries.sort(key=lambda e: parse_id(e[0]))  # stream order, whatever the grouping
        present = {e[0] for e in entries}
        for entry_id in present:
            self._refunds.pop((source.key, entry_id), None)
        missing = [i for i in deliveries if i not in present]
        if missing:
            await self._count_absent(source, missing)
        items = [_Item(source, eid, f, deliveries.get(eid, 1)) for eid, f in entries]
        await self._process(items)
        return bool(entries)

    async def _count_absent(self, source: StreamSource, ids: list[bytes]) -> None:
        """Of ids XCLAIM did not return, count as lost only those no longer in the stream."""
        pipe = self.redis.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xrange(source.key, min=entry_id, max=entry_id, count=1)
        found = await pipe.execute()
        absent = [i for i, rows in zip(ids, found, strict=True) if not rows]
        for entry_id in ids:
            self._refunds.pop((source.key, entry_id), None)
        if absent:
            await self._count_lost(source, absent)

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
        for eid, _ in entries:  # own entries whose retry waited past claim_idle_ms
            refund = self._refunds.pop((source.key, eid), 0)
            if refund and eid in deliveries:
                deliveries[eid] = max(deliveries[eid] - refund, 1)
        self.log.warning("consumer.claimed", stream=source.key, count=len(entries))
        await self._process([_Item(source, eid, f, deliveries.get(eid, 2)) for eid, f in entries])
        return True

    async def _count_lost(self, source: StreamSource, ids: list[bytes]) -> None:
        """Pending ids whose bodies were trimmed away: acknowledged, counted, logged. Nobody
        can be working on an entry that no longer exists, so the XACK takes nothing away."""
        self.stats.lost += len(ids)
        m.ENTRIES_LOST.labels(self.service, self.group, source.key).inc(len(ids))
        self.log.error("consumer.entries_lost", stream=source.key, count=len(ids))
        await self.redis.xack(source.key, self.group, *ids)

    async def _maybe_reap(self, now: float) -> None:
        """Remove this group's consumers that hold nothing and have been idle past
        `consumer_reap_idle_ms`: with a name per process the table stays bounded (DESIGN §11)."""
        reap_idle_ms = self.settings.consumer_reap_idle_ms
        if not self.burst and now - self._last_reap < min(60.0, reap_idle_ms / 4000):
            return
        self._last_reap = now
        try:
            await self._reap_idle(reap_idle_ms)
        except NoPermissionError as exc:  # housekeeping, not the runtime's job: never fatal
            self._last_reap = float("inf")
            self.log.error("consumer.reap_refused", error=str(exc))

    async def _reap_idle(self, reap_idle_ms: int) -> None:
        for source in self.sources:
            consumers: Any = await self.redis.xinfo_consumers(source.key, self.group)
            for info in consumers:
                name = text(info["name"])
                if name == self.consumer or int(info["pending"]) or info["idle"] < reap_idle_ms:
                    continue
                removed: Any = await self._reap(
                    keys=[source.key], args=[self.group, name, reap_idle_ms]
                )
                if removed:
                    self.log.info("consumer.reaped", stream=source.key, consumer=name)

    # ---- processing ------------------------------------------------------------------
    async def _process(self, items: list[_Item]) -> None:
        batch = _Batch()
        by_batch_type: dict[tuple[str, str], list[_Item]] = {}
        by_subject: dict[str, list[_Item]] = {}
        trimmed: list[_Item] = []
        for item in items:
            if item.fields is None:  # body trimmed while pending
                trimmed.append(item)
                continue
            if item.deliveries > self.settings.max_deliveries:
                # Its handler never finished (the process died in it): do not run it again.
                reason = f"delivery cap: delivered {item.deliveries} times, never acknowledged"
                batch.dead.append((item, reason))
                continue
            problem = self._decode(item)
            if problem is not None or item.event is None:
                batch.dead.append((item, problem or "undecodable"))
                continue
            event_type = item.event.type
            if event_type in self.handlers.batch:
                # grouped per stream too: a batch's outputs go to that stream's market
                by_batch_type.setdefault((event_type, item.stream.key), []).append(item)
            elif event_type in self.handlers.per_event:
                by_subject.setdefault(item.event.envelope.subject, []).append(item)
            else:
                batch.acks.append(item)  # a type this group does not care about
        self._conflate(by_batch_type)
        # no await before this: a batch read later must find this one's subjects registered
        await self._run_subjects(list(by_subject.items()), batch)
        for item in trimmed:
            await self._count_lost(item.stream, [item.entry_id])
            item.acked = True
        for (event_type, _), group_items in by_batch_type.items():
            if batch.transient is None and await self._run_batch(event_type, group_items, batch):
                batch.acks.extend(group_items)
        try:
            await self._commit(batch)
        finally:
            # A delivery that ended for a reason not its own (a transient error here or in
            # another entry of the batch) is given back before the retry.
            for item in items:
                if not (item.acked or item.failed):
                    key = (item.stream.key, item.entry_id)
                    self._refunds[key] = self._refunds.get(key, 0) + 1
            if len(self._refunds) > 100_000:  # ids acked by a reply that was lost
                self._refunds.clear()
        if batch.transient is not None:
            raise batch.transient

    def _conflate(self, batches: dict[tuple[str, str], list[_Item]]) -> None:
        """When behind, drop the decoded pings superseded within this read (per stream: one
        market each). At pace a read is a few entries with little to drop, and the pass would
        cost more than it saves."""
        if self.conflation is None or not self._catching_up():
            return
        for items in batches.values():
            locations = [
                (item, item.event, item.event.data)
                for item in items
                if item.event is not None and isinstance(item.event.data, DriverLocationV1)
            ]
            kept = conflate([data.pings for _, _, data in locations], self.conflation)
            for (item, event, data), pings in zip(locations, kept, strict=True):
                if pings is not None:
                    item.conflated = len(data.pings) - len(pings)
                    item.event = replace(event, data=DriverLocationV1.model_construct(pings=pings))

    def _decode(self, item: _Item) -> str | None:
        """Decode and validate; the reason it cannot be, or None."""
        assert item.fields is not None
        try:
            item.event = decode(item.fields, item.stream.market, parse_id(item.entry_id)[0])
        except InvalidEvent as exc:
            return exc.detail
        except Exception as exc:  # bytes that are not UTF-8, or anything else a decoder meets
            return f"undecodable: {type(exc).__name__}: {exc}"
        return None

    async def _run_subjects(self, subjects: list[tuple[str, list[_Item]]], batch: _Batch) -> None:
        """Events of one subject (a ride, a driver) in stream order; up to `concurrency`
        subjects at once, so one handler's round trips to Redis do not hold up the others. A
        subject also held by a batch read earlier waits for that batch to finish with it."""
        loop = asyncio.get_running_loop()
        turns: list[tuple[str, list[_Item], asyncio.Future[None] | None, asyncio.Future[None]]] = []
        for subject, subject_items in subjects:
            mine: asyncio.Future[None] = loop.create_future()
            turns.append((subject, subject_items, self._subject_turns.get(subject), mine))
            self._subject_turns[subject] = mine
        lanes = iter(turns)

        async def lane() -> None:
            for _, subject_items, before, turn in lanes:
                if before is not None:
                    await before
                for item in subject_items:
                    if batch.transient is not None:
                        return  # Redis is away: leave the rest pending, unspent
                    if await self._run_one(item, batch):
                        batch.acks.append(item)
                turn.set_result(None)

        try:
            await asyncio.gather(*(lane() for _ in range(min(self.concurrency, len(subjects)))))
        finally:
            for subject, _, _, mine in turns:
                if not mine.done():
                    mine.set_result(None)
                if self._subject_turns.get(subject) is mine:
                    del self._subject_turns[subject]

    async def _run_one(self, item: _Item, batch: _Batch) -> bool:
        assert item.event is not None
        handler = self.handlers.per_event[item.event.type]
        started = time.perf_counter()
        try:
            produced = await handler(item.event, self.deps)
        except Exception as exc:
            self._failed(item, exc, batch)
            return False
        m.HANDLER_SECONDS.labels(self.service, item.event.type).observe(
            time.perf_counter() - started
        )
        route = self.producer.route
        batch.outgoing.extend((route(e, item.stream.market), e, [item]) for e in produced or ())
        return True

    async def _run_batch(self, event_type: str, items: list[_Item], batch: _Batch) -> bool:
        handler = self.handlers.batch[event_type]
        started = time.perf_counter()
        try:
            produced = await handler([i.event for i in items if i.event is not None], self.deps)
        except Exception as exc:
            for item in items:
                self._failed(item, exc, batch)
            return False
        m.HANDLER_SECONDS.labels(self.service, event_type).observe(time.perf_counter() - started)
        market = items[0].stream.market
        batch.outgoing.extend((self.producer.route(e, market), e, items) for e in produced or ())
        return True

    def _failed(self, item: _Item, exc: Exception, batch: _Batch) -> None:
        assert item.event is not None
        # a lost lease is no more the event's fault than a Redis blip: the delivery is unspent
        transient = is_transient(exc) or isinstance(exc, LeaseLost)
        if transient:
            batch.transient = batch.transient or exc
        else:
            item.failed = True
            self.stats.failed += 1
            m.EVENTS_FAILED.labels(self.service, self.group, item.event.type).inc()
        self.log.warning(
            "consumer.handler_failed",
            stream=item.stream.key,
            entry_id=item.entry_id.decode(),
            event_id=item.event.id,
            type=item.event.type,
            deliveries=item.deliveries,
            transient=transient,
            traceparent=item.event.envelope.traceparent or None,
            error=f"{type(exc).__name__}: {exc}",
        )
        if item.failed and item.deliveries >= self.settings.max_deliveries:
            reason = f"failed {item.deliveries} deliveries: {type(exc).__name__}: {exc}"
            batch.dead.append((item, reason))

    async def _commit(self, batch: _Batch) -> None:
        """Publish follow-ups and dead letters (one pipeline, every reply checked), then XACK
        only the entries all of whose writes went in. A refused XADD (OOM, NOPERM, WRONGTYPE)
        leaves its entry pending for a retry: never an ack without the effect."""
        if not (batch.acks or batch.dead or batch.outgoing):
            return
        writes: list[tuple[str, dict[bytes, bytes], int | None, list[_Item]]] = [
            (stream, env.to_fields(), self.producer._maxlen(stream), owners)
            for stream, env, owners in batch.outgoing
        ]
        for item, reason in batch.dead:
            dead_fields = dead_letter_fields(
                stream=item.stream.key,
                group=self.group,
                consumer=self.consumer,
                entry_id=item.entry_id.decode(errors="replace"),
                fields=item.fields,
                reason=reason,
                deliveries=item.deliveries,
            )
            writes.append((self.global_keys.dead_letters, dead_fields, DEAD_LETTER_MAXLEN, [item]))
        if writes:
            pipe = self.redis.pipeline(transaction=False)
            for stream, fields, maxlen, _ in writes:
                pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
            replies = await pipe.execute(raise_on_error=False)
            for (stream, _, _, owners), reply in zip(writes, replies, strict=True):
                if isinstance(reply, Exception):
                    self._write_refused(stream, owners, reply, batch)
                else:  # appended, whether or not its entry's ack follows
                    m.EVENTS_PUBLISHED.labels(stream).inc()
        done = [i for i in batch.acks + [d[0] for d in batch.dead] if i.written]
        by_stream: dict[str, list[_Item]] = {}
        for item in done:
            by_stream.setdefault(item.stream.key, []).append(item)
        if by_stream:
            pipe = self.redis.pipeline(transaction=False)
            for stream, stream_items in by_stream.items():
                pipe.xack(stream, self.group, *(i.entry_id for i in stream_items))
            acks = await pipe.execute(raise_on_error=False)
            for stream_items, reply in zip(by_stream.values(), acks, strict=True):
                if isinstance(reply, Exception):
                    raise reply  # NOGROUP or a blip: the run loop handles it
                for item in stream_items:
                    item.acked = True
        self._count_committed(batch)

    def _write_refused(
        self, stream: str, owners: list[_Item], error: Exception, batch: _Batch
    ) -> None:
        transient = is_transient(error)
        if transient:
            batch.transient = batch.transient or error
        for item in owners:
            item.written = False
            if not transient and not item.failed:
                item.failed = True  # e.g. WRONGTYPE, NOPERM: spends a delivery like a bug would
                self.stats.failed += 1
        m.WRITES_REFUSED.labels(self.service, self.group, str(error).split(" ", 1)[0]).inc()
        self.log.error(
            "consumer.write_refused",
            stream=stream,
            entries=[i.entry_id.decode(errors="replace") for i in owners],
            transient=transient,
            error=f"{type(error).__name__}: {error}",
        )

    def _count_committed(self, batch: _Batch) -> None:
        for item, reason in batch.dead:
            if not item.acked:
                continue
            self.stats.dead_lettered += 1
            m.EVENTS_DEAD_LETTERED.labels(self.service, self.group, reason.split(":")[0]).inc()
            self.log.error(
                "consumer.dead_lettered",
                stream=item.stream.key,
                entry_id=item.entry_id.decode(errors="replace"),
                # from the raw fields, as the dead letter has it: an entry that failed
                # validation has no decoded event, yet usually an id worth searching for
                event_id=envelope_attribute(item.fields, "id") or None,
                type=envelope_attribute(item.fields, "type") or None,
                reason=reason,
            )
        conflated = 0
        for item in batch.acks:
            if item.acked:
                conflated += item.conflated
                self.stats.processed += 1
                if item.event is not None:
                    m.EVENTS_PROCESSED.labels(self.service, self.group, item.event.type).inc()
        if conflated:
            self.stats.conflated += conflated
            m.PINGS_CONFLATED.labels(self.service, self.group).inc(conflated)


def _slot_groups(sources: Sequence[StreamSource], *, on_cluster: bool) -> list[list[StreamSource]]:
    """The sources in groups that one XREADGROUP may name: all of them on one server, one group
    per hash slot on a cluster."""
    if not on_cluster or not sources:
        return [list(sources)]
    groups: dict[int, list[StreamSource]] = {}
    for source in sources:
        groups.setdefault(key_slot(source.key.encode()), []).append(source)
    return list(groups.values())
