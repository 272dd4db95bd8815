"""Poison and invalid entries go to the dead-letter stream, verbatim; nothing else is blocked."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, cast

import orjson
import pytest
import redis.asyncio as aioredis

from ridepulse.bus.deadletter import verbatim_original
from ridepulse.bus.handlers import HandlerTable
from ridepulse.contracts.registry import Event, make
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.settings import Settings
from tests.support.bus import expired_events, fill, runtime
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


async def dead_letters(redis: aioredis.Redis, settings: Settings) -> list[dict[bytes, bytes]]:
    entries = cast(
        list[tuple[bytes, dict[bytes, bytes]]],
        await redis.xrange(GlobalKeys(settings.key_prefix).dead_letters),
    )
    return [fields for _, fields in entries]


async def test_poison_event_is_dead_lettered_after_exactly_max_deliveries(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    events = expired_events(50)
    poison_id = events[17].id
    calls: Counter[str] = Counter()

    async def handler(event: Event, deps: Any) -> None:
        calls[event.id] += 1
        if event.id == poison_id:
            raise RuntimeError("cannot handle this one")

    await fill(redis, keys.rides, events)
    consumer = runtime(
        redis, settings, HandlerTable(per_event={"ride.expired": handler}), burst=False
    )
    task = asyncio.create_task(consumer.run())
    try:
        letters = await wait_until(
            lambda: dead_letters(redis, settings), timeout_s=15, what="the poison dead letter"
        )
        assert calls[poison_id] == settings.max_deliveries
        assert len(letters) == 1
        assert letters[0][b"event_id"].decode() == poison_id
        assert letters[0][b"deliveries"] == str(settings.max_deliveries).encode()
        assert b"RuntimeError: cannot handle this one" in letters[0][b"reason"]
        assert all(calls[e.id] == 1 for e in events if e.id != poison_id)
        # The consumer keeps running: new events are still processed after the poison.
        later = expired_events(5, start=1000)
        await fill(redis, keys.rides, later)
        await wait_until(
            lambda: _all_called(calls, later), timeout_s=10, what="events after the poison"
        )
        assert not task.done()
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
    pending: Any = await redis.xpending(keys.rides, "g")
    assert pending["pending"] == 0


async def _all_called(calls: Counter[str], events: list[Any]) -> bool:
    return all(calls[e.id] == 1 for e in events)


def _valid() -> dict[bytes, bytes]:
    return make("ride.expired", "ride/ok", {"ride_id": "ok", "version": 2}, "test").to_fields()


INVALID_ENTRIES = [
    ("missing fields", {b"id": b"x1", b"type": b"ride.expired"}, "missing fields"),
    ("bad json", {**_valid(), b"id": b"x2", b"data": b"{not json"}, "data is not JSON"),
    ("unknown type", {**_valid(), b"id": b"x3", b"type": b"ride.teleported"}, "unknown event type"),
    ("unknown version", {**_valid(), b"id": b"x4", b"v": b"9"}, "unknown event type/version"),
    (
        "schema invalid",
        {**_valid(), b"id": b"x5", b"data": orjson.dumps({"ride_id": 5})},
        "ride_id: Input should be a valid string",
    ),
    ("non-integer time", {**_valid(), b"id": b"x6", b"time": b"yesterday"}, "integers"),
    (
        "not utf-8",
        {**_valid(), b"id": b"x7", b"type": b"ride.\xffrequested"},
        "undecodable: UnicodeDecodeError",
    ),
    (
        "not utf-8, no envelope",
        {b"type": b"ride.\xffrequested", b"data": b"\x80\x81", b"\xfe": b"\x80"},
        "missing fields",
    ),
]


@pytest.mark.parametrize(
    ("case", "fields", "reason"), INVALID_ENTRIES, ids=[c[0] for c in INVALID_ENTRIES]
)
async def test_invalid_entry_goes_to_dead_letters_with_its_reason(
    redis: aioredis.Redis, settings: Settings, case: str, fields: dict[bytes, bytes], reason: str
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    handled: list[str] = []

    async def handler(event: Event, deps: Any) -> None:
        handled.append(event.id)

    good = expired_events(3)
    await fill(redis, keys.rides, good[:1])
    await redis.xadd(keys.rides, fields)  # type: ignore[arg-type]
    await fill(redis, keys.rides, good[1:])
    consumer = runtime(redis, settings, HandlerTable(per_event={"ride.expired": handler}))
    await asyncio.wait_for(consumer.run(), 10)
    letters = await dead_letters(redis, settings)
    assert len(letters) == 1, f"{case}: expected one dead letter, got {letters}"
    assert reason in letters[0][b"reason"].decode(), letters[0][b"reason"]
    assert letters[0][b"deliveries"] == b"1"
    kept = list(verbatim_original(letters[0]).items())
    assert kept == list(fields.items()), f"{case}: kept {kept!r}, not the entry {fields!r}"
    assert handled == [e.id for e in good]
    pending: Any = await redis.xpending(keys.rides, "g")
    assert pending["pending"] == 0
