"""The janitor keeps memory level as drivers and riders come and go, against the real server:
rides are taken back from drivers gone silent (through the table's lose_driver rows), departed
drivers are forgotten (never while they hold a ride), riders' ride and open-rides sets and the
heartbeat set are trimmed."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from matching.geo_index import update_positions
from ridepulse.contracts.events import (
    DriverStatusV1,
    Ping,
    Point,
    RideCancelledV1,
    RideUnmatchedV1,
)
from ridepulse.contracts.registry import Event, decode
from ridepulse.janitor import retain_once, sweep_drivers_once
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.retention import prune_heartbeats, trim_rider_rides
from ridepulse.rides import Ride, RideStore
from ridepulse.rides.clock import server_time_ms
from ridepulse.settings import Settings
from ridepulse.unheard import UnheardTimes
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

PICKUP = Point(lat=37.7749, lon=-122.4194)
DROPOFF = Point(lat=37.7549, lon=-122.4194)


async def ping(redis: aioredis.Redis, keys: MarketKeys, driver_id: str) -> None:
    now = await server_time_ms(redis)
    await update_positions(
        redis, keys, [Ping(driver_id=driver_id, lat=PICKUP.lat + 0.001, lon=PICKUP.lon, ts=now)]
    )


async def ride_with_driver(
    redis: aioredis.Redis, store: RideStore, status: str, ride_id: str = "sf-r1", driver: str = "d1"
) -> Ride:
    await ping(redis, store.keys, driver)
    await store.set_driver_status(driver, "available")
    await store.request_ride(
        ride_id=ride_id, rider_id="u1", pickup=PICKUP, dropoff=DROPOFF, deadline_s=60
    )
    ride = await store.offer(ride_id=ride_id, driver_id=driver, pickup_eta_s=60, offer_timeout_s=60)
    assert ride is not None
    ride = await store.accept(ride_id, driver)
    if status in ("driver_arrived", "started"):
        ride = await store.arrived(ride_id, driver)
    if status == "started":
        ride = await store.start(ride_id, driver)
    assert ride.status == status
    return ride


async def events(redis: aioredis.Redis, keys: MarketKeys, type_: str) -> list[Event]:
    raw = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(keys.rides))
    return [e for e in (decode(f) for _, f in raw) if e.type == type_]


def tuned(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(update=update)


@pytest.mark.parametrize("status", ["matched", "driver_arrived"])
async def test_a_ride_whose_driver_went_silent_before_pickup_waits_for_another_driver(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, store: RideStore, status: str
) -> None:
    await ride_with_driver(redis, store, status)
    quick = tuned(settings, driver_lost_s=0.3, driver_evict_s=3600)

    async def released() -> int:
        return (await sweep_drivers_once(redis, quick))["rides_released"]

    await wait_until(released, timeout_s=10, what="the lost driver's ride to be released")
    ride = await store.get("sf-r1")
    assert ride is not None
    assert (ride.status, ride.driver_id, ride.declined) == ("requested", None, ("d1",))
    assert await redis.zscore(keys.open_rides, "sf-r1") is not None
    driver = await store.get_driver("d1")
    assert driver is not None and (driver.status, driver.ride_id) == ("offline", None)
    unmatched = await events(redis, keys, "ride.unmatched")
    data = [e.payload(RideUnmatchedV1) for e in unmatched]
    assert [(d.cause, d.driver_id) for d in data] == [("driver_lost", "d1")]


async def test_a_ride_whose_driver_went_silent_during_the_trip_is_cancelled_with_the_reason(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, store: RideStore
) -> None:
    await ride_with_driver(redis, store, "started")
    quick = tuned(settings, driver_lost_s=0.3, driver_evict_s=3600)

    async def released() -> int:
        return (await sweep_drivers_once(redis, quick))["rides_released"]

    await wait_until(released, timeout_s=10, what="the lost driver's ride to be cancelled")
    ride = await store.get("sf-r1")
    assert ride is not None and (ride.status, ride.cancelled_by) == ("cancelled", "ops")
    assert await redis.zscore(keys.active_rides, "sf-r1") is None
    cancelled = await events(redis, keys, "ride.cancelled")
    data = [e.payload(RideCancelledV1) for e in cancelled]
    assert [(d.by, d.cause) for d in data] == [("ops", "driver_lost")]
    # the lost driver goes offline, not back to available: it is not there to take a ride
    driver = await store.get_driver("d1")
    assert driver is not None and (driver.status, driver.ride_id) == ("offline", None), driver
    assert await redis.hget(keys.driver("d1"), "status") == b"offline"
    assert await redis.hget(keys.driver_statuses, "d1") == b"offline"
    assert await redis.zscore(keys.drivers_geo, "d1") is None, "offline yet still a candidate"


async def started_ride_then_stopped_group(
    redis: aioredis.Redis, keys: MarketKeys, store: RideStore
) -> int:
    """A ride on trip whose driver's last ping was applied just before matching's geo group
    stopped reading (the next entry stays unread); returns when that ping was stamped."""
    await redis.xgroup_create(keys.telemetry, "matching.geo", id="0", mkstream=True)
    await redis.xadd(keys.telemetry, {"data": b"read"})
    await redis.xreadgroup("matching.geo", "geo-1", {keys.telemetry: ">"}, count=10)
    await ride_with_driver(redis, store, "started")
    stamped_ms = await server_time_ms(redis)
    await redis.xadd(keys.telemetry, {"data": b"unread"})
    return stamped_ms


async def test_no_ride_is_taken_back_while_the_group_stamping_drivers_is_behind(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, store: RideStore
) -> None:
    """README (RIDEPULSE_DRIVER_LOST_S), docs/operations.md: a lost driver is one that sent
    nothing for DRIVER_LOST_S. While matching's geo group (which stamps drivers:seen) is
    stopped, ingest sheds every ping: that stretch is not the driver's silence."""
    quick = tuned(settings, driver_lost_s=2.0, driver_evict_s=3600, telemetry_shed_lag_s=0.5)
    stamped_ms = await started_ride_then_stopped_group(redis, keys, store)
    held_back = REGISTRY.get_sample_value("rp_driver_sweeps_held_back_total", {"market": "sf"})
    with capture_logs() as logs:
        while await server_time_ms(redis) < stamped_ms + 2_000 + 1_500:
            swept = await sweep_drivers_once(redis, quick, "janitor-1")
            assert swept["rides_released"] == 0, "a ride was taken back while none was heard"
            await asyncio.sleep(0.1)
    ride = await store.get("sf-r1")
    assert ride is not None and ride.status == "started", ride
    held_back_after = REGISTRY.get_sample_value(
        "rp_driver_sweeps_held_back_total", {"market": "sf"}
    )
    assert (held_back_after or 0) > (held_back or 0), "the held-back sweeps were not counted"
    assert any(e["event"] == "janitor.drivers_unheard" for e in logs), logs


