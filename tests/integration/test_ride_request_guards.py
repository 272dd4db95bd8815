"""The ride request step's guards against the real server: idempotency first (body hash),
the rider's open rides, the quote bound to its trip and used once; the per-rider minute
counters; and durability: the script and WAITAOF on one pinned connection."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from ingest.durability import make_durable, pinned, run_script
from ingest.ratelimit import limit_rider
from ridepulse.contracts.events import Point
from ridepulse.errors import InvalidInput, NotDurable, RateLimited
from ridepulse.keys import MarketKeys
from ridepulse.redis_client import connect
from ridepulse.redis_server import EmbeddedRedis
from ridepulse.rides import RideStore
from ridepulse.settings import Settings

pytestmark = pytest.mark.integration

PICKUP = Point(lat=37.7749295, lon=-122.4194155)
DROPOFF = Point(lat=37.8024, lon=-122.4058)


async def request(store: RideStore, ride_id: str, rider_id: str = "u1", **kw: Any) -> Any:
    return await store.request_ride(
        ride_id=ride_id, rider_id=rider_id, pickup=PICKUP, dropoff=DROPOFF, deadline_s=60, **kw
    )


async def test_the_idempotency_key_is_checked_before_anything_and_bound_to_the_body(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys
) -> None:
    await redis.hset(
        keys.quote("q1"),
        mapping={
            "rider_id": "u1",
            "pickup_cell": "p",
            "dropoff_cell": "d",
            "fare": "9",
            "surge": "1",
        },
    )
    quoted: dict[str, Any] = {"quote_id": "q1", "pickup_cells": ["p"], "dropoff_cells": ["d"]}
    _, created = await request(store, "r1", idempotency_key="k", body_hash="h1", **quoted)
    assert created
    # the quote is used and the rider has an open ride, yet the retry is answered from the key
    again, created_again = await request(
        store, "r2", idempotency_key="k", body_hash="h1", open_rides_limit=1, **quoted
    )
    assert (again.ride_id, created_again) == ("r1", False)
    with pytest.raises(InvalidInput) as refused:
        await request(store, "r3", idempotency_key="k", body_hash="h2")
    assert refused.value.field == "idempotency_key"
    record = await redis.hgetall(keys.idempotency("u1", "k"))
    assert record == {b"ride_id": b"r1", b"body": b"h1", b"rider_id": b"u1"}


async def test_an_idempotency_record_of_another_rider_is_refused_not_replayed(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys
) -> None:
    # the key's name already tells riders apart; the record's rider is checked as well
    await redis.hset(
        keys.idempotency("u1", "k"),
        mapping={"ride_id": "theirs", "body": "h1", "rider_id": "someone-else"},
    )
    with pytest.raises(InvalidInput) as refused:
        await request(store, "r1", idempotency_key="k", body_hash="h1")
    assert refused.value.field == "idempotency_key"
    assert await redis.exists(keys.ride("r1")) == 0, "no ride is made on a refused key"


async def test_open_rides_are_limited_and_a_terminal_ride_frees_its_slot(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys
) -> None:
    await request(store, "r1", open_rides_limit=1)
    with pytest.raises(RateLimited) as refused:
        await request(store, "r2", open_rides_limit=1)
    assert refused.value.retry_after_s >= 1
    assert await store.get("r2") is None
    await store.cancel("r1", by="rider", actor_id="u1")
    _, created = await request(store, "r3", open_rides_limit=1)
    assert created
    assert await redis.smembers(keys.rider_open_rides("u1")) == {b"r3"}, "pruned on request"


@pytest.mark.parametrize(
    ("case", "quote", "kw", "field"),
    [
        ("unknown", None, {}, "quote_id"),
        ("another rider's", {"rider_id": "u2"}, {}, "quote_id"),
        ("used", {"ride_id": "r0"}, {}, "quote_id"),
        ("pickup elsewhere", {}, {"pickup_cells": ["x"]}, "pickup"),
        ("dropoff elsewhere", {}, {"dropoff_cells": ["x"]}, "dropoff"),
    ],
)
async def test_a_quote_that_does_not_fit_the_request_is_refused_naming_the_field(
    store: RideStore,
    redis: aioredis.Redis,
    keys: MarketKeys,
    case: str,
    quote: dict[str, str] | None,
    kw: dict[str, Any],
    field: str,
) -> None:
    if quote is not None:
        record = {"rider_id": "u1", "pickup_cell": "p", "dropoff_cell": "d", "fare": "9"}
        await redis.hset(keys.quote("q1"), mapping={**record, "surge": "1", **quote})  # type: ignore[dict-item]
    args: dict[str, Any] = {"quote_id": "q1", "pickup_cells": ["p"], "dropoff_cells": ["d"], **kw}
    with pytest.raises(InvalidInput) as refused:
        await request(store, "r1", **args)
    assert refused.value.field == field, case
    assert await store.get("r1") is None


async def test_rider_minute_counters_refuse_past_the_limit_with_retry_after(
    redis: aioredis.Redis, settings: Settings
) -> None:
    sf = MarketKeys("sf", settings.key_prefix)
    if 60 - time.time() % 60 < 3:  # fixed one-minute windows: stay inside one
        await asyncio.sleep(3.5)
    for _ in range(3):
        await limit_rider(redis, sf, "u1", "quotes", 3)
    with pytest.raises(RateLimited) as refused:
        await limit_rider(redis, sf, "u1", "quotes", 3)
    assert 1 <= refused.value.retry_after_s <= 60
    await limit_rider(redis, sf, "u2", "quotes", 3)  # per rider
    await limit_rider(redis, sf, "u1", "cancels", 3)  # per action
    # per market: the counter is in the market's slot (docs/architecture.md, key layout)
    await limit_rider(redis, MarketKeys("nyc", settings.key_prefix), "u1", "quotes", 3)
    # one counter per rider, action, market and minute, gone two minutes later
    counter = sf.rider_rate("u1", "quotes", int(time.time() // 60))
    assert await redis.get(counter) == b"4"
    assert 110 <= await redis.ttl(counter) <= 120


class FakeDeps:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings


@pytest.fixture
async def own_client(own_server: EmbeddedRedis, settings: Settings) -> Any:
    """A client of the test's own server: these tests change its persistence settings."""
    client = connect(settings, own_server.url)
    yield client
    await client.aclose()


