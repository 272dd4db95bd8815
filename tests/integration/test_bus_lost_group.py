"""A consumer whose group vanishes (XGROUP DESTROY, the stream deleted, the server restarted
without its data) answers NOGROUP by recreating the group from the stream's start, reports the
loss (`rp_groups_recreated_total`, `consumer.group_missing`) and goes on: it never dies for it."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from ridepulse.bus.consumer import ConsumerRuntime
from ridepulse.bus.handlers import HandlerTable
from ridepulse.contracts.registry import Event
from ridepulse.keys import MarketKeys
from ridepulse.redis_client import connect
from ridepulse.redis_server import EmbeddedRedis
from ridepulse.settings import Settings
from tests.support.bus import expired_events, fill, runtime
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@dataclass
class Running:
    """A consumer running in the background, what it handled and what it logged."""

    consumer: ConsumerRuntime
    task: asyncio.Task[None]
    group: str
    handled: Counter[str]
    logs: list[MutableMapping[str, Any]] = field(default_factory=list)

    def recreated(self) -> float:
        labels = {"group": self.group}
        return REGISTRY.get_sample_value("rp_groups_recreated_total", labels) or 0.0

    def missing_group_logs(self) -> list[MutableMapping[str, Any]]:
        return [e for e in self.logs if e["event"] == "consumer.group_missing"]

    async def until(self, condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
        """Wait for `condition`, failing at once (with the reason) if the consumer died."""

        async def probe() -> bool:
            if self.task.done():
                raise AssertionError(f"the consumer died: {self.task.exception()!r}")
            return condition()

        await wait_until(probe, timeout_s=timeout_s, what=what)


@asynccontextmanager
async def running(redis: aioredis.Redis, settings: Settings) -> AsyncIterator[Running]:
    """A non-burst consumer of `sf`'s ride stream in a group of its own: the counter is per
    group, so a unique name keeps other tests' recoveries out of this one's reading."""
    group = f"lost-{uuid.uuid4().hex[:8]}"
    handled: Counter[str] = Counter()

    async def record(event: Event, deps: Any) -> None:
        handled[event.id] += 1

    # the runtime binds its logger when built: build it while capturing
    with capture_logs() as logs:
        consumer = runtime(
            redis,
            settings,
            HandlerTable(per_event={"ride.expired": record}),
            group=group,
            burst=False,
        )
        task = asyncio.create_task(consumer.run())
        try:
            yield Running(consumer, task, group, handled, logs)
            assert not task.done(), f"the consumer must still run: {task!r}"
        finally:
            consumer.stop()
            await asyncio.wait_for(task, 30)


async def _assert_recovers(
    it: Running, redis: aioredis.Redis, stream: str, lose: Callable[[], Awaitable[object]]
) -> None:
    """Lose the group with `lose`, then: reported once as data loss, and new entries handled."""
    before = it.recreated()
    await lose()
    await it.until(lambda: it.recreated() > before, what="rp_groups_recreated_total to rise")
    logged_events = it.missing_group_logs()
    assert len(logged_events) == 1, (
        f"one consumer.group_missing expected, got {len(logged_events)}: {logged_events[:2]}"
    )
    logged = logged_events[0]
    assert logged["log_level"] == "error" and logged["group"] == it.group, logged
    assert logged["error"].startswith("NOGROUP"), logged
    after = expired_events(5, start=100)
    await fill(redis, stream, after)
    await it.until(
        lambda: all(it.handled[e.id] for e in after), what="entries added after the loss"
    )
    groups: Any = await redis.xinfo_groups(stream)
    assert [g["name"].decode() for g in groups] == [it.group], "the group is back"

    async def all_acked() -> bool:
        summary: Any = await redis.xpending(stream, it.group)
        return int(summary["pending"]) == 0

    await wait_until(all_acked, what="what was handled after the recovery to be acknowledged")
    assert it.recreated() == before + 1, "one loss, reported once"


async def test_a_destroyed_group_is_recreated_reported_and_replayed_from_the_stream_start(
    redis: aioredis.Redis, settings: Settings
) -> None:
    stream = MarketKeys("sf", settings.key_prefix).rides
    before = expired_events(5)
    await fill(redis, stream, before)
    async with running(redis, settings) as it:
        await it.until(lambda: len(it.handled) == 5, what="the entries before the loss")
        assert it.missing_group_logs() == [] and it.recreated() == 0

        await _assert_recovers(it, redis, stream, lambda: redis.xgroup_destroy(stream, it.group))

        # what the stream still holds is delivered again: the recreated group starts at 0-0
        await it.until(
            lambda: all(it.handled[e.id] == 2 for e in before), what="the replay of the stream"
        )


async def test_a_deleted_stream_is_recreated_and_entries_added_afterwards_are_processed(
    redis: aioredis.Redis, settings: Settings
) -> None:
    stream = MarketKeys("sf", settings.key_prefix).rides
    before = expired_events(5)
    await fill(redis, stream, before)
    async with running(redis, settings) as it:
        await it.until(lambda: len(it.handled) == 5, what="the entries before the loss")

        await _assert_recovers(it, redis, stream, lambda: redis.delete(stream))

    assert all(it.handled[e.id] == 1 for e in before), "the deleted entries are gone for good"


async def test_a_server_restarted_without_its_data_is_ridden_out_and_the_loss_reported(
    own_server: EmbeddedRedis, settings: Settings
) -> None:
    """The documented case (docs/reliability.md): the data dir is lost across a restart, so the
    consumer first meets connection errors, then NOGROUP on the empty server."""
    own = settings.model_copy(update={"redis_url": own_server.url})
    client = connect(own)
    stream = MarketKeys("sf", own.key_prefix).rides
    try:
        await fill(client, stream, expired_events(5))
        async with running(client, own) as it:
            await it.until(lambda: len(it.handled) == 5, what="the entries before the restart")

            async def restart_empty() -> None:
                await asyncio.to_thread(own_server.stop)
                shutil.rmtree(own_server.data_dir / "appendonlydir")  # the AOF: all the data
                await asyncio.to_thread(own_server.start)

            await _assert_recovers(it, client, stream, restart_empty)
    finally:
        await client.aclose()