async def test_a_driver_silent_once_the_group_caught_up_is_released_after_the_lost_time(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, store: RideStore
) -> None:
    """The stall ends when the group has read its backlog; from then on the driver's silence
    counts, and it is released after DRIVER_LOST_S of it, not at once."""
    quick = tuned(settings, driver_lost_s=2.0, driver_evict_s=3600, telemetry_shed_lag_s=0.5)
    await started_ride_then_stopped_group(redis, keys, store)
    unheard: dict[str, UnheardTimes] = {}

    async def behind() -> bool:
        await sweep_drivers_once(redis, quick, "janitor-1", unheard)
        return unheard["sf"].behind

    await wait_until(behind, timeout_s=10, what="the janitor to see the group behind")
    unread: Any = await redis.xreadgroup("matching.geo", "geo-1", {keys.telemetry: ">"})
    await redis.xack(keys.telemetry, "matching.geo", *[eid for eid, _ in unread[0][1]])
    caught_up_ms = await server_time_ms(redis)

    async def released() -> int:
        return (await sweep_drivers_once(redis, quick, "janitor-1", unheard))["rides_released"]

    await wait_until(released, timeout_s=10, what="the silent driver's ride to be cancelled")
    heard_for_s = (await server_time_ms(redis) - caught_up_ms) / 1000
    assert heard_for_s >= 2.0 - 0.2, f"released {heard_for_s:.2f} s after the group caught up"
    ride = await store.get("sf-r1")
    assert ride is not None and (ride.status, ride.cancelled_by) == ("cancelled", "ops")


