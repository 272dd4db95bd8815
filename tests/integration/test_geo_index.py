"""Matching's geo index against the real server: batches of pings keep positions for every
driver but index only available ones; stale pings never win; the search returns candidates."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
import redis.asyncio as aioredis

from matching.geo_filter import PositionFilter
from matching.geo_index import drop_stale, update_positions
from pricing.deps import PricingDeps
from pricing.supply import sample_supply
from ridepulse.contracts.envelope import now_ms
from ridepulse.contracts.events import Ping
from ridepulse.keys import MarketKeys
from ridepulse.pickups import nearby_available
from ridepulse.positions import parse_position
from ridepulse.rides.clock import server_time_ms
from ridepulse.rides.store import RideStore
from ridepulse.settings import Settings
from tests.support.ingest import start

pytestmark = pytest.mark.integration

PICKUP = (37.7749, -122.4194)


def ping(driver_id: str, north_m: float, ts: int) -> Ping:
    return Ping(
        driver_id=driver_id, lat=PICKUP[0] + north_m / 111_320, lon=PICKUP[1], ts=ts, heading=0
    )


async def indexed(redis: aioredis.Redis, keys: MarketKeys) -> set[str]:
    return {m.decode() for m in cast(list[bytes], await redis.zrange(keys.drivers_geo, 0, -1))}


async def test_only_available_drivers_enter_the_index_but_every_position_is_kept(
    redis: aioredis.Redis, keys: MarketKeys
) -> None:
    await redis.hset(
        keys.driver_statuses, mapping={"free": "available", "busy": "on_trip", "off": "offline"}
    )
    moved = await update_positions(
        redis,
        keys,
        [ping("free", 100, 10), ping("busy", 50, 10), ping("off", 10, 10), ping("new", 5, 10)],
    )
    assert moved == 4
    assert await indexed(redis, keys) == {"free"}
    positions = await redis.hgetall(keys.positions)
    assert set(positions) == {b"free", b"busy", b"off", b"new"}
    free = parse_position(positions[b"free"])
    assert free is not None and free.ts == 10 and abs(free.lat - (PICKUP[0] + 100 / 111_320)) < 1e-6


async def test_a_ping_older_than_the_stored_one_changes_nothing(
    redis: aioredis.Redis, keys: MarketKeys
) -> None:
    await redis.hset(keys.driver_statuses, "d1", "available")
    assert await update_positions(redis, keys, [ping("d1", 100, 20)]) == 1
    # within a batch the newest wins; across batches an older (reordered, redelivered) one loses
    assert await update_positions(redis, keys, [ping("d1", 500, 10), ping("d1", 900, 15)]) == 0
    stored = parse_position(await redis.hget(keys.positions, "d1"))
    assert stored is not None and stored.ts == 20
    assert await update_positions(redis, keys, [ping("d1", 300, 25), ping("d1", 200, 30)]) == 1
    stored = parse_position(await redis.hget(keys.positions, "d1"))
    assert stored is not None and stored.ts == 30


async def test_search_returns_fresh_available_drivers_nearest_first(
    redis: aioredis.Redis, keys: MarketKeys
) -> None:
    drivers = {f"d{i}": i * 100.0 for i in range(1, 6)}  # 100 m .. 500 m north of the pickup
    await redis.hset(keys.driver_statuses, mapping=dict.fromkeys(drivers, "available"))
    await update_positions(redis, keys, [ping(d, north, 1_000) for d, north in drivers.items()])
    # freshness is the server's receive time: age every driver but d2 and d4 by a minute
    now = await server_time_ms(redis)
    await redis.zadd(keys.drivers_seen, dict.fromkeys(("d1", "d3", "d5"), now - 60000))
    found = await nearby_available(
        redis, keys, *PICKUP, radius_m=1_000, fresh_within_ms=3_600_000, exclude=["d3"]
    )
    assert [d.driver_id for d in found] == ["d1", "d2", "d4", "d5"]
    assert [round(d.distance_m, -1) for d in found] == [100, 200, 400, 500]
    fresh = await nearby_available(redis, keys, *PICKUP, radius_m=1_000, fresh_within_ms=30_000)
    assert [d.driver_id for d in fresh] == ["d2", "d4"]
    assert await drop_stale(redis, keys, stale_before_ms=now - 30_000) == 3
    assert await indexed(redis, keys) == {"d2", "d4"}
    # a later sweep reads only drivers gone stale since its previous cutoff
    await redis.zadd(keys.drivers_seen, {"d2": now - 40_000})
    assert await drop_stale(redis, keys, now - 30_000, since_ms=now - 50_000) == 1
    assert await indexed(redis, keys) == {"d4"}


async def test_a_driver_going_available_while_its_first_ping_is_applied_is_indexed(
    redis: aioredis.Redis, keys: MarketKeys
) -> None:
    """Each driver pings once and goes available at the same moment, on separate connections:
    whichever lands first, the driver must end up in the geo set (a read-then-write batch
    update left some out until their next ping)."""
    store = RideStore(redis, keys, "test")
    drivers = [f"race{i}" for i in range(200)]

    async def ping_then_available(driver_id: str) -> None:
        await asyncio.gather(
            update_positions(redis, keys, [ping(driver_id, 100, 1_000)]),
            store.set_driver_status(driver_id, "available"),
        )

    await asyncio.gather(*(ping_then_available(d) for d in drivers))
    assert await indexed(redis, keys) == set(drivers)


async def test_a_batch_larger_than_one_script_call_is_applied_whole(
    redis: aioredis.Redis, keys: MarketKeys
) -> None:
    drivers = [f"bulk{i}" for i in range(5_000)]  # more than Lua's unpack() takes at once
    await redis.hset(keys.driver_statuses, mapping=dict.fromkeys(drivers, "available"))
    assert await update_positions(redis, keys, [ping(d, 50, 7) for d in drivers]) == len(drivers)
    assert await indexed(redis, keys) == set(drivers)
    assert await redis.zcard(keys.drivers_seen) == len(drivers)


async def test_a_parked_driver_is_written_only_when_its_freshness_is_due_and_stays_offerable(
    redis: aioredis.Redis, keys: MarketKeys
) -> None:
    """With the filter, pings within 20 m of the last written position cost Valkey nothing,
    yet the driver never goes stale: it is written again once its freshness is due."""
    clock = [0]
    only = PositionFilter(min_move_m=20, refresh_ms=10_000, clock_ms=lambda: clock[0])
    await redis.hset(keys.driver_statuses, "parked", "available")
    assert await update_positions(redis, keys, [ping("parked", 100, 1)], only) == 1
    seen_first = await redis.zscore(keys.drivers_seen, "parked")
    for ts in range(2, 5):  # GPS jitter every 3 s
        clock[0] += 3_000
        assert await update_positions(redis, keys, [ping("parked", 100 + ts, ts)], only) == 0
    stored = parse_position(cast(bytes, await redis.hget(keys.positions, "parked")))
    assert stored is not None and stored.ts == 1 and only.skipped == 3
    clock[0] += 3_000  # 12 s since the write: due
    await asyncio.sleep(0.01)  # the server clock moves too
    assert await update_positions(redis, keys, [ping("parked", 101, 5)], only) == 1
    assert cast(float, await redis.zscore(keys.drivers_seen, "parked")) > cast(float, seen_first)
    found = await nearby_available(redis, keys, *PICKUP, radius_m=1_000, fresh_within_ms=30_000)
    assert [d.driver_id for d in found] == ["parked"]


async def test_a_moving_driver_restamps_seen_every_other_ping_and_stays_offerable(
    redis: aioredis.Redis, keys: MarketKeys
) -> None:
    """Every moving ping is written, but drivers_seen is restamped only once this process's
    stamp is a step (5 s here) old: a driver pinging every 4 s pays the zset every other ping."""
    clock = [0]
    only = PositionFilter(min_move_m=20, refresh_ms=10_000, clock_ms=lambda: clock[0])
    await redis.hset(keys.driver_statuses, "d1", "available")
    assert await update_positions(redis, keys, [ping("d1", 0, 1)], only) == 1
    first = await redis.zscore(keys.drivers_seen, "d1")
    await asyncio.sleep(0.01)  # the server clock moves on
    clock[0] += 4_000
    assert await update_positions(redis, keys, [ping("d1", 40, 2)], only) == 1
    assert await redis.zscore(keys.drivers_seen, "d1") == first  # written, not restamped
    stored = parse_position(cast(bytes, await redis.hget(keys.positions, "d1")))
    assert stored is not None and stored.ts == 2
    clock[0] += 4_000
    assert await update_positions(redis, keys, [ping("d1", 80, 3)], only) == 1
    assert cast(float, await redis.zscore(keys.drivers_seen, "d1")) > cast(float, first)
    found = await nearby_available(redis, keys, *PICKUP, radius_m=1_000, fresh_within_ms=30_000)
    assert [d.driver_id for d in found] == ["d1"]


async def test_a_driver_whose_pings_were_skipped_is_indexed_when_it_goes_available(
    redis: aioredis.Redis, keys: MarketKeys
) -> None:
    """Skipping never leaves a driver out of the index: the ride scripts' index_driver puts a
    driver going available in the geo set at its last written position, atomically."""
    store = RideStore(redis, keys, "test")
    only = PositionFilter(min_move_m=20, refresh_ms=10_000, clock_ms=lambda: 0)
    await store.set_driver_status("d1", "offline")
    assert await update_positions(redis, keys, [ping("d1", 200, 1)], only) == 1
    assert await update_positions(redis, keys, [ping("d1", 210, 2)], only) == 0  # skipped
    assert await indexed(redis, keys) == set()
    await store.set_driver_status("d1", "available")
    found = await nearby_available(redis, keys, *PICKUP, radius_m=1_000, fresh_within_ms=30_000)
    assert [(d.driver_id, round(d.distance_m, -1)) for d in found] == [("d1", 200)]


async def test_a_free_driver_beyond_the_nearest_who_declined_is_still_found(
    redis: aioredis.Redis, keys: MarketKeys
) -> None:
    """The search took the nearest 30 and skipped the decliners after counting: 30 drivers who
    declined a ride hid every other driver from it, at every radius, until the ride expired."""
    decliners = {f"no{i}": 5.0 + i * 5 for i in range(30)}  # 5 m .. 150 m from the pickup
    drivers = {**decliners, "far": 600.0}
    await redis.hset(keys.driver_statuses, mapping=dict.fromkeys(drivers, "available"))
    await update_positions(redis, keys, [ping(d, north, 1_000) for d, north in drivers.items()])
    found = await nearby_available(
        redis, keys, *PICKUP, radius_m=1_000, fresh_within_ms=30_000, exclude=list(decliners)
    )
    assert [d.driver_id for d in found] == ["far"]


async def test_stale_drivers_nearer_than_the_limit_do_not_hide_a_fresh_one(
    redis: aioredis.Redis, keys: MarketKeys
) -> None:
    """The same shape with drivers gone silent but not yet swept from the index; and the limit
    still holds when more than it qualify."""
    silent = {f"gone{i}": 5.0 + i * 5 for i in range(40)}
    fresh = {f"ok{i}": 500.0 + i * 10 for i in range(5)}
    drivers = {**silent, **fresh}
    await redis.hset(keys.driver_statuses, mapping=dict.fromkeys(drivers, "available"))
    await update_positions(redis, keys, [ping(d, north, 1_000) for d, north in drivers.items()])
    now = await server_time_ms(redis)
    await redis.zadd(keys.drivers_seen, dict.fromkeys(silent, now - 60_000))
    found = await nearby_available(
        redis, keys, *PICKUP, radius_m=1_000, fresh_within_ms=30_000, limit=3
    )
    assert [d.driver_id for d in found] == ["ok0", "ok1", "ok2"]


async def test_a_stale_driver_going_available_is_not_supply_until_its_next_ping(
    settings: Settings, redis: aioredis.Redis, keys: MarketKeys
) -> None:
    """Seen: a driver silent past driver_stale_s that went available was indexed at its last
    position. Matching never offered it (nearby_available checks freshness), but pricing, which
    reads the index with no freshness check, counted it as supply until the stale sweep (up to
    30 s), and so did quotes then (they now check freshness themselves)."""
    pricing = PricingDeps.create(redis, settings, ["sf"], "test")

    async def supply() -> int:
        return await sample_supply(pricing, "sf", now_ms())

    pickup = {"lat": PICKUP[0], "lon": PICKUP[1]}
    dropoff = {"lat": PICKUP[0], "lon": PICKUP[1] + 0.02}
    async with start(settings) as ingest:

        async def go_available(driver: str) -> None:
            response = await ingest.http.put(
                f"/v1/drivers/{driver}/status",
                json={"status": "available"},
                headers=ingest.auth("driver", driver),
            )
            assert response.status_code == 200, response.text

        async def pickup_eta_s() -> float:
            response = await ingest.quote("r1", pickup, dropoff)
            assert response.status_code == 200, response.text
            return cast(float, response.json()["pickup_eta_s"])

        await update_positions(redis, keys, [ping("fresh", 800, 1), ping("silent", 100, 1)])
        await go_available("fresh")
        fresh_only = await pickup_eta_s()
        now = await server_time_ms(redis)
        silent_since = now - int(settings.driver_stale_s * 1000) - 1_000
        await redis.zadd(keys.drivers_seen, {"silent": silent_since})
        await go_available("silent")
        assert await redis.hget(keys.driver_statuses, "silent") == b"available"
        assert await supply() == 1  # pricing counts the fresh driver only
        assert await indexed(redis, keys) == {"fresh"}
        await update_positions(redis, keys, [ping("silent", 100, 2)])  # its next ping
        assert await indexed(redis, keys) == {"fresh", "silent"}
        assert await supply() == 2
        assert await pickup_eta_s() < fresh_only


async def test_a_driver_that_pinged_within_the_stale_time_is_indexed_on_going_available(
    redis: aioredis.Redis, keys: MarketKeys
) -> None:
    store = RideStore(redis, keys, "test", driver_stale_s=30)
    await update_positions(redis, keys, [ping("recent", 100, 1)])
    await redis.zadd(keys.drivers_seen, {"recent": await server_time_ms(redis) - 29_000})
    await store.set_driver_status("recent", "available")
    assert await indexed(redis, keys) == {"recent"}
