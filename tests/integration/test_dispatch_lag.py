"""docs/architecture.md (load shedding): the lag ingest sheds on is the age of the oldest
telemetry entry a shedding group has not been delivered, and a stopped consumer (past twice the
threshold) lets nothing in. Entries the janitor's age trim took before the group read them are
still unread: a stopped group must not read as caught up once they are gone."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from ingest.shedding import dispatch_lag_s
from ridepulse.rides.clock import server_time_ms
from ridepulse.settings import Settings
from ridepulse.telemetry_groups import ETA_SPEEDS
from tests.support.ingest import start, telemetry
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

GROUP = "matching.geo"


async def stopped_group(
    redis: aioredis.Redis, stream: str, now_ms: int, group: str = GROUP
) -> None:
    """A group that read up to 60 s ago and then stopped: 40 entries appended after its
    position, all older than the retention and trimmed, none read."""
    await redis.xadd(stream, {"data": b"read"}, id=f"{now_ms - 60_000}-0")
    await redis.xgroup_create(stream, group, id="0")
    await redis.xreadgroup(group, "geo-1", {stream: ">"}, count=1)
    for i in range(40):
        await redis.xadd(stream, {"data": b"unread"}, id=f"{now_ms - 59_000 + i * 500}-0")
    await redis.xtrim(stream, minid=f"{now_ms - 30_000}-0", approximate=False)


async def test_a_stopped_group_whose_unread_entries_were_trimmed_is_still_behind(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """Stopped: its consumer has not asked for entries for longer than a live one ever waits
    (live_consumer_idle_ms of the settings' block, 2.6 s here), however recently it read."""
    stream = telemetry(settings)
    async with start(settings) as ingest:
        now_ms = await server_time_ms(redis)
        await stopped_group(redis, stream, now_ms)
        assert await redis.xlen(stream) == 0, "the test meant every unread entry to be trimmed"

        async def behind() -> float:
            return lag_s if (lag_s := await dispatch_lag_s(ingest.deps)) >= 59 else 0.0

        await wait_until(behind, timeout_s=10, what="the stopped group to read as behind")


async def test_a_live_group_whose_backlog_was_trimmed_is_caught_up_with_what_is_left(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """A group resumed after its backlog was trimmed while ingest shed every ping: nothing is
    left to read, and no ping comes while it reads as behind. Taken as behind for as long as its
    position was old, it stayed so for ever (the lag kept growing, every ping shed, no ride of a
    silent driver released): the gap is lost, counted by the janitor, not backlog."""
    stream = telemetry(settings)
    async with start(settings) as ingest:
        now_ms = await server_time_ms(redis)
        await stopped_group(redis, stream, now_ms)
        assert await redis.xlen(stream) == 0
        await redis.xreadgroup(GROUP, "geo-1", {stream: ">"}, count=10)  # resumed: asks again
        assert await dispatch_lag_s(ingest.deps) == 0.0


async def test_a_fresh_entry_after_a_trimmed_backlog_does_not_hide_it(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """The one append shedding still lets through is 1 s old; the group stopped 60 s ago."""
    stream = telemetry(settings)
    async with start(settings) as ingest:
        now_ms = await server_time_ms(redis)
        await stopped_group(redis, stream, now_ms)
        await redis.xadd(stream, {"data": b"new"}, id=f"{now_ms - 1_000}-0")
        lag_s = await dispatch_lag_s(ingest.deps)
    assert lag_s >= 59, f"lag {lag_s:.1f} s: the youngest unread entry hid the lost ones"


async def test_a_group_that_read_everything_is_not_behind_however_old_its_position(
    redis: aioredis.Redis, settings: Settings
) -> None:
    stream = telemetry(settings)
    async with start(settings) as ingest:
        now_ms = await server_time_ms(redis)
        await redis.xadd(stream, {"data": b"read"}, id=f"{now_ms - 60_000}-0")
        await redis.xgroup_create(stream, GROUP, id="0")
        await redis.xreadgroup(GROUP, "geo-1", {stream: ">"}, count=10)
        await redis.xtrim(stream, minid=f"{now_ms - 30_000}-0", approximate=False)
        assert await dispatch_lag_s(ingest.deps) == 0.0
        await redis.xadd(stream, {"data": b"new"}, id=f"{now_ms - 2_000}-0")
        lag_s = await dispatch_lag_s(ingest.deps)
    assert 1.5 < lag_s < 10, f"lag {lag_s:.1f} s: only the 2 s old entry is unread"


async def test_every_group_of_a_listed_shedding_set_is_measured(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """RIDEPULSE_TELEMETRY_SHED_GROUPS naming both telemetry groups, spaced as an operator may
    type it: a stopped eta.speeds sheds, as matching.geo alone does by default (its gap still
    unread: a fresh entry waits behind it)."""
    both = settings.model_copy(update={"telemetry_shed_groups": " matching.geo , eta.speeds "})
    stream = telemetry(both)
    async with start(both) as ingest:
        now_ms = await server_time_ms(redis)
        await stopped_group(redis, stream, now_ms, group=ETA_SPEEDS)
        await redis.xadd(stream, {"data": b"new"}, id=f"{now_ms - 1_000}-0")
        lag_s = await dispatch_lag_s(ingest.deps)
    assert lag_s >= 59, f"lag {lag_s:.1f} s: the listed eta.speeds group was not measured"
