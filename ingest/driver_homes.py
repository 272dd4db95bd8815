"""Which market each driver last pinged from, recorded by ingest when it accepts the ping.

A driver's status PUT and reads go to the driver's market. The positions hashes cannot say which
in time: matching-geo writes them after it consumes the ping. A driver that went online right
after its first ping in a second market was set available in the default market, and matching-geo
then indexed its position in a market where its status was unknown: its rides expired unoffered.
Ingest knows the market when it accepts the ping, so it records it in the same round trip as the
append, before the 202.

The record lives in the ping's market (`{market}:driver-home:<driver>`, the time it was written),
so a ping touches its market's slot only: on a cluster another shard's failure never holds it up.
A lookup reads the driver's record in every market (one GET each, pipelined) and takes the
newest; the driver then leaves the markets of the older ones (ingest.market_moves), which
deletes their records, unless it holds a ride there.

A record is written only when this process has not written that driver's market lately: when the
market changed, or half the record's TTL has passed. That is a write per driver per few minutes,
not per ping. The TTL (`driver_evict_s`) lets departed drivers' records go as their hashes do.
With one market there is nothing to record and no lookup."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from ridepulse.keys import MarketKeys

MAX_REMEMBERED = 1_000_000  # drivers whose last write this process remembers (~100 MB at most)


class DriverHomes:
    def __init__(
        self,
        prefix: str,
        market_ids: Iterable[str],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = {market_id: MarketKeys(market_id, prefix) for market_id in market_ids}
        self.ttl_s = max(1, round(ttl_s))
        self._clock = clock
        # The records' times, compared across ingest processes (the newest is the driver's
        # market; leave_market.lua keeps a driver whose old record is not older). Wall clocks
        # suffice: the two records of a real move are written at least a ping interval apart
        # (seconds), far more than NTP-synced hosts' skew (milliseconds). A skew beyond the gap
        # would make the old market look newest until the driver's next record write.
        self._wall_clock = wall_clock
        self._written: dict[str, tuple[str, float]] = {}  # driver → (market, rewrite due)

    def unrecorded(self, market_id: str, driver_ids: Iterable[str]) -> dict[str, str]:
        """driver → market, of the drivers whose record must be (re)written with these pings."""
        now = self._clock()
        written = self._written
        due: dict[str, str] = {}
        for driver_id in driver_ids:
            last = written.get(driver_id)
            if last is None or last[0] != market_id or last[1] <= now:
                due[driver_id] = market_id
        return due

    def write(self, pipe: Any, homes: dict[str, str]) -> int:
        """Queue the records' writes on `pipe`; returns their time (ms)."""
        written_ms = round(self._wall_clock() * 1000)
        for driver_id, market_id in homes.items():
            pipe.set(self.keys[market_id].driver_home(driver_id), written_ms, ex=self.ttl_s)
        return written_ms

    def moved(self, homes: dict[str, str]) -> dict[str, str]:
        """Of records about to be marked written, those whose market changed since this process
        last wrote the driver's: only they need leave steps. The routine rewrite every TTL/2, or
        every driver's first write after a restart, ran a leave step in every other market (on a
        cluster, other shards) and filled the leave queue, dropping real moves. A move this
        memory misses (one made while this process restarted) is made by the driver's next
        lookup."""
        written = self._written
        return {
            driver_id: market_id
            for driver_id, market_id in homes.items()
            if (last := written.get(driver_id)) is not None and last[0] != market_id
        }

    def recorded(self, homes: dict[str, str]) -> None:
        """The records are in Redis: skip them until the market changes or half the TTL passes."""
        if len(self._written) + len(homes) > MAX_REMEMBERED:
            self._written.clear()  # a forgotten driver costs one more write, nothing else
        rewrite_at = self._clock() + self.ttl_s / 2
        for driver_id, market_id in homes.items():
            self._written[driver_id] = (market_id, rewrite_at)

    async def records(self, redis: Any, driver_id: str) -> list[tuple[int, str]]:
        """The driver's records as (written ms, market), the newest first (ingest.market_moves
        takes the driver out of the older ones' markets)."""
        pipe = redis.pipeline(transaction=False)
        for keys in self.keys.values():
            pipe.get(keys.driver_home(driver_id))
        found = [
            (int(written_ms), market_id)
            for market_id, written_ms in zip(self.keys, await pipe.execute(), strict=True)
            if written_ms is not None
        ]
        return sorted(found, reverse=True)
