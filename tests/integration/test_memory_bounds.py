"""The documented memory bounds (docs/reliability.md), against the real server and through the
code that writes each key: a finished ride's hash expires a week after it finishes (an active
one never does), `rp:health` stays near 10,000 entries and the dead letters near 100,000."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from matching.geo_index import update_positions
from ridepulse.bus.handlers import HandlerTable
from ridepulse.bus.heartbeat import Heartbeat
from ridepulse.contracts.events import Ping, Point
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.rides import RideStore
from ridepulse.rides.clock import server_time_ms
from ridepulse.settings import Settings
from tests.support.bus import runtime
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

# The documented figures, written out here rather than imported: the test guards the promise.
WEEK_S = 7 * 86400
HEALTH_CAP = 10_000
DEAD_LETTER_CAP = 100_000

PICKUP = Point(lat=37.7749, lon=-122.4194)
DROPOFF = Point(lat=37.7549, lon=-122.4194)


async def request(store: RideStore, ride_id: str, deadline_s: float = 60) -> None:
    await store.request_ride(
        ride_id=ride_id, rider_id="u1", pickup=PICKUP, dropoff=DROPOFF, deadline_s=deadline_s
    )


async def matched_ride(redis: aioredis.Redis, store: RideStore, ride_id: str, driver: str) -> None:
    now = await server_time_ms(redis)
    ping = Ping(driver_id=driver, lat=PICKUP.lat + 0.001, lon=PICKUP.lon, ts=now)
    await update_positions(redis, store.keys, [ping])
    await store.set_driver_status(driver, "available")
    await request(store, ride_id)
    assert await store.offer(ride_id=ride_id, driver_id=driver, pickup_eta_s=60, offer_timeout_s=60)
    assert (await store.accept(ride_id, driver)).status == "matched"


async def node_entries(redis: aioredis.Redis) -> int:
    """Entries a stream node holds at most: approximate trimming (MAXLEN ~) drops whole nodes
    only, so a capped stream may run over its cap by less than one node."""
    config = cast(dict[str, str], await redis.config_get("stream-node-max-entries"))
    return int(config["stream-node-max-entries"])


async def assert_capped(redis: aioredis.Redis, stream: str, cap: int, written: str) -> None:
    """The stream holds its cap, plus less than one stream node (approximate trimming)."""
    length = await redis.xlen(stream)
    over = await node_entries(redis)
    assert cap <= length < cap + over, (
        f"{written} left {length} entries in {stream}; expected the cap {cap} "
        f"plus less than one stream node ({over})"
    )


async def test_a_finished_rides_hash_expires_after_a_week_and_an_active_ones_never(
    redis: aioredis.Redis, keys: MarketKeys, store: RideStore
) -> None:
    await matched_ride(redis, store, "sf-done", "d1")
    await store.arrived("sf-done", "d1")
    await store.start("sf-done", "d1")
    assert (await store.complete("sf-done", "d1")).status == "completed"
    await request(store, "sf-cancelled")
    await store.cancel("sf-cancelled", by="rider", actor_id="u1")
    await request(store, "sf-expired", deadline_s=0.05)

    async def expired() -> bool:
        return await store.expire("sf-expired") is not None

    await wait_until(expired, timeout_s=10, what="the ride past its deadline to expire")
    await request(store, "sf-waiting")
    await matched_ride(redis, store, "sf-matched", "d2")

    for ride_id, status in (
        ("sf-done", "completed"),
        ("sf-cancelled", "cancelled"),
        ("sf-expired", "expired"),
    ):
        ride = await store.get(ride_id)
        assert ride is not None and ride.status == status
        ttl_s = await redis.ttl(keys.ride(ride_id))
        assert WEEK_S - 60 <= ttl_s <= WEEK_S, f"{status} ride's hash TTL {ttl_s}s, not a week"
    for ride_id in ("sf-waiting", "sf-matched"):
        ttl_s = await redis.ttl(keys.ride(ride_id))
        assert ttl_s == -1, f"active ride {ride_id}'s hash has TTL {ttl_s}, expected none (-1)"


async def test_the_health_stream_stays_near_its_cap_of_10000_heartbeats(
    redis: aioredis.Redis, settings: Settings
) -> None:
    health = GlobalKeys(settings.key_prefix).health
    heartbeat = Heartbeat(
        redis, prefix=settings.key_prefix, service="test", consumer="c1", interval_s=1.0
    )
    beats, at_once = HEALTH_CAP + 1_500, 100
    for _ in range(beats // at_once):
        await asyncio.gather(*(heartbeat.beat() for _ in range(at_once)))
    await assert_capped(redis, health, HEALTH_CAP, f"{beats} heartbeats")
    last: Any = await redis.xrevrange(health, count=1)
    assert last and last[0][1][b"type"] == b"service.heartbeat"


async def test_the_dead_letter_stream_stays_near_its_cap_of_100000(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """Past the cap through the consumer runtime's own dead-lettering (entries that do not
    decode are dead-lettered on their first delivery); the newest letters are the ones kept."""
    rides = MarketKeys("sf", settings.key_prefix).rides
    dead_letters = GlobalKeys(settings.key_prefix).dead_letters
    poisons, chunk = DEAD_LETTER_CAP + 2_000, 10_000
    for start in range(0, poisons, chunk):
        pipe = redis.pipeline(transaction=False)
        for n in range(start, min(poisons, start + chunk)):
            pipe.xadd(rides, {b"not-an-event": str(n).encode()})
        await pipe.execute()
    last_poison: Any = await redis.xrevrange(rides, count=1)
    consumer = runtime(redis, settings, HandlerTable())
    started = time.monotonic()
    await asyncio.wait_for(consumer.run(), timeout=120)  # burst: returns when all are handled
    elapsed_s = time.monotonic() - started
    try:
        assert consumer.stats.dead_lettered == poisons, consumer.stats
        done = f"{poisons} dead letters (in {elapsed_s:.1f}s)"
        await assert_capped(redis, dead_letters, DEAD_LETTER_CAP, done)
        newest: Any = await redis.xrevrange(dead_letters, count=1)
        assert newest[0][1][b"entry_id"] == last_poison[0][0]
    finally:
        await redis.delete(rides, dead_letters)  # ~20 MB the session's server need not keep
