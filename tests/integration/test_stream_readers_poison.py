"""The group-less stream readers (the ingest notifier, the dashboard's feed reader) skip and
count an entry they cannot read, and go on with the next one."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from dashboard.feed import Feed
from ingest.notifier import DriverNotifier
from ridepulse.contracts.registry import make
from ridepulse.keys import MarketKeys
from ridepulse.settings import Settings
from tests.support.bus import expired_events
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

POISON = (
    {b"type": b"ride.\xffoffered", b"data": b"{}"},  # not UTF-8
    {b"type": b"ride.offered", b"data": b"{garbage"},  # not JSON
    {b"type": b"ride.offered", b"data": b"[1, 2]"},  # JSON, not an object
)


def _offer(driver_id: str) -> dict[bytes, bytes]:
    data = {
        "ride_id": "r1",
        "driver_id": driver_id,
        "pickup_eta_s": 90.0,
        "expires_at": 1,
        "attempt": 1,
        "version": 2,
    }
    return make("ride.offered", "ride/r1", data, "test").to_fields()


async def test_the_notifier_skips_a_poison_entry_and_still_delivers_the_next_offer(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)

    async def no_lookup(ride_id: str) -> str | None:
        return None

    notifier = DriverNotifier(redis, [keys.rides], no_lookup)
    queue = notifier.subscribe("d1")
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    try:
        # the reader starts at "$": wait until it blocks, then write
        await wait_until(lambda: _blocked(redis), timeout_s=10, what="the notifier to read")
        for fields in POISON:
            await redis.xadd(keys.rides, fields)  # type: ignore[arg-type]
        await redis.xadd(keys.rides, _offer("d1"))  # type: ignore[arg-type]
        message = await asyncio.wait_for(queue.get(), 30)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert orjson.loads(message)["type"] == "ride.offered"
    assert notifier.skipped == len(POISON)
    assert notifier.failure is None


async def _blocked(redis: aioredis.Redis) -> bool:
    clients: Any = await redis.client_list()
    return any(c.get("cmd") == "xread" for c in clients)


async def test_the_dashboard_reader_skips_a_poison_entry_and_reads_the_next(
    redis: aioredis.Redis, settings: Settings
) -> None:
    feed = Feed(redis, settings)
    await feed.reader.load()
    for fields in POISON:
        await redis.xadd(feed.keys.rides, fields)  # type: ignore[arg-type]
    bad_payload = make("ride.expired", "ride/r9", {"ride_id": "r9", "version": 2}, "t")
    for broken in ({b"time": b"\xff"}, {b"subject": b"ride/\xc3\x28", b"id": b"\xff"}):
        await redis.xadd(feed.keys.rides, bad_payload.to_fields() | broken)  # type: ignore[arg-type]
    good = expired_events(1)[0]
    await redis.xadd(feed.keys.rides, good.to_fields())  # type: ignore[arg-type]
    await feed.reader.read_streams()
    assert feed.reader.skipped == len(POISON) + 2
    assert [e["id"] for e in feed.state.events] == [good.id]
