"""Poison entries, the delivery cap, XCLAIM races and refused writes, against the real server:
nothing a stream carries stops a consumer, and nothing is acked without its effect."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from matching import geo_service
from ridepulse.bus.handlers import HandlerTable
from ridepulse.contracts.envelope import Envelope
from ridepulse.contracts.registry import Event, make
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.rides.clock import server_time_ms
from ridepulse.settings import Settings
from tests.support.bus import expired_events, fill, runtime
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _good(ride: str = "r1") -> dict[bytes, bytes]:
    return expired_events(1)[0].to_fields() | {b"subject": f"ride/{ride}".encode()}


async def _dead_letters(redis: aioredis.Redis, settings: Settings) -> list[dict[bytes, bytes]]:
    rows: Any = await redis.xrange(GlobalKeys(settings.key_prefix).dead_letters)
    return [fields for _, fields in rows]


async def test_undecodable_entries_are_dead_lettered_with_the_reason_and_the_next_is_handled(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    bad_utf8 = _good() | {b"type": b"ride.\xff\xfeexpired", b"subject": b"ride/\xc3\x28"}
    bad_json = _good() | {b"data": b"{not json"}
    missing = {b"id": b"x", b"type": b"ride.expired"}
    unknown_version = _good() | {b"v": b"99"}
    for fields in (bad_utf8, bad_json, missing, unknown_version):
        await redis.xadd(keys.rides, fields)  # type: ignore[arg-type]
    await fill(redis, keys.rides, expired_events(3))
    handled: list[str] = []

    async def record(event: Event, deps: Any) -> None:
        handled.append(event.id)

    consumer = runtime(redis, settings, HandlerTable(per_event={"ride.expired": record}))
    await consumer.run()

    assert len(handled) == 3, "the good entries after the poison ones must still be handled"
    dead = await _dead_letters(redis, settings)
    reasons = [d[b"reason"].decode() for d in dead]
    assert len(dead) == 4, reasons
    assert reasons[0].startswith("undecodable: UnicodeDecodeError"), reasons[0]
    assert "not JSON" in reasons[1], reasons[1]
    assert "missing fields" in reasons[2], reasons[2]
    assert "unknown event type/version" in reasons[3], reasons[3]
    summary: Any = await redis.xpending(keys.rides, "g")
    assert summary["pending"] == 0, "dead-lettered entries are acknowledged"
    assert consumer.stats.dead_lettered == 4


async def test_the_dead_letter_log_line_names_the_event_id_the_dead_letter_stores(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """An entry that fails validation has no decoded event, but its `id` field is what an
    operator greps the logs for: the log line shows what the dead letter stores."""
    keys = MarketKeys("sf", settings.key_prefix)
    await redis.xadd(keys.rides, _good() | {b"id": b"bad-1", b"v": b"99"})  # type: ignore[arg-type]
    await redis.xadd(keys.rides, {b"type": b"ride.expired"})  # no id at all
    with capture_logs() as logs:  # the runtime binds its logger when built
        consumer = runtime(redis, settings, HandlerTable(per_event={}))
        await consumer.run()

    dead = await _dead_letters(redis, settings)
    assert [d[b"event_id"] for d in dead] == [b"bad-1", b""]
    lines = [line for line in logs if line["event"] == "consumer.dead_lettered"]
    assert [(line["event_id"], line["type"]) for line in lines] == [
        ("bad-1", "ride.expired"),
        (None, "ride.expired"),
    ], lines


async def test_an_entry_past_the_delivery_cap_is_dead_lettered_without_running_its_handler(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """An entry whose handler kills the process (never acked, never failed) stops after
    max_deliveries instead of being claimed and crashing one replica after another."""
    keys = MarketKeys("sf", settings.key_prefix)
    await fill(redis, keys.rides, expired_events(2))
    await redis.xgroup_create(keys.rides, "g", id="0")
    delivered: Any = await redis.xreadgroup("g", "crashed", {keys.rides: ">"}, count=1)
    killer_id = delivered[0][1][0][0]
    # as if five processes in a row had died in its handler
    await redis.xclaim(
        keys.rides, "g", "crashed", 0, [killer_id], retrycount=settings.max_deliveries
    )
    calls: list[str] = []

    async def record(event: Event, deps: Any) -> None:
        calls.append(event.envelope.subject)

    claimer = runtime(
        redis,
        settings.model_copy(update={"claim_idle_ms": 0}),
        HandlerTable(per_event={"ride.expired": record}),
    )
    await claimer.run()

    assert calls == ["ride/r1"], "only the other entry's handler runs"
    dead = await _dead_letters(redis, settings)
    assert [d[b"entry_id"] for d in dead] == [killer_id]
    assert dead[0][b"reason"].startswith(b"delivery cap"), dead[0][b"reason"]
    assert int(dead[0][b"deliveries"]) == settings.max_deliveries + 1
    summary: Any = await redis.xpending(keys.rides, "g")
    assert summary["pending"] == 0


async def test_an_entry_another_consumer_just_claimed_is_neither_acked_nor_counted_lost(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    await fill(redis, keys.rides, expired_events(1))
    calls: list[str] = []

    async def record(event: Event, deps: Any) -> None:
        calls.append(event.id)

    slow = runtime(redis, settings, HandlerTable(per_event={"ride.expired": record}), consumer="a")
    await slow.ensure_groups()
    await redis.xreadgroup("g", "a", {keys.rides: ">"}, count=1)
    stale: Any = await wait_until(
        lambda: redis.xpending_range(
            keys.rides, "g", min="-", max="+", count=1, idle=settings.retry_idle_ms
        ),
        what="the entry to be idle on consumer a",
    )
    # consumer b takes it over between a's XPENDING and a's XCLAIM
    await redis.xclaim(keys.rides, "g", "b", settings.retry_idle_ms, [stale[0]["message_id"]])
    claimed = await slow._claim_ids(slow.sources[0], stale, settings.retry_idle_ms)

    assert not claimed and calls == []
    assert slow.stats.lost == 0, "an entry still in the stream is not lost"
    pending: Any = await redis.xpending_range(keys.rides, "g", min="-", max="+", count=10)
    assert [(p["message_id"], p["consumer"]) for p in pending] == [(stale[0]["message_id"], b"b")]


async def test_a_refused_output_write_leaves_the_entry_pending_until_it_can_be_written(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """WRONGTYPE on the output stream: no ack without the effect; once the key is fixed the
    retry publishes the output and acks."""
    keys = MarketKeys("sf", settings.key_prefix)
    await fill(redis, keys.rides, expired_events(1))
    await redis.set(keys.eta_events, "not a stream")

    async def announce(event: Event, deps: Any) -> list[Envelope]:
        data = {"ride_id": "r0", "driver_id": "d1", "phase": "pickup", "eta_s": 60.0}
        return [make("eta.updated", "ride/r0", data, "test", event_id=f"{event.id}-eta")]

    consumer = runtime(
        redis,
        settings.model_copy(update={"max_deliveries": 1000}),
        HandlerTable(per_event={"ride.expired": announce}),
        burst=False,
    )
    task = asyncio.create_task(consumer.run())
    try:
        await wait_until(
            lambda: _value(consumer.stats.failed >= 2), what="the write to be refused twice"
        )
        summary: Any = await redis.xpending(keys.rides, "g")
        assert summary["pending"] == 1, "the entry must stay pending while its output is refused"
        assert consumer.stats.processed == 0
        await redis.delete(keys.eta_events)
        await wait_until(lambda: redis.xlen(keys.eta_events), timeout_s=30, what="the output")
        await wait_until(
            lambda: _value(consumer.stats.processed == 1), timeout_s=30, what="the ack"
        )
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
    summary = await redis.xpending(keys.rides, "g")
    assert summary["pending"] == 0
    assert await _dead_letters(redis, settings) == []


async def test_transient_errors_do_not_spend_the_delivery_budget(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """A handler hitting connection errors more times than max_deliveries: the entry is
    retried with backoff and handled, never dead-lettered."""
    keys = MarketKeys("sf", settings.key_prefix)
    await fill(redis, keys.rides, expired_events(2))
    blips = 0

    async def flaky(event: Event, deps: Any) -> None:
        nonlocal blips
        if blips < 4:
            blips += 1
            raise aioredis.ConnectionError("Connection reset by peer")

    tight = settings.model_copy(update={"max_deliveries": 2})
    consumer = runtime(redis, tight, HandlerTable(per_event={"ride.expired": flaky}))
    await asyncio.wait_for(consumer.run(), 60)

    assert blips == 4
    assert consumer.stats.processed == 2 and consumer.stats.failed == 0
    assert consumer.stats.transient_errors == 4
    assert await _dead_letters(redis, settings) == []


async def test_failed_deliveries_are_retried_with_growing_pauses(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    await fill(redis, keys.rides, expired_events(1))
    loop = asyncio.get_running_loop()
    attempts: list[float] = []

    async def broken(event: Event, deps: Any) -> None:
        attempts.append(loop.time())
        raise ValueError("a bug in the handler")

    spaced = settings.model_copy(update={"retry_idle_ms": 100, "max_deliveries": 4})
    consumer = runtime(redis, spaced, HandlerTable(per_event={"ride.expired": broken}))
    await asyncio.wait_for(consumer.run(), 60)

    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(attempts) == 4, attempts
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4, gaps
    dead = await _dead_letters(redis, settings)
    assert len(dead) == 1 and dead[0][b"reason"].startswith(b"failed 4 deliveries")
    assert orjson.loads(dead[0][b"original"])["type"] == "ride.expired"


async def _value(value: bool) -> bool:
    return value


def _location(*pings: tuple[str, float, int]) -> dict[Any, Any]:
    """A driver.location entry of (driver, lat, ts) pings, written as a fleet batch."""
    batch = [{"driver_id": d, "lat": lat, "lon": -122.41, "ts": ts} for d, lat, ts in pings]
    fields = make("driver.location", "fleet", {"pings": []}, "test").to_fields()
    return fields | {b"data": orjson.dumps({"pings": batch})}  # as written, unchecked


@pytest.mark.parametrize("poisoned", [False, True])
async def test_a_bad_ping_dead_letters_its_entry_even_when_a_newer_ping_supersedes_it(
    redis: aioredis.Redis, settings: Settings, poisoned: bool
) -> None:
    """matching-geo behind (entries 5 s old: it conflates) reads d1's ping, then a newer one of
    d1. Conflation works on decoded pings, so an entry with a bad ping is dead-lettered as a
    whole (d2, in it, is not indexed) rather than passing because its bad ping was superseded.
    The control, with every ping good, shows the same read conflating d1's older ping."""
    deps, consumer = geo_service.build(settings, burst=True)
    keys = deps.keys(consumer.sources[0].market)
    await redis.hset(keys.driver_statuses, mapping={"d1": "available", "d2": "available"})
    old_ms = await server_time_ms(redis) - 5_000
    first_lat = 200.0 if poisoned else 37.70  # 200: outside the contract's -90..90
    first = _location(("d1", first_lat, old_ms), ("d2", 37.71, old_ms))
    await redis.xadd(keys.telemetry, first, id=f"{old_ms}-0")
    await redis.xadd(keys.telemetry, _location(("d1", 37.75, old_ms + 1)), id=f"{old_ms}-1")
    try:
        await consumer.run()
    finally:
        await deps.redis.aclose()

    dead = await _dead_letters(redis, settings)
    indexed: Any = await redis.zrange(keys.drivers_geo, 0, -1)
    if poisoned:
        assert len(dead) == 1 and b"driver.location" in dead[0][b"reason"], dead
        assert indexed == [b"d1"], "d2's ping came in the dead-lettered entry"
        assert consumer.stats.conflated == 0
    else:
        assert dead == []
        assert sorted(indexed) == [b"d1", b"d2"]
        assert consumer.stats.conflated == 1, "d1's older ping, superseded in the same read"
    stored: Any = await redis.hget(keys.positions, "d1")
    assert stored.startswith(b"37.750000,"), stored  # d1's newest ping either way
    summary: Any = await redis.xpending(keys.telemetry, geo_service.GROUP)
    assert summary["pending"] == 0


