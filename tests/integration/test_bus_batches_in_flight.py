"""A consumer that reads ahead of its slowest handler (`batches_in_flight`), on a real server:
a later event of another subject is not held up, one of the same subject still waits its turn,
and every entry is acknowledged once all are done."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from ridepulse.bus.handlers import HandlerTable
from ridepulse.contracts.events import RideExpiredV1
from ridepulse.contracts.registry import Event, make
from ridepulse.keys import MarketKeys
from ridepulse.settings import Settings
from tests.support.bus import fill, runtime
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _expired(ride: str, version: int) -> Any:
    return make("ride.expired", f"ride/{ride}", {"ride_id": ride, "version": version}, "test")


class Recorder:
    """Handles ride.expired; the first event of ride `slow` blocks until `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: list[str] = []
        self.done: list[str] = []

    async def handle(self, event: Event, deps: Any) -> None:
        label = f"{event.envelope.subject}@{event.payload(RideExpiredV1).version}"
        self.started.append(label)
        if label == "ride/slow@2":
            await self.release.wait()
        self.done.append(label)

    async def has_done(self, label: str) -> bool | None:
        return label in self.done or None


@contextlib.asynccontextmanager
async def _running(
    redis: aioredis.Redis, settings: Settings, recorder: Recorder, batches: int
) -> AsyncIterator[None]:
    """A consumer of the four events below, running until the block ends (slow one released)."""
    keys = MarketKeys("sf", settings.key_prefix)
    # one entry per read: each event is its own batch
    one_per_read = settings.model_copy(update={"read_count": 1})
    consumer = runtime(
        redis,
        one_per_read,
        HandlerTable(per_event={"ride.expired": recorder.handle}),
        burst=False,
        concurrency=4,
        batches_in_flight=batches,
    )
    await fill(
        redis,
        keys.rides,
        [_expired("slow", 2), _expired("fast", 2), _expired("slow", 3), _expired("other", 2)],
    )
    running = asyncio.create_task(consumer.run())
    try:
        yield
    finally:
        recorder.release.set()
        consumer.stop()
        await asyncio.wait_for(running, 10)


async def test_a_slow_handler_does_not_hold_up_later_subjects_and_its_own_wait_their_turn(
    redis: aioredis.Redis, settings: Settings
) -> None:
    recorder = Recorder()
    async with _running(redis, settings, recorder, batches=4):
        await wait_until(lambda: recorder.has_done("ride/other@2"), what="the last event handled")
        assert "ride/fast@2" in recorder.done
        # read while ride/slow's first event is still in its handler: it must wait for it
        assert "ride/slow@3" not in recorder.started
        recorder.release.set()
        await wait_until(lambda: recorder.has_done("ride/slow@3"), what="slow's second event")
        assert recorder.done.index("ride/slow@2") < recorder.done.index("ride/slow@3")
        keys = MarketKeys("sf", settings.key_prefix)
        await wait_until(
            lambda: _nothing_pending(redis, keys.rides), what="every entry acknowledged"
        )


async def test_an_entry_in_a_batch_in_flight_is_not_retried_while_its_handler_runs(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """A batch in flight is pending under this consumer, and idle as far as the server can
    tell: the claim cycle must not take its entries for failed ones and run them again (twice
    the work when a batch is slow, which is when the consumer is already behind), nor may
    XAUTOCLAIM, this consumer's or another replica's, once it has been held past
    `claim_idle_ms` (seen: a flood's slow batches handled twice, a delivery counted each time)."""
    recorder = Recorder()
    keys = MarketKeys("sf", settings.key_prefix)
    async with _running(redis, settings, recorder, batches=4):
        await wait_until(lambda: recorder.has_done("ride/other@2"), what="the last event handled")
        # the slow entry stays in its handler for many retry intervals and claim cycles, and
        # three times as long as an entry may be idle before it is claimed
        loop = asyncio.get_running_loop()
        held_until = loop.time() + 3 * settings.claim_idle_ms / 1000
        while loop.time() < held_until:
            assert recorder.started.count("ride/slow@2") == 1, recorder.started
            # a replica's claim cycle, on the same group
            taken: Any = await redis.xautoclaim(
                keys.rides, "g", "replica", settings.claim_idle_ms, "0-0", justid=True
            )
            assert taken == [], "an entry still in its handler was claimed"  # JUSTID: the ids
            await asyncio.sleep(settings.retry_idle_ms / 1000)
        recorder.release.set()
        await wait_until(lambda: recorder.has_done("ride/slow@3"), what="slow's second event")
        await wait_until(
            lambda: _nothing_pending(redis, keys.rides), what="every entry acknowledged"
        )
    assert (
        sorted(recorder.started)
        == sorted(recorder.done)
        == sorted(["ride/slow@2", "ride/fast@2", "ride/slow@3", "ride/other@2"])
    ), "each entry handled once"


async def test_with_one_batch_in_hand_everything_waits_for_the_slow_handler(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """The contrast that shows what the read-ahead buys (and that the test above can fail)."""
    recorder = Recorder()
    async with _running(redis, settings, recorder, batches=1):
        await wait_until(
            lambda: _started(recorder, "ride/slow@2"), what="the slow handler to start"
        )
        # the slow handler is blocked until released, so nothing after it can have run yet
        await asyncio.sleep(0.5)
        assert recorder.done == []
        recorder.release.set()
        await wait_until(lambda: recorder.has_done("ride/other@2"), what="the rest handled")
        assert recorder.done == ["ride/slow@2", "ride/fast@2", "ride/slow@3", "ride/other@2"]


async def _started(recorder: Recorder, label: str) -> bool | None:
    return label in recorder.started or None


async def _nothing_pending(redis: aioredis.Redis, stream: str) -> bool | None:
    summary: Any = await redis.xpending(stream, "g")
    return summary["pending"] == 0 or None
