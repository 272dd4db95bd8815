"""At-least-once delivery with exactly-once effects, against a real server and real processes."""

from __future__ import annotations

import signal
from typing import Any

import pytest
import redis.asyncio as aioredis

from matching import service as matching_service
from ridepulse.bus.handlers import HandlerTable
from ridepulse.contracts.events import RideExpiredV1
from ridepulse.contracts.registry import Event, make
from ridepulse.keys import MarketKeys
from ridepulse.settings import Settings
from tests.support.bus import expired_events, fill, runtime, start_consumer_process, wait_exit
from tests.support.idempotency import apply_once, guard_key, scratch_key
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

EVENTS = 10_000


async def test_killed_consumer_work_is_claimed_and_every_effect_happens_once(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    await fill(redis, keys.rides, expired_events(EVENTS))
    # The victim hangs inside its 3,100th handler call, so the kill lands mid-batch however
    # slow the machine is (a timed kill could land between batches or after the last one).
    victim = start_consumer_process(
        settings, "victim", "--read-count", "500", "--stall-after", "3100"
    )
    try:
        await wait_until(
            lambda: _int(redis.get(scratch_key(keys, "progress")), 3100),
            timeout_s=60,
            what="victim to process 3100 events",
        )
        victim.send_signal(signal.SIGKILL)
        await wait_exit(victim, 10)
    finally:
        if victim.poll() is None:
            victim.kill()
    summary: Any = await redis.xpending(keys.rides, "counter")
    assert summary["pending"] > 0, "the kill should land mid-batch, leaving unacked entries"

    effects, progress = scratch_key(keys, "effects"), scratch_key(keys, "progress")

    async def count(event: Event, deps: Any) -> None:
        def effect(pipe: Any) -> None:
            pipe.hincrby(effects, event.id, 1)
            pipe.incr(progress)

        await apply_once(redis, guard_key(keys, "counter", event.id), effect)

    rescuer_settings = settings.model_copy(update={"claim_idle_ms": 300, "read_count": 500})
    rescuer = runtime(
        redis,
        rescuer_settings,
        HandlerTable(per_event={"ride.expired": count}),
        consumer="rescuer",
        group="counter",
    )
    await rescuer.run()

    counts = [int(v) for v in (await redis.hgetall(effects)).values()]
    assert len(counts) == EVENTS, f"expected {EVENTS} distinct effects, got {len(counts)}"
    assert set(counts) == {1}, f"some effect ran more than once: max {max(counts)}"
    assert int(await redis.get(progress) or 0) == EVENTS
    after: Any = await redis.xpending(keys.rides, "counter")
    assert after["pending"] == 0
    assert rescuer.stats.processed > 0


async def test_sigterm_drains_in_flight_work_and_leaves_nothing_pending(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    await fill(redis, keys.rides, expired_events(3000))
    proc = start_consumer_process(settings, "graceful", "--delay-ms", "1", "--read-count", "100")
    try:
        await wait_until(
            lambda: _int(redis.get(scratch_key(keys, "progress")), 150),
            timeout_s=30,
            what="consumer to be mid-stream",
        )
        proc.send_signal(signal.SIGTERM)
        code = await wait_exit(proc, 20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, f"SIGTERM should exit 0, got {code}"
    pending: Any = await redis.xpending_range(
        keys.rides, "counter", min="-", max="+", count=10, consumername="graceful"
    )
    assert pending == [], f"entries left pending after SIGTERM: {pending}"
    done = int(await redis.get(scratch_key(keys, "progress")) or 0)
    assert 150 <= done < 3000, f"expected a partial drain, processed {done}"
    assert not await redis.exists(f"{settings.key_prefix}:heartbeat:counter:graceful")


async def _int(value: Any, threshold: int) -> bool:
    raw = await value
    return raw is not None and int(raw) >= threshold


async def test_concurrent_handlers_keep_each_subjects_order_and_ack_everything(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """With `concurrency`, subjects overlap (a handler awaiting Redis does not hold up the
    others) while the events of one subject still run one after another, in stream order."""
    keys = MarketKeys("sf", settings.key_prefix)
    rides, per_ride = 50, 4
    events = [
        make("ride.expired", f"ride/r{i}", {"ride_id": f"r{i}", "version": v}, "test")
        for v in range(1, per_ride + 1)
        for i in range(rides)
    ]
    await fill(redis, keys.rides, events)
    seen: dict[str, list[int]] = {}
    in_flight = peak = 0

    async def record(event: Event, deps: Any) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await redis.ping()  # a round trip: where other subjects get their turn
        expired = event.payload(RideExpiredV1)
        seen.setdefault(expired.ride_id, []).append(expired.version)
        in_flight -= 1

    consumer = runtime(
        redis, settings, HandlerTable(per_event={"ride.expired": record}), concurrency=8
    )
    await consumer.run()
    assert seen == {f"r{i}": list(range(1, per_ride + 1)) for i in range(rides)}
    assert peak == 8, f"at most and at least `concurrency` subjects in flight, saw {peak}"
    assert consumer.stats.processed == rides * per_ride
    summary: Any = await redis.xpending(keys.rides, "g")
    assert summary["pending"] == 0


async def test_matching_offers_as_many_rides_at_once_as_its_setting_says(
    settings: Settings,
) -> None:
    """README: RIDEPULSE_MATCHING_CONCURRENCY is the `concurrency` above of matching's ride
    group: rides one matching process offers at once. Built as `serve` builds it."""
    deps, [rides] = matching_service.build(settings.model_copy(update={"matching_concurrency": 5}))
    try:
        assert rides.group == "matching" and rides.concurrency == 5, rides.concurrency
    finally:
        await deps.redis.aclose()