async def test_a_ride_taken_back_from_a_lost_driver_waits_a_fresh_deadline_not_its_first(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, store: RideStore
) -> None:
    """The ride's first deadline has passed when its driver is lost: kept, it would expire at
    matching's next sweep instead of waiting for another driver."""
    quick = tuned(settings, ride_deadline_s=2.0, driver_lost_s=0.3, driver_evict_s=3600)
    window_ms = int(quick.ride_deadline_s * 1000)
    await ping(redis, keys, "d1")
    await store.set_driver_status("d1", "available")
    first, _ = await store.request_ride(
        ride_id="sf-r1",
        rider_id="u1",
        pickup=PICKUP,
        dropoff=DROPOFF,
        deadline_s=quick.ride_deadline_s,
    )
    await store.offer(ride_id="sf-r1", driver_id="d1", pickup_eta_s=60, offer_timeout_s=60)
    assert (await store.accept("sf-r1", "d1")).status == "matched"

    async def first_deadline_passed() -> bool:
        return await server_time_ms(redis) > first.deadline_at + 100

    await wait_until(first_deadline_passed, timeout_s=10, what="the ride's first deadline")
    before = await server_time_ms(redis)
    assert await sweep_drivers_once(redis, quick, "janitor-1") == {
        "rides_released": 1,
        "drivers_evicted": 0,
    }
    after = await server_time_ms(redis)
    ((_, fields),) = cast(list[Any], await redis.xrevrange(keys.rides, count=1))
    assert (fields[b"type"], fields[b"source"]) == (b"ride.unmatched", b"janitor/janitor-1")

    ride = await store.get("sf-r1")
    assert ride is not None and ride.status == "requested"
    assert before + window_ms <= ride.deadline_at <= after + window_ms, (
        f"deadline_at {ride.deadline_at}: expected now + {window_ms} ms (server clock, "
        f"between {before + window_ms} and {after + window_ms}); first deadline {first.deadline_at}"
    )
    assert await redis.zscore(keys.open_rides, "sf-r1") == ride.deadline_at
    # not overdue: matching's expiry sweep neither picks it nor may expire it
    overdue = await redis.zrangebyscore(keys.open_rides, "-inf", await server_time_ms(redis))
    assert b"sf-r1" not in cast(list[bytes], overdue)
    assert await store.expire("sf-r1") is None
    still = await store.get("sf-r1")
    assert still is not None and still.status == "requested"


async def test_a_driver_that_keeps_pinging_keeps_its_ride(
    redis: aioredis.Redis, settings: Settings, store: RideStore
) -> None:
    await ride_with_driver(redis, store, "started")
    quick = tuned(settings, driver_lost_s=1.0, driver_evict_s=1.0)
    deadline = time.monotonic() + 2.5  # past both times, pinging every 0.2 s
    while time.monotonic() < deadline:
        await ping(redis, store.keys, "d1")
        assert await sweep_drivers_once(redis, quick) == {"rides_released": 0, "drivers_evicted": 0}
        await asyncio.sleep(0.2)
    ride = await store.get("sf-r1")
    assert ride is not None and ride.status == "started"


async def test_a_ping_landing_between_the_janitors_read_and_its_script_keeps_the_driver(
    redis: aioredis.Redis, keys: MarketKeys, store: RideStore
) -> None:
    """reliability.md: every eviction re-checks the silence inside its script. The janitor
    reads the silent drivers, then runs the script on them: a ping in between must win."""
    await ride_with_driver(redis, store, "matched", ride_id="sf-r1", driver="d1")
    await ping(redis, keys, "idle")
    await store.set_driver_status("idle", "available")
    silence_s = 0.3
    await asyncio.sleep(silence_s + 0.2)  # both silent past it; nothing to wait on but the clock
    cutoff = await server_time_ms(redis) - int(silence_s * 1000)
    read: Any = await redis.zrangebyscore(keys.drivers_seen, "-inf", cutoff)
    assert sorted(read) == [b"d1", b"idle"], "the janitor's read finds both silent"
    for driver in ("d1", "idle"):
        await ping(redis, keys, driver)  # lands after the read, before the scripts
    lost = await store.lose_driver("sf-r1", "d1", silence_s=silence_s, event_id="driver_lost:test")
    assert lost is None, "a driver that pinged since the read keeps its ride"
    assert await store.evict_drivers(["idle"], silence_s=silence_s) == []
    ride = await store.get("sf-r1")
    assert ride is not None and ride.status == "matched" and ride.driver_id == "d1"
    assert await redis.exists(keys.driver("idle")) and await redis.zscore(keys.drivers_geo, "idle")
    # the control: silent again past the time, the same scripts do take the ride and the driver
    await asyncio.sleep(silence_s + 0.2)
    taken = await store.lose_driver(
        "sf-r1", "d1", silence_s=silence_s, event_id="driver_lost:test-2"
    )
    assert taken is not None and taken.status == "requested"
    assert await store.evict_drivers(["idle"], silence_s=silence_s) == ["idle"]


