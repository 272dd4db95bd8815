"""eta as N replicas by market lease (RIDEPULSE_LEASES=1, docs/scaling.md), on the real server:
two real `ridepulse run eta` processes split sf and nyc and each announces ETAs in its market;
SIGKILL one and the other owns both within the lease time, announces ETAs there, and claims
what the dead replica held pending; a replica that lost its lease is refused by the fence,
writes nothing and leaves the market's entries to the new owner."""

from __future__ import annotations

import signal
from typing import Any

import pytest
import redis.asyncio as aioredis

from eta.active import ActiveRide
from eta.announce import write_and_announce
from eta.service import build
from eta.speeds import persist_speeds
from eta.takeover import take_over
from ridepulse.contracts.envelope import now_ms
from ridepulse.contracts.events import EtaUpdatedV1, Point
from ridepulse.contracts.registry import decode
from ridepulse.keys import MarketKeys
from ridepulse.leases import LeaseLost, lease_key
from ridepulse.rides import RideStore
from ridepulse.settings import Settings
from tests.support.bus import wait_exit
from tests.support.lease_replicas import replicas, wait_split, wait_takeover
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

PICKUP = {"sf": Point(lat=37.7793, lon=-122.4193), "nyc": Point(lat=40.7580, lon=-73.9855)}
DROPOFF = {"sf": Point(lat=37.7568, lon=-122.4120), "nyc": Point(lat=40.7306, lon=-73.9866)}


async def _matched(redis: aioredis.Redis, settings: Settings, market: str, ride_id: str) -> None:
    """A ride requested and accepted (ride.matched on the market's ride stream)."""
    store = RideStore(redis, MarketKeys(market, settings.key_prefix), "test")
    await store.request_ride(
        ride_id=ride_id,
        rider_id=f"u-{ride_id}",
        pickup=PICKUP[market],
        dropoff=DROPOFF[market],
        deadline_s=60,
    )
    driver_id = f"d-{ride_id}"
    await store.set_driver_status(driver_id, "available")
    await store.offer(ride_id=ride_id, driver_id=driver_id, pickup_eta_s=300, offer_timeout_s=30)
    await store.accept(ride_id, driver_id)


async def _announced(
    redis: aioredis.Redis, settings: Settings, market: str, ride_id: str
) -> list[str]:
    """Sources of the eta.updated events announced for ``ride_id``."""
    entries: Any = await redis.xrange(MarketKeys(market, settings.key_prefix).eta_events)
    events = [decode(fields) for _, fields in entries]
    return [e.envelope.source for e in events if e.envelope.subject == f"ride/{ride_id}"]


async def test_two_replicas_split_the_markets_and_a_killed_ones_rides_still_get_etas(
    redis: aioredis.Redis, settings: Settings
) -> None:
    prefix = settings.key_prefix
    with replicas(settings, "eta", "sf,nyc") as (a, b):
        owners = await wait_split(redis, prefix, "eta", list(PICKUP))
        assert set(owners.values()) == {a.pid, b.pid}
        for market in PICKUP:
            await _matched(redis, settings, market, f"{market}-r1")
            sources = await wait_until(
                lambda m=market: _announced(redis, settings, m, f"{m}-r1"),  # type: ignore[misc]
                timeout_s=60,
                what=f"an ETA in {market}",
            )
            # announced by the market's owner only
            assert {s.rsplit("-", 1)[1] for s in sources} == {str(owners[market])}, sources
        victim, survivor = (a, b) if owners["sf"] == a.pid else (b, a)

        # the victim freezes holding sf: a ride matched now is read by nobody but the dead
        # replica's name (its blocked read may take it; else a read under its name does)
        victim.send_signal(signal.SIGSTOP)
        await _matched(redis, settings, "sf", "sf-r2")
        held: Any = await redis.get(lease_key(prefix, "eta", "sf"))
        victim_name = held.decode().split(":", 1)[1]
        await redis.xreadgroup("eta", victim_name, {MarketKeys("sf", prefix).rides: ">"})
        pending: Any = await redis.xpending(MarketKeys("sf", prefix).rides, "eta")
        assert pending["pending"] >= 1, "the dead replica holds sf-r2's events pending"
        victim.send_signal(signal.SIGKILL)
        await wait_exit(victim, 10)
        await wait_takeover(redis, prefix, "eta", list(PICKUP), survivor.pid)
        # the ride the dead replica held pending is claimed and gets its ETA from the survivor
        sources = await wait_until(
            lambda: _announced(redis, settings, "sf", "sf-r2"), timeout_s=60, what="sf-r2's ETA"
        )
        assert all(s.endswith(f"-{survivor.pid}") for s in sources), sources
        # and a ride matched after the takeover gets one too
        await _matched(redis, settings, "sf", "sf-r3")
        await wait_until(
            lambda: _announced(redis, settings, "sf", "sf-r3"), timeout_s=60, what="sf-r3's ETA"
        )
        assert survivor.poll() is None


