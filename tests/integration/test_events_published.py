"""`rp_events_published_total` ("Entries appended", docs/operations.md) counts every entry a
process appends, per stream. It counted only the Producer's, the telemetry batcher's, eta's and
surge's appends: a live platform's ride stream had 1115 entries added and a counter sum of 0 on
all eight /metrics endpoints (the ride steps append inside their scripts), dead letters 19 vs 0,
heartbeats 2066 vs 0. Each test compares the counter with the stream's own `entries-added`."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from ridepulse.bus.handlers import HandlerTable
from ridepulse.bus.heartbeat import Heartbeat
from ridepulse.contracts.events import Point
from ridepulse.contracts.registry import Event, make
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.rides import RideStore
from ridepulse.settings import Settings
from tests.support.bus import expired_events, fill, runtime
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

PICKUP = Point(lat=37.7793, lon=-122.4193)
DROPOFF = Point(lat=37.7568, lon=-122.4120)
FOLLOW_UP = "ride/out"


def _published(stream: str) -> float:
    return REGISTRY.get_sample_value("rp_events_published_total", {"stream": stream}) or 0.0


async def _entries_added(redis: aioredis.Redis, stream: str) -> int:
    if not await redis.exists(stream):
        return 0
    info: Any = await redis.xinfo_stream(stream)
    return int(info["entries-added"])


async def test_a_rides_steps_count_every_entry_their_scripts_append(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """request → offer → accept (and its redelivery) → arrive → start → complete, a decline
    past the deadline that chains ride.expired after ride.unmatched, and the janitor's eviction
    of the free driver: the counter for the rides stream rises by what the stream received."""
    keys = MarketKeys("sf", settings.key_prefix)
    store = RideStore(redis, keys, "test")
    before = _published(keys.rides)

    await store.set_driver_status("d1", "available")
    await store.request_ride(
        ride_id="sf-pub-1", rider_id="u1", pickup=PICKUP, dropoff=DROPOFF, deadline_s=60
    )
    offered = await store.offer(
        ride_id="sf-pub-1", driver_id="d1", pickup_eta_s=60, offer_timeout_s=30
    )
    assert offered is not None and offered.status == "offered", offered
    await store.accept("sf-pub-1", "d1", event_id="accept-1")
    await store.accept("sf-pub-1", "d1", event_id="accept-1")  # a redelivery appends nothing
    await store.arrived("sf-pub-1", "d1")
    await store.start("sf-pub-1", "d1")
    done = await store.complete("sf-pub-1", "d1")
    assert done.status == "completed", done

    await store.request_ride(
        ride_id="sf-pub-2", rider_id="u2", pickup=PICKUP, dropoff=DROPOFF, deadline_s=0.3
    )
    assert await store.offer(
        ride_id="sf-pub-2", driver_id="d1", pickup_eta_s=60, offer_timeout_s=30
    )

    async def overdue() -> bool:
        ride = await store.get("sf-pub-2")
        server_s, micros = await redis.time()
        return ride is not None and server_s * 1000 + micros // 1000 > int(ride.deadline_at)

    await wait_until(overdue, timeout_s=5, interval_s=0.05, what="ride sf-pub-2's deadline")
    expired = await store.decline("sf-pub-2", "d1")  # ride.unmatched, then ride.expired
    assert expired.status == "expired", expired
    assert await store.evict_drivers(["d1"], silence_s=0.2) == ["d1"]  # announced offline

    added = await _entries_added(redis, keys.rides)
    counted = _published(keys.rides) - before
    assert added == 12, f"the steps should have appended 12 entries, the stream got {added}"
    assert counted == added, f"{keys.rides}: {added} entries added, counter rose by {counted}"


async def test_the_runtime_counts_its_outputs_and_dead_letters_and_a_heartbeat_its_beat(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """A consumer's follow-up event and the dead letter of an entry it cannot decode are
    counted on their streams; a heartbeat counts its `rp:health` entry."""
    keys, global_keys = MarketKeys("sf", settings.key_prefix), GlobalKeys(settings.key_prefix)
    first = expired_events(1)[0]

    async def handler(event: Event, deps: Any) -> list[Any]:
        if event.id != first.id:
            return []
        return [make("ride.expired", FOLLOW_UP, {"ride_id": "out", "version": 2}, "test")]

    await fill(redis, keys.rides, [first])
    await redis.xadd(keys.rides, {b"type": b"ride.expired", b"data": b"not json"})
    rides_before = await _entries_added(redis, keys.rides)
    published_before = {s: _published(s) for s in (keys.rides, global_keys.dead_letters)}
    consumer = runtime(redis, settings, HandlerTable(per_event={"ride.expired": handler}))
    await consumer.run()  # burst: returns once the stream is drained

    assert consumer.stats.dead_lettered == 1, consumer.stats
    outputs = await _entries_added(redis, keys.rides) - rides_before
    assert outputs == 1, f"one follow-up event expected, the stream got {outputs}"
    for stream, added in (
        (keys.rides, outputs),
        (global_keys.dead_letters, await _entries_added(redis, global_keys.dead_letters)),
    ):
        counted = _published(stream) - published_before[stream]
        assert counted == added == 1, f"{stream}: {added} entries added, counter rose {counted}"

    health_before = _published(global_keys.health)
    heartbeat = Heartbeat(
        redis, prefix=settings.key_prefix, service="test", consumer="c1", interval_s=0.5
    )
    await heartbeat.beat()
    await heartbeat.clear()
    beats = await _entries_added(redis, global_keys.health)
    counted = _published(global_keys.health) - health_before
    assert counted == beats == 1, f"{global_keys.health}: {beats} added, counter rose {counted}"