async def test_a_departed_driver_is_forgotten_and_its_leaving_announced(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, store: RideStore
) -> None:
    await ping(redis, keys, "gone")
    await store.set_driver_status("gone", "available")
    await store.set_driver_status("never-pinged", "available")
    assert await redis.zscore(keys.drivers_geo, "gone") is not None
    quick = tuned(settings, driver_lost_s=0.2, driver_evict_s=0.3)
    evicted = 0

    async def both_evicted() -> bool:
        # stamped a few ms apart, the two may cross the eviction time in different sweeps
        nonlocal evicted
        evicted += (await sweep_drivers_once(redis, quick))["drivers_evicted"]
        return evicted >= 2

    await wait_until(both_evicted, timeout_s=10, what="eviction")
    assert evicted == 2
    for driver in ("gone", "never-pinged"):
        assert not await redis.exists(keys.driver(driver))
        assert await redis.hget(keys.driver_statuses, driver) is None
        assert await redis.hget(keys.positions, driver) is None
        assert await redis.zscore(keys.drivers_seen, driver) is None
        assert await redis.zscore(keys.drivers_geo, driver) is None
    left = await events(redis, keys, "driver.status")
    statuses = [e.payload(DriverStatusV1) for e in left]
    offline = sorted(s.driver_id for s in statuses if s.status == "offline")
    assert offline == ["gone", "never-pinged"]


async def test_a_silent_driver_on_a_ride_is_not_evicted_until_its_ride_is_resolved(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, store: RideStore
) -> None:
    await ride_with_driver(redis, store, "matched")
    patient = tuned(settings, driver_lost_s=3600, driver_evict_s=0.2)
    await asyncio.sleep(0.5)  # past the eviction time; nothing to wait on but the clock
    assert await sweep_drivers_once(redis, patient) == {"rides_released": 0, "drivers_evicted": 0}
    assert await redis.exists(keys.driver("d1"))
    ride = await store.get("sf-r1")
    assert ride is not None and ride.status == "matched"
    # with the ride taken back first, the same pass forgets the driver
    resolved = tuned(settings, driver_lost_s=0.2, driver_evict_s=0.2)
    assert await sweep_drivers_once(redis, resolved) == {"rides_released": 1, "drivers_evicted": 1}
    assert not await redis.exists(keys.driver("d1"))


async def test_a_riders_ride_set_keeps_open_rides_and_the_newest_finished_ones(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, store: RideStore
) -> None:
    for i in range(6):
        await store.request_ride(
            ride_id=f"sf-u{i}", rider_id="u1", pickup=PICKUP, dropoff=DROPOFF, deadline_s=60
        )
    for i in range(5):  # sf-u5 stays open
        await store.cancel(f"sf-u{i}", by="rider", actor_id="u1")
    await redis.sadd(keys.rider_rides("u1"), "sf-long-gone")  # its hash has expired
    await store.request_ride(
        ride_id="sf-other", rider_id="u2", pickup=PICKUP, dropoff=DROPOFF, deadline_s=60
    )
    assert await trim_rider_rides(redis, keys, keep=2) == 4
    kept = {m.decode() for m in cast(set[bytes], await redis.smembers(keys.rider_rides("u1")))}
    assert kept == {"sf-u5", "sf-u4", "sf-u3"}
    assert await redis.smembers(keys.rider_rides("u2")) == {b"sf-other"}
    assert await trim_rider_rides(redis, keys, keep=2) == 0


async def rider_keys(redis: aioredis.Redis, keys: MarketKeys) -> list[str]:
    patterns = (keys.rider_rides("*"), keys.rider_open_rides("*"))
    return sorted([k.decode() for p in patterns async for k in redis.scan_iter(match=p)])