async def test_a_replica_that_lost_its_lease_is_refused_writes_nothing_and_leaves_the_market(
    redis: aioredis.Redis, settings: Settings
) -> None:
    leased = settings.model_copy(update={"leases": True, "lease_ttl_ms": 300, "markets": "sf"})
    old, old_runtimes = build(leased.model_copy(update={"consumer_name": "eta@old-1"}), burst=True)
    assert old.leases is not None
    await old.leases.tick(now_ms())
    assert "sf" in old.leases.held
    await take_over(old, "sf")
    keys = MarketKeys("sf", settings.key_prefix)
    await _matched(redis, settings, "sf", "sf-r1")
    ride_before = await redis.hgetall(keys.ride("sf-r1"))

    # the old owner is paused past its lease; a new replica takes sf
    lease = lease_key(settings.key_prefix, "eta", "sf")
    await wait_until(lambda: _gone(redis, lease), timeout_s=10, what="the lease to expire")
    new, new_runtimes = build(leased.model_copy(update={"consumer_name": "eta@new-2"}), burst=True)
    assert new.leases is not None
    await new.leases.tick(now_ms())
    assert new.leases.held["sf"] > old.leases.held["sf"]
    await take_over(new, "sf")

    # resumed, the old owner still believes it owns sf: its ETA write is refused, and so is
    # its announcement (one step: it cannot announce after the new owner)...
    ride = ActiveRide("sf-r1", "sf", "d-sf-r1", "pickup", 37.7793, -122.4193)
    with pytest.raises(LeaseLost):
        await write_and_announce(old, [(ride, 1.0, "e-stale")])
    assert "sf" not in old.leases.held, "the refusal tells it the market is gone"
    assert await redis.hgetall(keys.ride("sf-r1")) == ride_before
    assert await _announced(redis, settings, "sf", "sf-r1") == []
    # ...its speeds write too (what it learned does not overwrite the new owner's)
    await redis.hset(keys.speeds, "cell-of-new-owner", "7.5")
    old.models["sf"].restore({"cell-of-old-owner": 3.0})
    old.learned.add("sf")
    await persist_speeds(old)
    assert await redis.hgetall(keys.speeds) == {b"cell-of-new-owner": b"7.5"}
    # ...and its runtimes read nothing more of sf: the entries wait for the new owner
    for runtime in old_runtimes:
        await runtime.run()
    assert sum(r.stats.processed for r in old_runtimes) == 0
    assert await _announced(redis, settings, "sf", "sf-r1") == []
    for runtime in new_runtimes:
        await runtime.run()
    assert await _announced(redis, settings, "sf", "sf-r1") == ["eta/eta@new-2"]
    for deps in (old, new):
        await deps.redis.aclose()


async def _gone(redis: aioredis.Redis, key: str) -> bool:
    return not await redis.exists(key)


async def test_an_owner_s_eta_and_its_announcement_land_in_one_step(
    redis: aioredis.Redis, settings: Settings
) -> None:
    leased = settings.model_copy(update={"leases": True, "lease_ttl_ms": 5000, "markets": "sf"})
    deps, _ = build(leased.model_copy(update={"consumer_name": "eta@one-1"}), burst=True)
    assert deps.leases is not None
    await deps.leases.tick(now_ms())
    await _matched(redis, settings, "sf", "sf-r9")
    keys = MarketKeys("sf", settings.key_prefix)
    ride = ActiveRide("sf-r9", "sf", "d-sf-r9", "pickup", 37.7793, -122.4193)

    await write_and_announce(deps, [(ride, 42.0, "e-1")])
    # when the call returns, the hash and the stream both have it: nothing is left for a later
    # step that a pause could push past the lease
    assert await redis.hget(keys.ride("sf-r9"), "pickup_eta_s") == b"42.0"
    entries: Any = await redis.xrange(keys.eta_events)
    announced = [decode(fields) for _, fields in entries]
    assert [(e.id, e.payload(EtaUpdatedV1).eta_s) for e in announced] == [("e-1", 42.0)]

    # the lease moves on (another replica's fence): neither the ETA nor an announcement lands
    await redis.set(lease_key(settings.key_prefix, "eta", "sf"), "999:eta@other-2")
    with pytest.raises(LeaseLost):
        await write_and_announce(deps, [(ride, 7.0, "e-2")])
    assert await redis.hget(keys.ride("sf-r9"), "pickup_eta_s") == b"42.0"
    after: Any = await redis.xrange(keys.eta_events)
    assert len(after) == 1
    await deps.redis.aclose()
