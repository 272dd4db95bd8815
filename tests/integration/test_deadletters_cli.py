"""`ridepulse deadletters` against the real server, in a subprocess as an operator runs it: an
event a handler kept failing is listed with its reason, stream, group and deliveries, then
replayed to its stream, where the (now fixed) consumer processes it; the dead letter is gone.
A replay puts back the original entry byte for byte, even one that is not UTF-8."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from typing import Any, cast

import orjson
import pytest
import redis.asyncio as aioredis

from ridepulse.bus.deadletter import dead_letter_fields
from ridepulse.bus.handlers import HandlerTable
from ridepulse.contracts.registry import Event, make
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.settings import Settings
from tests.support.bus import expired_events, fill, runtime
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RIDEPULSE_REDIS_URL": settings.redis_url or "",
        "RIDEPULSE_KEY_PREFIX": settings.key_prefix,
        "RIDEPULSE_DATA_DIR": str(settings.data_dir),
    }
    return subprocess.run(
        [sys.executable, "-c", "from ridepulse.cli import main; main()", "deadletters", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, settings, *args)


async def dead_letter_count(redis: aioredis.Redis, settings: Settings) -> int:
    return int(await redis.xlen(GlobalKeys(settings.key_prefix).dead_letters))


async def test_a_dead_letter_is_listed_replayed_and_then_processed(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    events = expired_events(3)
    poison = {events[1].id}
    handled: Counter[str] = Counter()

    async def handler(event: Event, deps: Any) -> None:
        if event.id in poison:
            raise RuntimeError("pricing table missing")
        handled[event.id] += 1

    await fill(redis, keys.rides, events)
    consumer = runtime(
        redis, settings, HandlerTable(per_event={"ride.expired": handler}), burst=False
    )
    task = asyncio.create_task(consumer.run())
    try:
        await wait_until(
            lambda: dead_letter_count(redis, settings), timeout_s=20, what="the dead letter"
        )
        listing = await run_cli(settings)
        assert listing.returncode == 0, listing.stderr
        (line,) = [row for row in listing.stdout.splitlines() if events[1].id in row]
        for expected in ("ride.expired", f"{keys.rides} / g", "pricing table missing"):
            assert expected in line, f"{expected!r} not in {line!r}"
        assert line.split()[1] == str(settings.max_deliveries), line
        as_json = await run_cli(settings, "--json")
        (letter,) = orjson.loads(as_json.stdout)
        assert (letter["stream"], letter["group"], letter["event_id"]) == (
            keys.rides,
            "g",
            events[1].id,
        )
        assert letter["deliveries"] == settings.max_deliveries
        assert letter["original"]["type"] == "ride.expired"

        poison.clear()  # the operator fixed the cause
        replayed = await run_cli(settings, "replay", letter["id"])
        assert replayed.returncode == 0, replayed.stderr
        assert "1 replayed" in replayed.stdout
        await wait_until(
            lambda: _handled(handled, events[1].id), timeout_s=20, what="the replayed event"
        )
        assert await dead_letter_count(redis, settings) == 0
        assert (await run_cli(settings)).stdout.strip() == "no dead letters"
        assert handled[events[0].id] == handled[events[2].id] == 1
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)


async def test_replay_all_replays_every_dead_letter_and_an_unknown_id_fails(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    events = expired_events(4)
    failing = {events[0].id, events[3].id}
    handled: Counter[str] = Counter()

    async def handler(event: Event, deps: Any) -> None:
        if event.id in failing:
            raise RuntimeError("downstream down")
        handled[event.id] += 1

    await fill(redis, keys.rides, events)
    consumer = runtime(
        redis, settings, HandlerTable(per_event={"ride.expired": handler}), burst=False
    )
    task = asyncio.create_task(consumer.run())
    try:

        async def both_dead() -> bool:
            return await dead_letter_count(redis, settings) == 2

        await wait_until(both_dead, timeout_s=30, what="two dead letters")
        # README: listed oldest first, --limit N of them
        listed = [d["id"] for d in orjson.loads((await run_cli(settings, "--json")).stdout)]
        assert len(listed) == 2 and _entry_ids(listed) == sorted(_entry_ids(listed)), listed
        oldest = orjson.loads((await run_cli(settings, "--json", "--limit", "1")).stdout)
        assert [d["id"] for d in oldest] == listed[:1]
        missing = await run_cli(settings, "replay", "1-1")
        assert missing.returncode == 1 and "no dead letter 1-1" in missing.stderr
        # not an entry id at all: one line, not the server's ResponseError as a traceback
        malformed = await run_cli(settings, "replay", "nope")
        assert malformed.returncode == 1 and "Traceback" not in malformed.stderr
        assert "'nope' is not a dead letter id" in malformed.stderr, malformed.stderr
        neither = await run_cli(settings, "replay")
        assert neither.returncode == 1
        failing.clear()
        replayed = await run_cli(settings, "replay", "--all")
        assert replayed.returncode == 0 and "2 replayed" in replayed.stdout, replayed
        await wait_until(
            lambda: _all_handled(handled, [e.id for e in events]),
            timeout_s=20,
            what="every replayed event",
        )
        assert await dead_letter_count(redis, settings) == 0
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)


def _entry_ids(ids: list[str]) -> list[tuple[int, int]]:
    return [(int(ms), int(seq)) for ms, _, seq in (i.partition("-") for i in ids)]


async def _handled(handled: Counter[str], event_id: str) -> bool:
    return handled[event_id] == 1


async def _all_handled(handled: Counter[str], ids: list[str]) -> bool:
    return all(handled[i] == 1 for i in ids)


def _valid() -> dict[bytes, bytes]:
    return make("ride.expired", "ride/ok", {"ride_id": "ok", "version": 2}, "test").to_fields()


# What a broken producer might append: field names and values that are not UTF-8, data that is
# not JSON. A dead letter must keep each of them exactly, so a replay appends what arrived.
UNREADABLE_ENTRIES: list[dict[bytes, bytes]] = [
    {b"type": b"ride.\xffrequested", b"data": b"\x80\x81"},
    {**_valid(), b"id": b"x1", b"type": b"ride.\xffexpired"},
    {**_valid(), b"id": b"x2", b"data": b"{not json \xfe\x00"},
    {**_valid(), b"id": b"x3", b"data": b"", b"\xfe\xc3\x28": b"\xc3\x28"},
]

Fields = list[tuple[bytes, bytes]]


async def _entries(redis: aioredis.Redis, stream: str, after: str = "-") -> list[Fields]:
    found = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(stream, min=after))
    return [list(fields.items()) for _, fields in found]


async def test_replay_puts_back_unreadable_entries_byte_for_byte(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    handled: list[str] = []

    async def handler(event: Event, deps: Any) -> None:
        handled.append(event.id)

    for fields in UNREADABLE_ENTRIES:
        await redis.xadd(keys.rides, fields)  # type: ignore[arg-type]
    originals = await _entries(redis, keys.rides)
    assert originals == [list(f.items()) for f in UNREADABLE_ENTRIES]
    last_id = cast(list[tuple[bytes, Any]], await redis.xrevrange(keys.rides, count=1))[0][0]
    consumer = runtime(redis, settings, HandlerTable(per_event={"ride.expired": handler}))
    await asyncio.wait_for(consumer.run(), 10)
    assert handled == []
    assert await dead_letter_count(redis, settings) == len(UNREADABLE_ENTRIES)

    listing = await run_cli(settings)
    assert listing.returncode == 0, listing.stderr
    assert len(listing.stdout.splitlines()) == 1 + len(UNREADABLE_ENTRIES), listing.stdout
    # still unreadable: only --force replays them (each would come straight back otherwise)
    replayed = await run_cli(settings, "replay", "--all", "--force")
    assert replayed.returncode == 0, replayed.stderr
    assert f"{len(UNREADABLE_ENTRIES)} replayed" in replayed.stdout, replayed.stdout

    again = await _entries(redis, keys.rides, after="(" + last_id.decode())
    assert again == originals, f"replayed {again!r}, expected the originals {originals!r}"
    assert await dead_letter_count(redis, settings) == 0


async def test_a_dead_letter_in_the_old_json_only_format_still_replays(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys("sf", settings.key_prefix)
    original = {k.decode(): v.decode() for k, v in _valid().items()}
    old_letter = {  # as ridepulse/bus/deadletter.py wrote them before the raw fields
        "stream": keys.rides,
        "group": "g",
        "consumer": "c1",
        "entry_id": "1-0",
        "event_id": original["id"],
        "type": original["type"],
        "reason": "failed 5 deliveries",
        "deliveries": "5",
        "time": "0",
        "original": orjson.dumps(original),
    }
    await redis.xadd(GlobalKeys(settings.key_prefix).dead_letters, old_letter)  # type: ignore[arg-type]
    await redis.xgroup_create(keys.rides, "g", id="$", mkstream=True)  # as the platform's are
    replayed = await run_cli(settings, "replay", "--all")
    assert replayed.returncode == 0 and "1 replayed" in replayed.stdout, replayed
    assert await _entries(redis, keys.rides) == [list(_valid_as(original).items())]
    assert await dead_letter_count(redis, settings) == 0


def _valid_as(original: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in original.items()}


async def test_replay_all_keeps_each_letter_it_cannot_replay_and_exits_1(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """README: `--all` keeps (exit 1) any letter it cannot replay. Two cannot be: one names a
    stream outside this deployment's prefix, one has no original fields (an entry deleted
    before it was claimed). The replayable ones around them are replayed and deleted."""
    keys, dead = MarketKeys("sf", settings.key_prefix), GlobalKeys(settings.key_prefix).dead_letters
    foreign_stream = f"{settings.key_prefix}-elsewhere:{{sf}}:rides"  # not under the prefix
    first, last = (
        make("ride.expired", f"ride/{r}", {"ride_id": r, "version": 2}, "test").to_fields()
        for r in ("first", "last")
    )

    async def letter(stream: str, fields: dict[bytes, bytes] | None, entry_id: str) -> str:
        return await _letter(redis, settings, stream, fields, entry_id)

    await redis.xgroup_create(keys.rides, "g", id="$", mkstream=True)  # as the platform's are
    await letter(keys.rides, first, "1-0")
    foreign = await letter(foreign_stream, first, "1-0")
    empty = await letter(keys.rides, None, "2-0")
    await letter(keys.rides, last, "3-0")

    replayed = await run_cli(settings, "replay", "--all")
    assert replayed.returncode == 1, (replayed.stdout, replayed.stderr)
    assert "2 replayed, 2 kept" in replayed.stdout, replayed.stdout
    assert f"kept {foreign}:" in replayed.stderr and f"kept {empty}:" in replayed.stderr, (
        replayed.stderr
    )
    left = cast(list[tuple[bytes, Any]], await redis.xrange(dead))
    assert [entry_id.decode() for entry_id, _ in left] == [foreign, empty]
    assert await _entries(redis, keys.rides) == [list(first.items()), list(last.items())]
    assert await redis.exists(foreign_stream) == 0, "a replay wrote outside its prefix"


async def _letter(
    redis: aioredis.Redis,
    settings: Settings,
    stream: str,
    fields: dict[bytes, bytes] | None,
    entry: str,
) -> str:
    """A dead letter for `fields` (None: an entry deleted before it was claimed), read from
    `stream` at `entry`."""
    letter = dead_letter_fields(
        stream=stream,
        group="g",
        consumer="c1",
        entry_id=entry,
        fields=fields,
        reason="failed 5 deliveries",
        deliveries=5,
    )
    dead = GlobalKeys(settings.key_prefix).dead_letters
    return cast(bytes, await redis.xadd(dead, letter)).decode()  # type: ignore[arg-type]


async def test_replay_all_keeps_a_letter_redis_refuses_and_replays_the_ones_after_it(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """A letter whose stream key holds a string, then one whose stream has used up every id (the
    server refuses the XADD itself): `--all` stopped at the first with "cannot reach Redis
    ...: WRONGTYPE" and left the valid letter after them unreplayed. Now each is kept with its
    reason and the valid one is replayed."""
    keys = MarketKeys("sf", settings.key_prefix)
    string_key = f"{settings.key_prefix}:{{sf}}:not-a-stream"
    exhausted = f"{settings.key_prefix}:{{sf}}:exhausted"
    await redis.set(string_key, "s")
    await redis.xadd(exhausted, {"x": "y"}, id=f"{2**64 - 1}-{2**64 - 1}")
    await redis.xgroup_create(exhausted, "g", id="$")
    await redis.xgroup_create(keys.rides, "g", id="$", mkstream=True)
    valid = _valid()
    wrongtype = await _letter(redis, settings, string_key, valid, "1-0")
    refused = await _letter(redis, settings, exhausted, valid, "2-0")
    await _letter(redis, settings, keys.rides, valid, "3-0")

    replayed = await run_cli(settings, "replay", "--all")
    assert replayed.returncode == 1, (replayed.stdout, replayed.stderr)
    assert "1 replayed, 2 kept" in replayed.stdout, (replayed.stdout, replayed.stderr)
    assert f"kept {wrongtype}: " in replayed.stderr and "not a stream" in replayed.stderr
    assert f"kept {refused}: Redis refused the replay: " in replayed.stderr, replayed.stderr
    assert "cannot reach" not in replayed.stderr, replayed.stderr
    assert await _entries(redis, keys.rides) == [list(valid.items())]
    left = cast(
        list[tuple[bytes, Any]], await redis.xrange(GlobalKeys(settings.key_prefix).dead_letters)
    )
    assert [entry_id.decode() for entry_id, _ in left] == [wrongtype, refused]


async def test_replay_appends_only_to_a_stream_a_consumer_group_reads(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """A letter naming the dead-letter stream, the health stream or a stream that does not exist
    was appended there (the dead letters grew by one, a stream nobody reads was created)."""
    gk = GlobalKeys(settings.key_prefix)
    await redis.xadd(gk.health, {"type": "service.heartbeat"})  # a stream with no group
    new_stream = f"{settings.key_prefix}:{{sf}}:brand-new"
    targets = {
        gk.dead_letters: "the dead letters",
        gk.health: "no consumer group",
        new_stream: "does not exist",
    }
    for stream, why in targets.items():
        letter = await _letter(redis, settings, stream, _valid(), "1-0")
        before = await dead_letter_count(redis, settings)
        replayed = await run_cli(settings, "replay", letter)
        assert replayed.returncode == 1, (stream, replayed.stdout, replayed.stderr)
        assert why in replayed.stderr and "no consumer group would read" in replayed.stderr, (
            replayed.stderr
        )
        assert await dead_letter_count(redis, settings) == before, "the letter stays, alone"
    assert await redis.xlen(gk.health) == 1
    assert await redis.exists(new_stream) == 0


GROUPS = ("matching", "eta", "pricing")  # three groups read the ride stream, as on the platform


async def _read_by_every_group(redis: aioredis.Redis, settings: Settings) -> None:
    async def ignore(event: Event, deps: Any) -> None:
        pass

    for group in GROUPS:
        consumer = runtime(
            redis, settings, HandlerTable(per_event={"ride.expired": ignore}), group=group
        )
        await asyncio.wait_for(consumer.run(), 10)


async def test_replaying_an_entry_every_group_gave_up_on_appends_it_once(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """Three groups dead-letter one non-JSON entry: three letters of one entry. A replay appends
    it once and deletes all three (every group reads the new entry); one still undecodable is
    refused unless --force. Replayed once per letter, the letters went 3 → 9 → 27."""
    keys = MarketKeys("sf", settings.key_prefix)
    bad = {**_valid(), b"data": b"not json{"}
    await redis.xadd(keys.rides, bad)  # type: ignore[arg-type]
    await _read_by_every_group(redis, settings)
    assert await dead_letter_count(redis, settings) == len(GROUPS)

    refused = await run_cli(settings, "replay", "--all")
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert "0 replayed, 3 kept" in refused.stdout, refused.stdout
    assert "still cannot be decoded" in refused.stderr and "--force" in refused.stderr
    one = orjson.loads((await run_cli(settings, "--json")).stdout)[0]["id"]
    refused_one = await run_cli(settings, "replay", one)
    assert refused_one.returncode == 1 and "--force" in refused_one.stderr, refused_one.stderr
    assert await redis.xlen(keys.rides) == 1 and await dead_letter_count(redis, settings) == 3

    for round_ in (1, 2):
        replayed = await run_cli(settings, "replay", "--all", "--force")
        assert replayed.returncode == 0, (replayed.stdout, replayed.stderr)
        assert "1 replayed" in replayed.stdout, replayed.stdout
        assert await redis.xlen(keys.rides) == 1 + round_, "the entry was appended more than once"
        assert await dead_letter_count(redis, settings) == 0
        await _read_by_every_group(redis, settings)
        assert await dead_letter_count(redis, settings) == len(GROUPS), f"round {round_}"

    one = orjson.loads((await run_cli(settings, "--json")).stdout)[0]["id"]
    single = await run_cli(settings, "replay", one, "--force")
    assert single.returncode == 0 and "1 replayed" in single.stdout, single
    assert await redis.xlen(keys.rides) == 4
    assert await dead_letter_count(redis, settings) == 0, "the other groups' letters were kept"
    assert [f for _, f in await _entries_with_ids(redis, keys.rides)] == [bad] * 4


async def _entries_with_ids(
    redis: aioredis.Redis, stream: str
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(stream))


async def test_a_letter_of_a_ping_stamped_a_day_ahead_is_not_replayed_without_force(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """Consumers dead-letter a ping stamped more than a minute past its entry's id time; a
    replay appends the entry now, so the same rule is asked against the server's time, else
    every telemetry group would dead-letter it again (a letter each)."""
    keys = MarketKeys("sf", settings.key_prefix)
    await redis.xgroup_create(keys.telemetry, "matching.geo", id="$", mkstream=True)
    seconds, _ = await redis.time()
    ahead = (int(seconds) + 86_400) * 1000
    ping = {"driver_id": "d-future", "lat": 37.7, "lon": -122.4, "ts": ahead}
    fields = make("driver.location", "fleet", {"pings": []}, "test").to_fields()
    fields[b"data"] = orjson.dumps({"pings": [ping]})
    letter = await _letter(redis, settings, keys.telemetry, fields, "1-0")

    refused = await run_cli(settings, "replay", letter)
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert "more than 60 s after the entry was appended" in refused.stderr, refused.stderr
    assert await redis.xlen(keys.telemetry) == 0
    forced = await run_cli(settings, "replay", letter, "--force")
    assert forced.returncode == 0, (forced.stdout, forced.stderr)
    assert await redis.xlen(keys.telemetry) == 1