async def test_a_riders_open_rides_set_leaves_once_the_riders_rides_are_finished(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, store: RideStore
) -> None:
    """Only a rider's next request pruned the open-rides set, so every rider ever seen kept one
    for good, holding finished (later expired) ride ids: the janitor's pass prunes it too."""
    for rider in ("u1", "u2", "u3"):
        await store.request_ride(
            ride_id=f"sf-{rider}-a", rider_id=rider, pickup=PICKUP, dropoff=DROPOFF, deadline_s=60
        )
    await store.request_ride(
        ride_id="sf-u3-b", rider_id="u3", pickup=PICKUP, dropoff=DROPOFF, deadline_s=60
    )
    finished = ["sf-u1-a", "sf-u2-a", "sf-u3-a"]
    for ride_id in finished:
        await store.cancel(ride_id, by="rider", actor_id=ride_id[3:5])
    await redis.sadd(keys.rider_open_rides("u4"), "sf-long-gone")  # its hash has expired
    await retain_once(redis, settings, {})
    open_sets = [k for k in await rider_keys(redis, keys) if k.endswith(":open")]
    assert open_sets == [keys.rider_open_rides("u3")], f"open-rides sets left: {open_sets}"
    assert await redis.smembers(keys.rider_open_rides("u3")) == {b"sf-u3-b"}
    # a week on the finished rides' hashes expire: of the four riders only u3's open ride is left
    await redis.delete(*(keys.ride(ride_id) for ride_id in finished))
    await retain_once(redis, settings, {})
    left = await rider_keys(redis, keys)
    assert left == [keys.rider_open_rides("u3"), keys.rider_rides("u3")], f"rider keys: {left}"
    assert await redis.smembers(keys.rider_rides("u3")) == {b"sf-u3-b"}


async def test_heartbeat_names_of_consumers_gone_for_long_leave_the_set(
    redis: aioredis.Redis, settings: Settings
) -> None:
    gk = GlobalKeys(settings.key_prefix)
    alive, dead = gk.heartbeat("matching", "alive"), gk.heartbeat("matching", "dead")
    await redis.set(alive, "{}", ex=60)
    await redis.sadd(gk.heartbeats, alive, dead)
    absent: dict[bytes, float] = {}
    assert await prune_heartbeats(redis, gk, absent, 100.0, prune_after_s=5) == 0
    assert await prune_heartbeats(redis, gk, absent, 104.0, prune_after_s=5) == 0
    assert await prune_heartbeats(redis, gk, absent, 105.0, prune_after_s=5) == 1
    assert await redis.smembers(gk.heartbeats) == {alive.encode()}
    # retain_once prunes on its own clock: a name gone since the first pass leaves once the
    # setting's intervals have passed
    await redis.sadd(gk.heartbeats, dead)
    quick = tuned(settings, heartbeat_interval_s=0.1, heartbeat_prune_intervals=3)
    state: dict[bytes, float] = {}

    async def pruned() -> int:
        return (await retain_once(redis, quick, state))["heartbeats_pruned"]

    await wait_until(pruned, timeout_s=10, what="the dead consumer's name to be pruned")
    assert await redis.smembers(gk.heartbeats) == {alive.encode()}


async def test_churning_driver_ids_leave_no_trace_and_keys_stay_bounded(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, store: RideStore
) -> None:
    """A short version of `make soak`: waves of new driver ids join, ping, go available and
    leave; departed drivers' keys go, and the market's key count stays bounded."""
    rng = random.Random(7)
    quick = tuned(settings, driver_lost_s=0.5, driver_evict_s=1.0)
    wave_size, waves = 200, 12
    counts = []
    departed: list[str] = []
    for wave in range(waves):
        ids = [f"w{wave}-{i}" for i in range(wave_size)]
        now = await server_time_ms(redis)
        pings = [
            Ping(
                driver_id=d,
                lat=PICKUP.lat + rng.uniform(-0.02, 0.02),
                lon=PICKUP.lon + rng.uniform(-0.02, 0.02),
                ts=now,
            )
            for d in ids
        ]
        await update_positions(redis, keys, pings)
        for d in ids[: wave_size // 2]:
            await store.set_driver_status(d, "available")
        departed += ids
        await asyncio.sleep(0.5)
        await sweep_drivers_once(redis, quick)
        counts.append(await _market_keys(redis, settings.key_prefix))
    silent_long = departed[: wave_size * (waves - 3)]  # silent for at least 1.5 s now
    seen = cast(list[Any], await redis.zmscore(keys.drivers_seen, silent_long))
    assert all(s is None for s in seen), "departed drivers are still in drivers_seen"
    hashes = [await redis.exists(keys.driver(d)) for d in silent_long]
    assert sum(hashes) == 0, f"{sum(hashes)} departed drivers still have a hash"
    assert await redis.hlen(keys.positions) <= wave_size * 3
    assert max(counts[3:]) <= wave_size * 3 + 20, f"key count grew: {counts}"


async def _market_keys(redis: aioredis.Redis, prefix: str) -> int:
    return sum([1 async for _ in redis.scan_iter(match=f"{prefix}:*", count=1000)])
