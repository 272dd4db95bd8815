"""Streams stay bounded, and ride streams are never trimmed past unacknowledged work."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from ridepulse.bus.producer import Producer
from ridepulse.bus.trimming import parse_id, trim_acknowledged
from ridepulse.contracts.envelope import now_ms
from ridepulse.contracts.registry import make
from ridepulse.janitor import trim_telemetry_once
from ridepulse.keys import MarketKeys
from ridepulse.settings import Settings
from ridepulse.telemetry_loss import TrimmedReads
from tests.support.bus import expired_events, fill, publish_many

pytestmark = pytest.mark.integration

CAP = 10_000


async def test_telemetry_stream_stays_near_its_cap_over_200k_appends(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    producer = Producer(redis, telemetry_maxlen=CAP, prefix=settings.key_prefix)
    ping = {"pings": [{"driver_id": "d1", "lat": 37.77, "lon": -122.42, "ts": 1}]}
    event = make("driver.location", "driver/d1", ping, "test")
    lengths = []
    for _ in range(200):
        await publish_many(producer, ((keys.telemetry, event) for _ in range(1000)))
        lengths.append(await redis.xlen(keys.telemetry))
    info: Any = await redis.xinfo_stream(keys.telemetry)
    assert info["entries-added"] == 200_000
    # Approximate MAXLEN trims whole listpack nodes (100 entries by default): allow one node.
    assert max(lengths) <= CAP + 200, f"stream grew to {max(lengths)} entries, cap {CAP}"
    assert lengths[-1] >= CAP


async def test_janitor_trims_telemetry_older_than_the_retention(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """A count cap cannot bound memory when an entry holds 1 to 1000 pings: age does."""
    keys = MarketKeys("sf", settings.key_prefix)
    retention_ms = int(settings.telemetry_retention_s * 1000)
    event = make("driver.location", "driver/d1", {"pings": []}, "test")
    now = now_ms()
    pipe = redis.pipeline(transaction=False)
    for i in range(2000):  # 1000 entries past the retention (by id time), then 1000 recent ones
        at = now - retention_ms - 60_000 + i if i < 1000 else now - 5_000 + i
        pipe.xadd(keys.telemetry, event.to_fields(), id=f"{at}-0")  # type: ignore[arg-type]
    await pipe.execute()
    removed = await trim_telemetry_once(redis, settings)
    left: Any = await redis.xrange(keys.telemetry)
    old_left = [e for e in left if parse_id(e[0])[0] < now - retention_ms]
    assert removed == 2000 - len(left)
    # Approximate MINID trims whole listpack nodes (100 entries): at most one node of old ones.
    assert len(old_left) <= 100, f"{len(old_left)} entries past the retention survived"
    assert len(left) - len(old_left) == 1000, "a recent entry was trimmed"


async def lagging_groups(redis: aioredis.Redis, stream: str, retention_ms: int) -> None:
    """300 entries past the retention then 50 recent ones; `eta.speeds` read the first and
    stopped, `matching.geo` read them all."""
    now = now_ms()
    pipe = redis.pipeline(transaction=False)
    for i in range(350):
        at = now - retention_ms - 60_000 + i if i < 300 else now - 5_000 + i
        pipe.xadd(stream, {"data": b"{}"}, id=f"{at}-0")
    await pipe.execute()
    await redis.xgroup_create(stream, "eta.speeds", id="0")
    await redis.xgroup_create(stream, "matching.geo", id="0")
    await redis.xreadgroup("eta.speeds", "stopped", {stream: ">"}, count=1)
    await redis.xreadgroup("matching.geo", "live", {stream: ">"}, count=350)


def lost_count(stream: str, group: str) -> float:
    labels = {"service": "janitor", "group": group, "stream": stream}
    return REGISTRY.get_sample_value("rp_entries_lost_total", labels) or 0.0


async def test_telemetry_trimmed_before_a_group_read_it_is_counted_lost(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """docs/architecture.md (trimming): a group lagging past the retention loses old pings by
    design, and they are counted (`rp_entries_lost_total`, `janitor.trimmed_before_read`); an
    entry it had read is not among them (the runtime counts a pending one when it claims it)."""
    stream = MarketKeys("sf", settings.key_prefix).telemetry
    await lagging_groups(redis, stream, int(settings.telemetry_retention_s * 1000))
    before = lost_count(stream, "eta.speeds"), lost_count(stream, "matching.geo")
    with capture_logs() as logs:
        removed = await trim_telemetry_once(redis, settings)
    counted = lost_count(stream, "eta.speeds") - before[0]
    assert removed >= 200, f"the test meant whole nodes of old entries to go; {removed} went"
    assert counted == removed - 1, f"{removed} trimmed, the group had read 1; counted {counted}"
    told = [e for e in logs if e["event"] == "janitor.trimmed_before_read"]
    assert [(e["group"], e["entries"]) for e in told] == [("eta.speeds", removed - 1)], told
    assert lost_count(stream, "matching.geo") == before[1], "it had read them all"


async def test_a_gap_is_counted_once_however_many_passes_see_it(
    redis: aioredis.Redis, settings: Settings
) -> None:
    stream = MarketKeys("sf", settings.key_prefix).telemetry
    await lagging_groups(redis, stream, int(settings.telemetry_retention_s * 1000))
    before = lost_count(stream, "eta.speeds")
    lost = TrimmedReads()
    with capture_logs() as logs:
        removed = await trim_telemetry_once(redis, settings, lost)
        await trim_telemetry_once(redis, settings, lost)
        assert await lost.observe(redis, stream) == 0
    assert lost_count(stream, "eta.speeds") - before == removed - 1
    assert len([e for e in logs if e["event"] == "janitor.trimmed_before_read"]) == 1
    await redis.xreadgroup("eta.speeds", "stopped", {stream: ">"}, count=1000)
    assert await lost.observe(redis, stream) == 0, "the group read past the gap: it is closed"
    assert not lost.gaps


async def test_ride_stream_trim_keeps_every_pending_and_undelivered_entry(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    await fill(redis, keys.rides, expired_events(1000))
    await redis.xgroup_create(keys.rides, "fast", id="0")
    await redis.xgroup_create(keys.rides, "slow", id="0")
    fast: Any = await redis.xreadgroup("fast", "f", {keys.rides: ">"}, count=1000)
    await redis.xack(keys.rides, "fast", *[eid for eid, _ in fast[0][1]])
    slow: Any = await redis.xreadgroup("slow", "s", {keys.rides: ">"}, count=600)
    slow_ids = [eid for eid, _ in slow[0][1]]
    await redis.xack(keys.rides, "slow", *slow_ids[:300], *slow_ids[301:])  # id 300 stays pending

    removed = await trim_acknowledged(redis, keys.rides)

    first: Any = await redis.xrange(keys.rides, count=1)
    assert removed > 0, "acknowledged entries below the floor should go"
    assert parse_id(first[0][0]) <= parse_id(slow_ids[300]), "a pending entry was trimmed"
    claimed: Any = await redis.xclaim(keys.rides, "slow", "s2", 0, [slow_ids[300]])
    assert claimed and claimed[0][1] is not None, "the pending entry's body must survive"
    rest: Any = await redis.xreadgroup("slow", "s", {keys.rides: ">"}, count=1000)
    assert len(rest[0][1]) == 400, "undelivered entries of the slow group must survive"


async def test_trim_does_nothing_when_no_group_has_declared_itself(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    await fill(redis, keys.rides, expired_events(500))
    assert await trim_acknowledged(redis, keys.rides) == 0
    assert await redis.xlen(keys.rides) == 500


async def test_trim_keeps_recent_history_even_when_every_group_acknowledged_it(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    pipe = redis.pipeline(transaction=False)
    for ms in range(1, 501):
        pipe.xadd(keys.rides, {b"old": b"1"}, id=f"{ms}-0")
    await pipe.execute()
    await fill(redis, keys.rides, expired_events(200))
    await redis.xgroup_create(keys.rides, "all", id="$")  # everything counts as delivered+acked
    removed = await trim_acknowledged(redis, keys.rides, keep_after_ms=1_000_000)
    assert removed > 0, "old acknowledged entries should go"
    recent: Any = await redis.xrange(keys.rides, min="1000000-0")
    assert len(recent) == 200, "entries inside the retention window must stay"
