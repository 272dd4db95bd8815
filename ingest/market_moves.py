"""A driver whose newest ping is in another market leaves the old one (docs/architecture.md,
"the driver's market"). Without it the old market kept the driver available and in its geo
index: it offered the driver rides there while the driver's view, read in the new market, never
showed the offer.

Each market's keys are in its own slot, so the move is two steps: ingest records the new market
(ingest.driver_homes), then each other market runs leave_market.lua in its own slot: the driver
goes offline there and out of its geo index, and its record there is deleted. Two things run the
second step, both idempotent and both safe against a ping racing them (a record written in the
old market since the move keeps the driver there):
- ingest, right after it records a driver's market, in the background (`run`), when its memory
  had the driver in another one (DriverHomes.moved: not the routine rewrites); another shard's
  failure never holds a ping's 202 up;
- every lookup of the driver's market (status PUT, view) that finds records in several markets.

A driver available in the old market is available in the new one after the move: offline in
the old market, then available in the new (two steps, two slots). Its app still says online, so
a move must not take it off the road; and a status PUT that reached the old market just before
the ping's record was written is carried over, not undone.

A driver holding a ride or an offer in the old market stays there, status, ride and record: its
status PUT and view go to the market of its ride until the ride lets it go; the next lookup or
record write then moves it out. It does not keep a trip across a boundary for long: pings
elsewhere do not restamp the old market's `drivers:seen`, so that market's janitor loses the
driver after `driver_lost_s` (lose_driver.lua) as it would a silent one."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from ingest.driver_homes import DriverHomes
from ridepulse.logs import get_logger
from ridepulse.rides import RideStore

QUEUED_MOVES = 1_000  # record writes waiting for their leave steps; past it one waits for a lookup
IDLE_WAIT_S = 1.0  # how often an idle loop looks at its stop event


class MarketMoves:
    def __init__(self, homes: DriverHomes, stores: Mapping[str, RideStore]) -> None:
        self.homes = homes
        self.stores = stores
        self._queue: asyncio.Queue[tuple[dict[str, str], int]] = asyncio.Queue(QUEUED_MOVES)

    def recorded(self, homes: dict[str, str], written_ms: int) -> None:
        """The batcher wrote these drivers' records (driver → market) at `written_ms`."""
        try:
            self._queue.put_nowait((dict(homes), written_ms))
        except asyncio.QueueFull:
            get_logger().warning("ingest.market_moves_dropped", drivers=len(homes))

    async def run(self, stop: asyncio.Event) -> None:
        """Runs the leave steps of the records ingest wrote, until `stop`."""
        while not stop.is_set():
            try:
                homes, written_ms = await asyncio.wait_for(self._queue.get(), IDLE_WAIT_S)
            except TimeoutError:
                continue
            await self.leave_others(homes, written_ms)

    async def leave_others(
        self, homes: Mapping[str, str], moved_at_ms: int, markets: Sequence[str] = ()
    ) -> dict[str, str]:
        """Each driver leaves every market (of `markets`, if given) but its new one; returns
        driver → the first market where it holds a ride or an offer, and stays. A driver that
        was available in a market it left is made available in its new one (`carry`). A market
        that fails is logged and skipped: the next lookup of the driver, or the next write of
        its record, tries again."""
        markets = list(markets or self.stores)
        leaving = {m: [d for d, home in homes.items() if home != m] for m in markets}
        results = await asyncio.gather(
            *(self.stores[m].leave_market(leaving[m], moved_at_ms=moved_at_ms) for m in markets),
            return_exceptions=True,
        )
        holding: dict[str, str] = {}
        carried: dict[str, int] = {}  # driver → when it went offline in the market it left
        for market_id, result in zip(markets, results, strict=True):
            if isinstance(result, BaseException):
                get_logger().warning(
                    "ingest.market_move_failed", market=market_id, error=str(result)
                )
                continue
            for driver_id in result.kept:
                holding.setdefault(driver_id, market_id)
            for driver_id in result.carried:
                carried[driver_id] = max(carried.get(driver_id, 0), result.left_at_ms)
        await self.carry({d: (homes[d], left_at) for d, left_at in carried.items()})
        return holding

    async def carry(self, carried: Mapping[str, tuple[str, int]]) -> None:
        """Drivers that went offline in a market they left (driver → (new market, when)) go
        available in the new one. Their app still says online and nothing told them otherwise:
        without this no market offered them a ride until their next status PUT. A status set in
        the new market since they left wins (a PUT offline racing this step). A driver whose
        first ping there is not applied yet goes available unindexed, and matching-geo indexes
        it when it applies the ping (update_positions.lua indexes available drivers)."""
        drivers = list(carried)
        results = await asyncio.gather(
            *(
                self.stores[market_id].set_driver_status(
                    driver_id, "available", unless_set_since_ms=left_at_ms
                )
                for driver_id, (market_id, left_at_ms) in carried.items()
            ),
            return_exceptions=True,
        )
        for driver_id, result in zip(drivers, results, strict=True):
            if isinstance(result, BaseException):  # e.g. it took a ride there meanwhile
                get_logger().warning(
                    "ingest.market_carry_failed", driver_id=driver_id, error=str(result)
                )

    async def market_of(self, redis: Any, driver_id: str) -> str | None:
        """The driver's market: the one where it holds a ride or an offer, else that of its
        newest record; None if no market has one. Older records are left on the way."""
        records = await self.homes.records(redis, driver_id)
        if len(records) <= 1:
            return records[0][1] if records else None
        newest_ms, newest = records[0]
        older = [market_id for _, market_id in records[1:]]  # the newest first
        holding = await self.leave_others({driver_id: newest}, newest_ms, older)
        return holding.get(driver_id, newest)
