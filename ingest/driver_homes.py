"""Which market each driver last pinged from, recorded by ingest when it accepts the ping.

A driver's status PUT and reads go to the driver's market. The positions hashes cannot say which
in time: matching-geo writes them after it consumes the ping. A driver that went online right
after its first ping in a second market was set available in the default market, and matching-geo
then indexed its position in a market where its status was unknown: its rides expired unoffered.
Ingest knows the market when it accepts the ping, so it records it in the same round trip as the
append, before the 202.

A record is written only when this process has not written that driver's market lately: when the
market changed, or half the record's TTL has passed. That is a write per driver per few minutes,
not per ping. The TTL (`driver_evict_s`) lets departed drivers' records go as their hashes do.
With one market there is nothing to record and no lookup."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from ridepulse.keys import GlobalKeys

MAX_REMEMBERED = 1_000_000  # drivers whose last write this process remembers (~100 MB at most)


class DriverHomes:
    def __init__(
        self, keys: GlobalKeys, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.keys = keys
        self.ttl_s = max(1, round(ttl_s))
        self._clock = clock
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

    def write(self, pipe: Any, homes: dict[str, str]) -> None:
        for driver_id, market_id in homes.items():
            pipe.set(self.keys.driver_market(driver_id), market_id, ex=self.ttl_s)

    def recorded(self, homes: dict[str, str]) -> None:
        """The records are in Redis: skip them until the market changes or half the TTL passes."""
        if len(self._written) + len(homes) > MAX_REMEMBERED:
            self._written.clear()  # a forgotten driver costs one more write, nothing else
        rewrite_at = self._clock() + self.ttl_s / 2
        for driver_id, market_id in homes.items():
            self._written[driver_id] = (market_id, rewrite_at)

    async def market_of(self, redis: Any, driver_id: str) -> str | None:
        raw = await redis.get(self.keys.driver_market(driver_id))
        return raw.decode() if raw is not None else None
