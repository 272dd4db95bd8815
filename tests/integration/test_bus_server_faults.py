"""Consumers against a server that runs out of memory or restarts (each test starts its own
embedded Valkey), and the consumer table: names unique per process, dead consumers removed."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from ridepulse.bus.consumer import ConsumerRuntime
from ridepulse.bus.handlers import HandlerTable
from ridepulse.contracts.envelope import Envelope
from ridepulse.contracts.registry import Event, make
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.redis_client import connect
from ridepulse.redis_server import EmbeddedRedis, free_port
from ridepulse.settings import Settings
from tests.support.bus import expired_events, fill, runtime, start_consumer_process, wait_exit
from tests.support.idempotency import scratch_key
from tests.support.refusals import REFUSALS, refusing_writes
from tests.support.settings import quick_bus_settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def own_settings(own_server: EmbeddedRedis, tmp_path: Path) -> Settings:
    return quick_bus_settings(
        redis_url=own_server.url, key_prefix="t", data_dir=tmp_path, max_deliveries=2
    )


@pytest.fixture
async def own_redis(own_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = connect(own_settings)
    yield client
    await client.aclose()


def _announce(event: Event) -> list[Envelope]:
    data = {"ride_id": event.envelope.subject[5:], "driver_id": "d1", "phase": "pickup"}
    return [make("eta.updated", event.envelope.subject, {**data, "eta_s": 60.0}, "test")]


async def _announcing(redis: aioredis.Redis, settings: Settings) -> ConsumerRuntime:
    """A consumer of the rides stream that announces an ETA for each expired ride, its groups
    made."""

    async def announce(event: Event, deps: Any) -> list[Envelope]:
        return _announce(event)

    consumer = runtime(
        redis, settings, HandlerTable(per_event={"ride.expired": announce}), burst=False
    )
    await consumer.ensure_groups()
    return consumer


async def _true(value: bool) -> bool:
    return value


async def test_an_oom_server_loses_no_event_and_processing_resumes_when_memory_is_freed(
    own_redis: aioredis.Redis, own_settings: Settings
) -> None:
    keys = MarketKeys("sf", own_settings.key_prefix)
    await fill(own_redis, keys.rides, expired_events(200))
    consumer = await _announcing(own_redis, own_settings)
    await own_redis.config_set("maxmemory-policy", "noeviction")
    await own_redis.config_set("maxmemory", "1")  # every write that grows memory is refused
    task = asyncio.create_task(consumer.run())
    try:
        await wait_until(
            lambda: _true(consumer.stats.transient_errors >= 5),
            timeout_s=30,
            what="the consumer to meet OOM several times",
        )
        assert consumer.stats.processed == 0 and consumer.stats.failed == 0
        await own_redis.config_set("maxmemory", "0")
        await wait_until(
            lambda: _true(consumer.stats.processed == 200),
            timeout_s=60,
            what="every event processed once memory is back",
        )
        assert not task.done(), "the consumer must survive OOM"
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
    outputs: Any = await own_redis.xrange(keys.eta_events)
    subjects = {fields[b"subject"] for _, fields in outputs}
    assert len(subjects) == 200, "one output per event: none lost"
    assert await own_redis.xlen(GlobalKeys(own_settings.key_prefix).dead_letters) == 0
    summary: Any = await own_redis.xpending(keys.rides, "g")
    assert summary["pending"] == 0


async def _errors(redis: aioredis.Redis, code: str) -> int:
    """How many replies of this code the server has sent (INFO errorstats)."""
    stats: Any = await redis.info("errorstats")
    return int(stats.get(f"errorstat_{code}", {}).get("count", 0))


@pytest.mark.parametrize("refusal", REFUSALS)
async def test_a_server_refusing_writes_loses_no_event_and_processing_resumes(
    own_redis: aioredis.Redis, own_settings: Settings, refusal: str
) -> None:
    """MISCONF (the server cannot persist: a full AOF disk, a failed snapshot) and NOREPLICAS
    (min-replicas-to-write unmet): the consumer re-raised them and its service died, 47 deaths
    a minute under `ridepulse up`. It now backs off and carries on."""
    keys = MarketKeys("sf", own_settings.key_prefix)
    await fill(own_redis, keys.rides, expired_events(100))
    consumer = await _announcing(own_redis, own_settings)
    task: asyncio.Task[None] | None = None
    try:
        async with refusing_writes(own_redis, refusal):
            task = asyncio.create_task(consumer.run())
            await wait_until(
                lambda: _true(consumer.stats.transient_errors >= 3 or task.done()),
                timeout_s=30,
                what=f"the consumer to meet {refusal} several times",
            )
            assert not task.done(), f"the consumer ended on {refusal}: {task.exception()!r}"
            assert consumer.stats.processed == 0 and consumer.stats.failed == 0
        await wait_until(
            lambda: _true(consumer.stats.processed == 100),
            timeout_s=60,
            what="every event processed once writes are accepted",
        )
    finally:
        consumer.stop()
        if task is not None:
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
    assert await own_redis.xlen(keys.eta_events) == 100, "one output per event: none lost"
    assert await own_redis.xlen(GlobalKeys(own_settings.key_prefix).dead_letters) == 0


@pytest.mark.parametrize("refusal", REFUSALS)
async def test_a_service_process_outlives_a_server_that_refuses_writes(
    own_redis: aioredis.Redis, own_settings: Settings, refusal: str
) -> None:
    """The whole service (runtime, heartbeat pipeline) against refused writes: the process
    stays up through them, works again after, and ends cleanly at SIGTERM."""
    keys = MarketKeys("sf", own_settings.key_prefix)
    progress = scratch_key(keys, "progress")
    proc = start_consumer_process(own_settings, "c-refused")
    try:
        await fill(own_redis, keys.rides, expired_events(50))
        await wait_until(
            lambda: _count(own_redis.get(progress), 50), timeout_s=60, what="the first 50 events"
        )
        seen = await _errors(own_redis, refusal)
        async with refusing_writes(own_redis, refusal):
            await wait_until(
                lambda: _refused_often(own_redis, proc, refusal, seen + 10),
                timeout_s=60,
                what=f"the service to meet {refusal} ten times",
            )
            assert proc.poll() is None, f"the service exited ({proc.poll()}) on {refusal}"
        await fill(own_redis, keys.rides, expired_events(50, start=50))
        await wait_until(
            lambda: _count(own_redis.get(progress), 100), timeout_s=60, what="50 more events"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await wait_exit(proc, 30)
    assert code == 0


async def _count(value: Any, wanted: int) -> bool:
    return int(await value or 0) >= wanted


async def _refused_often(redis: aioredis.Redis, proc: Any, code: str, wanted: int) -> bool:
    return proc.poll() is not None or await _errors(redis, code) >= wanted


async def test_a_role_change_under_a_blocked_read_does_not_end_the_consumer(
    own_redis: aioredis.Redis, own_settings: Settings
) -> None:
    """REPLICAOF somewhere, then REPLICAOF NO ONE: the server answers a blocked XREADGROUP
    with UNBLOCKED (master -> replica?). Every consumer died of that half-second blip."""
    keys = MarketKeys("sf", own_settings.key_prefix)
    handled: set[str] = set()

    async def record(event: Event, deps: Any) -> None:
        handled.add(event.id)

    # a read blocked long enough to be caught blocked; stopping waits for its end
    blocking = own_settings.model_copy(update={"block_ms": 3000})
    reader = connect(blocking)  # its socket timeout above the block
    consumer = runtime(
        reader, blocking, HandlerTable(per_event={"ride.expired": record}), burst=False
    )
    await consumer.ensure_groups()
    task = asyncio.create_task(consumer.run())
    try:
        await wait_until(
            lambda: _blocked_clients(own_redis), timeout_s=30, what="the consumer's blocked read"
        )
        await own_redis.replicaof("127.0.0.1", str(free_port()))  # a primary nobody serves
        await own_redis.replicaof("NO", "ONE")
        await wait_until(
            lambda: _true(consumer.stats.transient_errors >= 1 or task.done()),
            timeout_s=30,
            what="the consumer to meet UNBLOCKED",
        )
        assert not task.done(), f"the consumer ended on UNBLOCKED: {task.exception()!r}"
        events = expired_events(20)
        await fill(own_redis, keys.rides, events)
        await wait_until(
            lambda: _true(len(handled) == 20), timeout_s=60, what="events after the role change"
        )
    finally:
        await own_redis.replicaof("NO", "ONE")
        consumer.stop()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
        await reader.aclose()
    assert handled == {e.id for e in events}


async def _blocked_clients(redis: aioredis.Redis) -> bool:
    clients: Any = await redis.info("clients")
    return int(clients["blocked_clients"]) >= 1


async def test_a_consumer_survives_a_server_restart_and_continues(
    own_server: EmbeddedRedis, own_redis: aioredis.Redis, own_settings: Settings
) -> None:
    keys = MarketKeys("sf", own_settings.key_prefix)
    handled: set[str] = set()

    async def record(event: Event, deps: Any) -> None:
        handled.add(event.id)

    consumer = runtime(
        own_redis, own_settings, HandlerTable(per_event={"ride.expired": record}), burst=False
    )
    first, second = expired_events(100), expired_events(100, start=100)
    await fill(own_redis, keys.rides, first)
    task = asyncio.create_task(consumer.run())
    try:
        await wait_until(lambda: _true(len(handled) == 100), timeout_s=30, what="first half")
        own_server.stop()  # SIGTERM: the AOF is flushed; same port and data dir on restart
        await wait_until(
            lambda: _true(consumer.stats.transient_errors > 0),
            timeout_s=30,
            what="the consumer to notice the server is gone",
        )
        await asyncio.to_thread(own_server.start)
        await fill(own_redis, keys.rides, second)
        await wait_until(
            lambda: _true(len(handled) == 200), timeout_s=60, what="events after the restart"
        )
        assert not task.done(), "the consumer must survive the restart"
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
    assert handled == {e.id for e in first + second}
    summary: Any = await own_redis.xpending(keys.rides, "g")
    assert summary["pending"] == 0


async def test_two_processes_with_the_default_name_are_two_consumers(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    procs = [start_consumer_process(settings, None) for _ in range(2)]
    try:

        async def consumers() -> list[str]:
            try:
                infos: Any = await redis.xinfo_consumers(keys.rides, "counter")
            except aioredis.ResponseError:
                return []
            return [i["name"].decode() for i in infos] if len(infos) == 2 else []

        names = await wait_until(consumers, timeout_s=60, what="both processes to read")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            await wait_exit(proc, 30)
    assert len(set(names)) == 2, names
    assert all(n.startswith("counter@") for n in names), names


async def test_idle_consumers_holding_nothing_are_removed_and_holders_are_kept(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    await fill(redis, keys.rides, expired_events(1))
    await redis.xgroup_create(keys.rides, "g", id="0")
    await redis.xreadgroup("g", "holder", {keys.rides: ">"}, count=1)  # dies holding an entry
    await redis.xgroup_createconsumer(keys.rides, "g", "gone")  # dies holding nothing
    reaping = settings.model_copy(update={"consumer_reap_idle_ms": 300, "claim_idle_ms": 60_000})
    consumer = runtime(redis, reaping, HandlerTable(), burst=False)

    async def names() -> set[str]:
        infos: Any = await redis.xinfo_consumers(keys.rides, "g")
        return {i["name"].decode() for i in infos}

    assert await names() == {"holder", "gone"}
    task = asyncio.create_task(consumer.run())
    try:
        await wait_until(
            lambda: _gone(names(), "gone"), timeout_s=30, what="the empty consumer to be removed"
        )
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
    assert await names() == {"holder", "c1"}, "a consumer holding entries is never removed"
    summary: Any = await redis.xpending(keys.rides, "g")
    assert summary["pending"] == 1


async def _gone(names: Any, name: str) -> bool:
    return name not in await names
