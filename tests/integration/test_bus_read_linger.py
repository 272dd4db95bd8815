"""A consumer off the offer path pauses after a read that did not fill up (`linger_ms`), on a
real server: events that arrive one by one are then handled a few per read instead of one per
wake-up, and none is lost or left pending."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from matching import service as matching_service
from ridepulse.bus.handlers import HandlerTable
from ridepulse.bus.producer import Producer
from ridepulse.contracts.registry import Event
from ridepulse.keys import MarketKeys
from ridepulse.settings import Settings
from tests.support.bus import expired_events, runtime
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

EVENTS = 20
SPACING_S = 0.01  # one event every 10 ms: a back-to-back reader wakes for nearly each one


async def _reads_for_trickle(redis: aioredis.Redis, settings: Settings, linger_ms: int) -> int:
    """Runs a consumer while EVENTS events are appended one at a time; returns its reads."""
    handled: list[str] = []

    async def handle(event: Event, deps: Any) -> None:
        handled.append(event.envelope.subject)

    group = f"linger{linger_ms}"
    consumer = runtime(
        redis,
        settings,
        HandlerTable(per_event={"ride.expired": handle}),
        group=group,
        burst=False,
        linger_ms=linger_ms,
    )
    await consumer.ensure_groups("$")
    running = asyncio.create_task(consumer.run())
    producer = Producer(redis, telemetry_maxlen=1000)
    stream = MarketKeys("sf", settings.key_prefix).rides
    try:
        for envelope in expired_events(EVENTS):
            await producer.publish(stream, envelope)
            await asyncio.sleep(SPACING_S)

        async def all_handled() -> bool | None:
            return len(handled) == EVENTS or None

        await wait_until(all_handled, timeout_s=10, what="all events handled")
    finally:
        consumer.stop()
        await asyncio.wait_for(running, 10)
    assert sorted(handled) == sorted(e.subject for e in expired_events(EVENTS))
    pending: Any = await redis.xpending(stream, group)
    assert pending["pending"] == 0
    return consumer.stats.reads


async def test_a_lingering_consumer_reads_a_trickle_in_a_few_reads(
    redis: aioredis.Redis, settings: Settings
) -> None:
    back_to_back = await _reads_for_trickle(redis, settings, linger_ms=0)
    lingering = await _reads_for_trickle(redis, settings, linger_ms=100)
    # 20 events over ~200 ms: a 100 ms pause after each short read leaves about 3 reads
    assert lingering <= 5, lingering
    # the control: without the pause the reader wakes for (nearly) every event
    assert back_to_back >= 12, back_to_back


async def test_matchings_ride_group_lingers_as_its_own_setting_says(settings: Settings) -> None:
    """README: RIDEPULSE_MATCHING_READ_LINGER_MS is the pause of matching's ride group, apart
    from RIDEPULSE_READ_LINGER_MS (the other consumers'). Built as `serve` builds it."""
    tuned = settings.model_copy(update={"matching_read_linger_ms": 30, "read_linger_ms": 70})
    deps, [rides] = matching_service.build(tuned)
    try:
        assert rides.group == "matching" and rides.linger_s == 0.03, rides.linger_s
    finally:
        await deps.redis.aclose()