async def test_make_durable_confirms_the_fsync_of_the_pinned_connections_write(
    own_client: aioredis.Redis, settings: Settings
) -> None:
    store = RideStore(own_client, MarketKeys("sf", settings.key_prefix), "test")
    deps: Any = FakeDeps(settings)
    async with pinned(own_client, store.keys.ride("r1")) as pin:
        run = lambda script, keys, args: run_script(pin, script, keys, args)  # noqa: E731
        await request(store, "r1", run=run)
        await make_durable(deps, pin)  # everysec: confirmed within the timeout

    await own_client.config_set("appendfsync", "no")  # the server never fsyncs now
    fast = FakeDeps(settings.model_copy(update={"durable_timeout_ms": 300}))
    async with pinned(own_client, store.keys.ride("r2")) as pin:
        run = lambda script, keys, args: run_script(pin, script, keys, args)  # noqa: E731
        await request(store, "r2", rider_id="u2", run=run)
        with pytest.raises(NotDurable):
            await make_durable(fast, pin)  # type: ignore[arg-type]

    await own_client.config_set("appendonly", "no")
    async with pinned(own_client, store.keys.ride("r3")) as pin:
        with pytest.raises(NotDurable):
            await make_durable(deps, pin)
    off = FakeDeps(settings.model_copy(update={"durable_writes": False}))
    async with pinned(own_client, store.keys.ride("r3")) as pin:
        await make_durable(off, pin)  # type: ignore[arg-type]  # explicit opt-out: no WAITAOF


async def test_a_record_of_the_layout_before_the_rider_length_is_written_over(
    store: RideStore, redis: aioredis.Redis, keys: MarketKeys
) -> None:
    # before the upgrade, rider "1" with key "u1:k" wrote `idem:1:u1:k`: the name rider "u1"
    # with key "k" has now; that record has no rider and its own rider never reads it again
    await redis.hset(keys.idempotency("u1", "k"), mapping={"ride_id": "old", "body": "h0"})
    ride, created = await request(store, "r1", idempotency_key="k", body_hash="h1")
    assert created and ride.ride_id == "r1"
    stored = await redis.hgetall(keys.idempotency("u1", "k"))
    assert stored[b"ride_id"] == b"r1" and stored[b"rider_id"] == b"u1"