async def test_a_ping_stamped_far_ahead_of_its_entry_is_dead_lettered_not_left_to_freeze_its_driver(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """A ping a day ahead, written straight into the stream (the API refuses more than 5 s):
    matching-geo kept it as d1's newest, and every real ping after it counted as older, so d1
    stayed where the forged ping put it. Its entry is now dead-lettered; the next ping moves d1."""
    deps, consumer = geo_service.build(settings, burst=True)
    keys = deps.keys(consumer.sources[0].market)
    await redis.hset(keys.driver_statuses, mapping={"d1": "available"})
    now_ms = await server_time_ms(redis)
    await redis.xadd(keys.telemetry, _location(("d1", 37.70, now_ms + 86_400_000)))
    await redis.xadd(keys.telemetry, _location(("d1", 37.75, now_ms)))
    try:
        await consumer.run()
    finally:
        await deps.redis.aclose()

    dead = await _dead_letters(redis, settings)
    assert len(dead) == 1, dead
    assert (
        b"pings.0.ts" in dead[0][b"reason"]
        and b"after the entry was appended" in (dead[0][b"reason"])
    ), dead[0][b"reason"]
    stored: Any = await redis.hget(keys.positions, "d1")
    assert stored.startswith(b"37.750000,"), f"d1 frozen by the forged ping: {stored!r}"
