"""The one Redis reader of a dashboard process: XREAD (no group) on the ride, ETA, surge and
health streams from the last id seen, re-reading the projections an event names. It only reads
Redis and feeds the state; fixed-rate samples live in sampler.py."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import redis.asyncio as aioredis

from dashboard.backfill import StreamEntry, read_back
from dashboard.config import FeedConfig
from dashboard.event_log import Entry, log_entry
from dashboard.ride_view import ride_from_hash, text_hash
from dashboard.state import CityState
from ridepulse.bus.metrics import SKIPPED_ENTRIES
from ridepulse.contracts.envelope import Envelope, now_ms
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.logs import get_logger
from ridepulse.replies import text
from ridepulse.rides.state import TERMINAL


def _ride_ids(entries: Iterable[Entry]) -> Iterator[str]:
    return (e["ride_id"] for e in entries if e["ride_id"])


def _ride_id(envelope: Envelope) -> str | None:
    ride_id = envelope.data.get("ride_id")
    if isinstance(ride_id, str) and ride_id:
        return ride_id
    kind, _, rest = envelope.subject.partition("/")
    return rest if kind == "ride" and rest else None


class FeedReader:
    def __init__(
        self,
        redis: aioredis.Redis,
        state: CityState,
        keys: MarketKeys,
        global_keys: GlobalKeys,
        config: FeedConfig,
        *,
        block_ms: int,
    ) -> None:
        self.redis = redis
        self.state = state
        self.keys = keys
        self.global_keys = global_keys
        self.config = config
        self.block_ms = block_ms
        self.last_ids: dict[str, bytes] = {}
        self.skipped = 0
        self.log = get_logger(component="feed")

    # --- start ------------------------------------------------------------------------------
    async def load(self) -> None:
        """Stream positions first, then the projections: what happens in between is read again
        by XREAD, and re-reading a projection is harmless.

        The ride stream is read back by time over the longest window the page shows (recent
        matches, finished rides), not a fixed count: every ride it names is re-read, which
        seeds the matches and the finished list as if this process had been running."""
        config = self.config
        newest: Any = await self.redis.xrevrange(self.keys.rides, count=1)
        self.last_ids[self.keys.rides] = newest[0][0] if newest else b"0-0"
        recent = await self._read_back(newest[0][0]) if newest else []
        for key in (self.keys.surge_events, self.keys.eta_events, self.global_keys.health):
            last: Any = await self.redis.xrevrange(key, count=1)
            self.last_ids[key] = last[0][0] if last else b"0-0"
        entries = [
            e for _, fields in reversed(recent) if (e := self._log_entry(fields)) is not None
        ]
        self.state.add_events(entries[-config.event_log_size :])
        active_ids: Any = await self.redis.zrange(self.keys.active_rides, 0, -1)
        ride_ids = list(dict.fromkeys([*(text(r) for r in active_ids), *_ride_ids(entries)]))
        # in pipelines of read_count hashes: thousands of rides in one reply would be one
        # long blocking read for the server and one huge buffer here
        for start in range(0, max(len(ride_ids), 1), config.read_count):
            await self.reload(ride_ids[start : start + config.read_count], surge=start == 0)

    async def _read_back(self, newest: bytes) -> list[StreamEntry]:
        """Back from the newest entry, not from TIME (a command the dashboard's Redis user is
        not granted): the window so starts at or before now minus its length."""
        config = self.config
        return await read_back(
            self.redis,
            self.keys.rides,
            newest,
            max(config.match_window_ms, config.finished_ride_ttl_ms),
            page=config.read_count,
            cap=config.backfill_entries_max,
        )

    async def reload(self, rides: Iterable[str] = (), *, surge: bool = False) -> None:
        """Re-read the given ride hashes and the counts (and the surge hash) in one round trip."""
        ride_ids = list(dict.fromkeys(rides))
        pipe = self.redis.pipeline(transaction=False)
        for ride_id in ride_ids:
            pipe.hgetall(self.keys.ride(ride_id))
        pipe.hgetall(self.keys.ride_counts)
        if surge:
            pipe.hgetall(self.keys.surge)
        replies = await pipe.execute()
        now = now_ms()
        for ride_id, raw in zip(ride_ids, replies, strict=False):
            self.state.set_ride(ride_id, ride_from_hash(text_hash(raw)), now)
        counts = text_hash(replies[len(ride_ids)])
        self.state.set_ride_counts(
            {k: int(v) for k, v in counts.items() if v.lstrip("-").isdigit()}
        )
        if surge:
            cells = text_hash(replies[-1])
            self.state.set_surge({c: float(m) for c, m in cells.items() if _is_number(m)})

    async def reconcile(self) -> None:
        """Catch what an event could not tell us (a missed entry, a Redis restart)."""
        active_ids: Any = await self.redis.zrange(self.keys.active_rides, 0, -1)
        active = {text(r) for r in active_ids}
        tracked = {r for r, ride in self.state.rides.items() if ride["status"] not in TERMINAL}
        await self.reload(rides=sorted(active | tracked), surge=True)

    # --- streams ----------------------------------------------------------------------------
    async def read_streams(self) -> None:
        """The market's streams in one XREAD: they share the `{market}` hash tag (one slot)."""
        health = self.global_keys.health
        await self._read({k: v for k, v in self.last_ids.items() if k != health})

    async def read_health(self) -> None:
        """The global health stream has a slot of its own, so it gets a read of its own (one
        multi-key read across slots fails on a cluster)."""
        health = self.global_keys.health
        await self._read({health: self.last_ids[health]})

    async def _read(self, streams: dict[Any, Any]) -> None:
        reply: Any = await self.redis.xread(
            streams, count=self.config.read_count, block=self.block_ms
        )
        ride_ids: list[str] = []
        entries: list[Entry] = []
        surge_changed = False
        for stream, messages in reply or []:
            key = text(stream)
            for entry_id, fields in messages:
                self.last_ids[key] = entry_id  # past it even if it is poison: never stuck on one
                try:
                    envelope = Envelope.from_fields(fields)
                    if key == self.global_keys.health:
                        self.state.observe_heartbeat({**envelope.data, "time": envelope.time})
                    elif key == self.keys.surge_events:
                        surge_changed = True
                    elif (ride_id := _ride_id(envelope)) is not None:
                        ride_ids.append(ride_id)
                    if key == self.keys.rides:
                        entries.append(log_entry(envelope))
                except Exception as exc:  # bad bytes, bad JSON, bad payload: skip, count, say so
                    self._skip(key, entry_id, exc)
        self.state.add_events(entries)
        if ride_ids or surge_changed:
            await self.reload(ride_ids, surge=surge_changed)

    def _log_entry(self, fields: dict[bytes, bytes]) -> Entry | None:
        try:
            return log_entry(Envelope.from_fields(fields))
        except Exception:  # an entry the consumers dead-letter; the page has nothing to show
            return None

    def _skip(self, stream: str, entry_id: bytes, exc: Exception) -> None:
        """The consumers dead-letter such an entry; the page skips it and carries on."""
        self.skipped += 1
        SKIPPED_ENTRIES.labels("dashboard").inc()
        self.log.warning(
            "feed.entry_skipped",
            stream=stream,
            entry_id=text(entry_id),
            error=f"{type(exc).__name__}: {exc}",
        )


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
