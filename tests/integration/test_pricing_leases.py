"""Pricing as N replicas by market lease (RIDEPULSE_LEASES=1, docs/scaling.md), on the real
server: two real `ridepulse run pricing` processes split sf and nyc; SIGKILL one and the other
takes its market and keeps publishing its surge; a replica that lost its lease is refused by the
fence and announces nothing."""

from __future__ import annotations

import signal
from typing import Any

import pytest
import redis.asyncio as aioredis

from pricing.publisher import catch_up, publish_surge, take_over
from pricing.service import build
from ridepulse.contracts.envelope import now_ms
from ridepulse.contracts.events import Point
from ridepulse.geo import cell_of
from ridepulse.keys import MarketKeys
from ridepulse.leases import lease_key
from ridepulse.rides import RideStore
from ridepulse.settings import Settings
from tests.support.bus import wait_exit
from tests.support.lease_replicas import replicas, wait_split, wait_takeover
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

SPOTS = {
    "sf": [Point(lat=37.7793, lon=-122.4193), Point(lat=37.7599, lon=-122.4148)],
    "nyc": [Point(lat=40.7580, lon=-73.9855), Point(lat=40.7128, lon=-74.0060)],
}
DROPOFF = {"sf": Point(lat=37.7568, lon=-122.4120), "nyc": Point(lat=40.7306, lon=-73.9866)}


async def _request(
    redis: aioredis.Redis, settings: Settings, market: str, spot: int, n: int
) -> str:
    """``n`` ride requests at one spot of ``market`` (no driver there): returns its cell."""
    keys = MarketKeys(market, settings.key_prefix)
    store = RideStore(redis, keys, "test")
    at = SPOTS[market][spot]
    for i in range(n):
        await store.request_ride(
            ride_id=f"{market}-s{spot}-r{i}",
            rider_id=f"u{spot}-{i}",
            pickup=at,
            dropoff=DROPOFF[market],
            deadline_s=60,
        )
    return cell_of(at.lat, at.lon)


async def _surging(redis: aioredis.Redis, settings: Settings, market: str, cell: str) -> bool:
    raw: Any = await redis.hget(MarketKeys(market, settings.key_prefix).surge, cell)
    return raw is not None and float(raw) > 1.0


async def test_two_replicas_split_the_markets_and_a_killed_ones_market_keeps_surging(
    redis: aioredis.Redis, settings: Settings
) -> None:
    prefix = settings.key_prefix
    with replicas(settings, "pricing", "sf,nyc", RIDEPULSE_SURGE_INTERVAL_S="0.2") as (a, b):
        owners = await wait_split(redis, prefix, "pricing", list(SPOTS))
        assert set(owners.values()) == {a.pid, b.pid}
        for market in SPOTS:
            cell = await _request(redis, settings, market, 0, 6)
            await wait_until(
                lambda m=market, c=cell: _surging(redis, settings, m, c),  # type: ignore[misc]
                timeout_s=60,
                what=f"{market} to surge",
            )
        victim, survivor = (a, b) if owners["sf"] == a.pid else (b, a)
        victim.send_signal(signal.SIGKILL)
        await wait_exit(victim, 10)
        await wait_takeover(redis, prefix, "pricing", list(SPOTS), survivor.pid)
        # and sf keeps producing: new demand in another cell surges under the new owner
        fresh = await _request(redis, settings, "sf", 1, 6)
        await wait_until(
            lambda: _surging(redis, settings, "sf", fresh), timeout_s=60, what="sf surges again"
        )
        assert survivor.poll() is None


async def test_a_replica_that_lost_its_lease_is_refused_and_announces_nothing(
    redis: aioredis.Redis, settings: Settings
) -> None:
    leased = settings.model_copy(update={"leases": True, "lease_ttl_ms": 300, "markets": "sf"})
    old, _ = build(leased, burst=True)
    assert old.leases is not None
    await old.leases.tick(now_ms())
    assert "sf" in old.leases.held
    await take_over(old, "sf", now_ms())
    keys = MarketKeys("sf", settings.key_prefix)
    cell = await _request(redis, settings, "sf", 0, 6)
    assert cell in await publish_surge(old, "sf", now_ms())
    events_before = await redis.xlen(keys.surge_events)

    # the old owner is paused past its lease; a new replica takes sf and publishes its own state
    lease = lease_key(settings.key_prefix, "pricing", "sf")
    await wait_until(lambda: _gone(redis, lease), timeout_s=10, what="the lease to expire")
    new, _ = build(leased.model_copy(update={"consumer_name": "pricing@new-1"}), burst=True)
    assert new.leases is not None
    await new.leases.tick(now_ms())
    assert new.leases.held["sf"] > old.leases.held["sf"]
    await redis.hset(keys.surge, cell, "1.5")  # stands for the new owner's write

    # resumed, the old owner still believes it owns sf and has a change to write: refused
    fresh = await _request(redis, settings, "sf", 1, 6)
    await catch_up(old, "sf")
    assert await publish_surge(old, "sf", now_ms()) == {}
    assert "sf" not in old.leases.held, "the refusal tells it the market is gone"
    assert await redis.hget(keys.surge, fresh) is None
    assert await redis.hget(keys.surge, cell) == b"1.5"
    assert await redis.xlen(keys.surge_events) == events_before, "nothing announced"
    for deps in (old, new):
        await deps.redis.aclose()


async def _gone(redis: aioredis.Redis, key: str) -> bool:
    return not await redis.exists(key)
