"""Latest position wins, against the real server: a telemetry consumer that falls behind (a
backlog written before it starts, or a flood faster than its handler) conflates superseded
pings, catches up to a lag of seconds, and leaves every driver's newest position indexed."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from matching import geo_service
from matching.handlers import MatchingDeps, on_locations
from ridepulse.bus.consumer import ConsumerRuntime
from ridepulse.bus.handlers import HandlerTable, Outgoing
from ridepulse.contracts.events import DriverLocationV1
from ridepulse.contracts.registry import Event, make
from ridepulse.geo import haversine_m
from ridepulse.keys import MarketKeys
from ridepulse.positions import parse_position
from ridepulse.settings import Settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

CENTRE = (37.7749, -122.4194)


def location_fields(pings: list[dict[str, Any]]) -> dict[Any, Any]:
    return make("driver.location", "fleet", {"pings": pings}, "test").to_fields()


def ping(rng: random.Random, driver: int, ts: int) -> dict[str, Any]:
    return {
        "driver_id": f"d{driver}",
        "lat": CENTRE[0] + rng.uniform(-0.02, 0.02),
        "lon": CENTRE[1] + rng.uniform(-0.02, 0.02),
        "ts": ts,
        "heading": 0.0,
    }


async def stored_positions(
    redis: aioredis.Redis, keys: MarketKeys
) -> dict[str, tuple[int, float, float]]:
    """Driver → (ts, lat, lon) of the position the index holds."""
    raw: Any = await redis.hgetall(keys.positions)
    out: dict[str, tuple[int, float, float]] = {}
    for driver, packed in raw.items():
        position = parse_position(packed)
        assert position is not None
        out[driver.decode()] = (position.ts, position.lat, position.lon)
    return out


def metres_apart(a: Sequence[float], b: Sequence[float]) -> float:
    return haversine_m(a[0], a[1], b[0], b[1])


async def behind_newest(
    redis: aioredis.Redis,
    keys: MarketKeys,
    newest: dict[str, int],
    where: dict[str, tuple[float, float]],
    slack_m: float,
) -> dict[str, tuple[int, float, float]]:
    """Drivers whose stored position is not their newest ping, after asserting each is within
    `slack_m` (geo_min_move_m) of it: matching/geo_filter.py skips a ping that moved less than
    that from the one written last, so a driver may stay one such ping behind."""
    stored = await stored_positions(redis, keys)
    assert set(stored) == set(newest)
    behind = {d: stored[d] for d in newest if stored[d][0] != newest[d]}
    assert all(metres_apart(stored[d][1:], where[d]) < slack_m for d in behind), (
        f"stored {behind}, newest {[(d, newest[d], where[d]) for d in behind]}"
    )
    return behind


async def newest_positions(redis: aioredis.Redis, keys: MarketKeys) -> dict[str, int]:
    raw: Any = await redis.hgetall(keys.positions)
    out: dict[str, int] = {}
    for driver, packed in raw.items():
        position = parse_position(packed)
        assert position is not None
        out[driver.decode()] = position.ts
    return out


async def caught_up(redis: aioredis.Redis, stream: str, group: str) -> bool:
    groups: Any = await redis.xinfo_groups(stream)
    info = next((g for g in groups if g["name"].decode() == group), None)
    if info is None:
        return False  # the consumer has not created its group yet
    return int(info["lag"] or 0) == 0 and int(info["pending"]) == 0


async def geo_until_caught_up(
    deps: MatchingDeps,
    runtime: ConsumerRuntime[MatchingDeps],
    redis: aioredis.Redis,
    stream: str,
    *,
    timeout_s: float,
    what: str,
) -> None:
    """Run matching's geo consumer until its group has read all of `stream`, then stop it and
    close its client."""
    task = asyncio.create_task(runtime.run())
    try:
        await wait_until(
            lambda: caught_up(redis, stream, geo_service.GROUP), timeout_s=timeout_s, what=what
        )
    finally:
        runtime.stop()
        await task
        await deps.redis.aclose()


@pytest.mark.parametrize(("in_flight", "replicas"), [(1, 1), (2, 1), (2, 2)])
async def test_a_backlog_of_pings_is_conflated_and_every_driver_keeps_its_newest_position(
    settings: Settings, redis: aioredis.Redis, in_flight: int, replicas: int
) -> None:
    """20 s of pings written before the consumer starts: it reads them in catch-up slices,
    skips the superseded ones, and each driver's newest ping wins, also with two reads in
    flight at once (RIDEPULSE_GEO_BATCHES_IN_FLIGHT, the default), whose batches may finish in
    either order, and with two replicas sharing the group (`ridepulse up` runs two), each
    applying the entries it was handed."""
    rng = random.Random(7)
    settings = settings.model_copy(update={"geo_batches_in_flight": in_flight})
    if replicas > 1:  # slices small enough that both replicas get a share of the 120 entries
        slices = {"telemetry_catch_up_read_count": 5, "telemetry_catch_up_max_read_count": 5}
        settings = settings.model_copy(update=slices)
    built = [
        geo_service.build(settings.model_copy(update={"consumer_name": f"geo-{n}"}))
        for n in range(replicas)
    ]
    runtimes = [runtime for _, runtime in built]
    assert {r.batches_in_flight for r in runtimes} == {in_flight}
    deps, runtime = built[0]
    keys = deps.keys(runtime.sources[0].market)
    stream = runtime.sources[0].key
    drivers = 300
    await redis.hset(keys.driver_statuses, mapping={f"d{d}": "available" for d in range(drivers)})
    start_ms = int(time.time() * 1000) - 20_000
    newest: dict[str, int] = {}
    where: dict[str, tuple[float, float]] = {}
    pipe = redis.pipeline(transaction=False)
    for second in range(20):  # every driver pings twice a second, 100 pings an entry
        for half in range(2):
            ts = start_ms + second * 1000 + half * 500
            batch = [ping(rng, d, ts) for d in range(drivers)]
            for seq, start in enumerate(range(0, drivers, 100)):
                pipe.xadd(stream, location_fields(batch[start : start + 100]), id=f"{ts}-{seq}")
            newest.update({p["driver_id"]: ts for p in batch})
            where.update({p["driver_id"]: (p["lat"], p["lon"]) for p in batch})
    await pipe.execute()

    tasks = [asyncio.create_task(r.run()) for r in runtimes]
    try:
        await wait_until(
            lambda: caught_up(redis, stream, geo_service.GROUP),
            timeout_s=60,
            what="the group to read the whole backlog",
        )
    finally:
        for r in runtimes:
            r.stop()
        await asyncio.gather(*tasks)
        for d, _ in built:
            await d.redis.aclose()

    # a replica skips a ping that moved less than geo_min_move_m from the one it wrote last,
    # whichever replica wrote in between (seed 7 has such a pair: d275's last two pings)
    behind = await behind_newest(redis, keys, newest, where, settings.geo_min_move_m)
    if replicas == 1:
        assert not behind, behind  # one replica conflates each read to the newest ping first
    indexed: Any = await redis.zrange(keys.drivers_geo, 0, -1)
    assert {m.decode() for m in indexed} == set(newest)
    total = 20 * 2 * drivers
    conflated = sum(r.stats.conflated for r in runtimes)
    # most of a 20 s backlog is superseded; replicas' small slices see less of it per read
    assert conflated > (total // 2 if replicas == 1 else total // 4)
    processed = [r.stats.processed for r in runtimes]
    assert sum(processed) == 20 * 2 * (drivers // 100)  # every entry acknowledged, once
    if replicas > 1:
        assert all(processed), f"a replica was handed nothing: {processed}"


def slowed(per_ping_s: float, seen: list[int]) -> HandlerTable[MatchingDeps]:
    """matching-geo's handler made to cost `per_ping_s` of wall time per ping it is handed:
    a stand-in for a machine too slow for the offered load."""

    async def handler(events: Sequence[Event], deps: MatchingDeps) -> Outgoing:
        pings = sum(len(e.payload(DriverLocationV1).pings) for e in events)
        seen.append(pings)
        await asyncio.sleep(pings * per_ping_s)
        return await on_locations(events, deps)

    return HandlerTable(batch={"driver.location": handler})


@dataclass
class Flood:
    runtime: ConsumerRuntime[MatchingDeps]
    lags: list[float]  # the group's lag in seconds, once a second
    newest: dict[str, int]  # driver → ts of its newest ping sent
    where: dict[str, tuple[float, float]]  # driver → where that ping put it
    keys: MarketKeys


async def flood(
    settings: Settings, redis: aioredis.Redis, *, conflate: bool, seconds: float
) -> Flood:
    """Offer 3x what the slowed handler can take for `seconds`; sample the consumer's lag in
    seconds once a second; then wait for it to finish (or stop it, when it cannot)."""
    rng = random.Random(11)
    run_settings = settings.model_copy(update={"telemetry_conflate": conflate})
    deps, runtime = geo_service.build(run_settings)
    runtime.handlers = slowed(per_ping_s=0.001, seen=[])  # capacity: 1,000 pings/s
    keys = deps.keys(runtime.sources[0].market)
    stream = runtime.sources[0].key
    drivers, per_entry, entries_per_s = 300, 100, 30  # offered: 3,000 pings/s
    await redis.hset(keys.driver_statuses, mapping={f"d{d}": "available" for d in range(drivers)})
    newest: dict[str, int] = {}
    where: dict[str, tuple[float, float]] = {}
    lags: list[float] = []
    task = asyncio.create_task(runtime.run())
    began = time.monotonic()
    sent = 0
    next_driver = 0
    try:
        while time.monotonic() - began < seconds:
            ts = int(time.time() * 1000)
            batch = [ping(rng, (next_driver + i) % drivers, ts) for i in range(per_entry)]
            next_driver = (next_driver + per_entry) % drivers
            await redis.xadd(stream, location_fields(batch))
            newest.update({p["driver_id"]: ts for p in batch})
            where.update({p["driver_id"]: (p["lat"], p["lon"]) for p in batch})
            sent += 1
            if sent % entries_per_s == 0:
                lags.append(await group_lag_s(redis, stream))
            # pace by the clock, so a slow machine offers the same load (never a fixed sleep)
            await asyncio.sleep(max(began + sent / entries_per_s - time.monotonic(), 0))
        if conflate:
            await wait_until(
                lambda: caught_up(redis, stream, geo_service.GROUP),
                timeout_s=60,
                what="the consumer to catch up after the flood",
            )
    finally:
        runtime.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)
        await deps.redis.aclose()
    return Flood(runtime, lags, newest, where, keys)


async def group_lag_s(redis: aioredis.Redis, stream: str) -> float:
    """Seconds between the newest entry and the group's last delivered one (entry ids are
    the server's ms)."""
    groups: Any = await redis.xinfo_groups(stream)
    info = next(g for g in groups if g["name"].decode() == geo_service.GROUP)
    last: Any = await redis.xrevrange(stream, count=1)
    newest_ms = int(last[0][0].split(b"-")[0])
    delivered_ms = int(info["last-delivered-id"].split(b"-")[0])
    return max(newest_ms - delivered_ms, 0) / 1000


async def test_a_flood_three_times_the_handlers_capacity_keeps_lag_under_two_seconds(
    settings: Settings, redis: aioredis.Redis
) -> None:
    run = await flood(settings, redis, conflate=True, seconds=10)
    settled = run.lags[3:]  # the first seconds fill the pipeline
    assert settled and max(settled) < 2.0, run.lags
    assert run.runtime.stats.conflated > 0
    # the newest ping of each driver, or one the filter let stand within geo_min_move_m of it
    # (seen: d200 one ping behind; the pings read together, and so written, vary by machine)
    await behind_newest(redis, run.keys, run.newest, run.where, settings.geo_min_move_m)


async def test_without_conflation_the_same_flood_leaves_the_consumer_ever_further_behind(
    settings: Settings, redis: aioredis.Redis
) -> None:
    """The control: what the test above would see if conflation did nothing."""
    run = await flood(settings, redis, conflate=False, seconds=8)
    assert run.lags[-1] > 2.0 and run.lags[-1] > run.lags[2], run.lags
    assert run.runtime.stats.conflated == 0


async def test_a_backlog_of_drivers_pinging_less_often_than_a_read_spans_is_still_conflated(
    settings: Settings, redis: aioredis.Redis
) -> None:
    """The fleet of the capacity sweep: each driver pings every 4 s, and a 4 s slice of the
    stream is more entries than a fixed catch-up read (50). Reads of a fixed size then hold no
    driver twice, so nothing is conflated however far behind the consumer is (seen: 40k pings/s,
    matching.geo 4.7 s behind, `conflated` 0). A catch-up read must span the backlog."""
    rng = random.Random(5)
    deps, runtime = geo_service.build(settings)
    keys = deps.keys(runtime.sources[0].market)
    stream = runtime.sources[0].key
    drivers, per_entry, period_ms, periods = 6_000, 100, 4_000, 5  # 60 entries a period
    await redis.hset(keys.driver_statuses, mapping={f"d{d}": "available" for d in range(drivers)})
    start_ms = int(time.time() * 1000) - periods * period_ms
    newest: dict[str, int] = {}
    pipe = redis.pipeline(transaction=False)
    entries = drivers // per_entry
    for period in range(periods):
        for seq in range(entries):  # entries spread evenly over the period, as a fleet sends
            ts = start_ms + period * period_ms + seq * period_ms // entries
            batch = [ping(rng, d, ts) for d in range(seq * per_entry, (seq + 1) * per_entry)]
            pipe.xadd(stream, location_fields(batch), id=f"{ts}-0")
            newest.update({p["driver_id"]: ts for p in batch})
    await pipe.execute()

    await geo_until_caught_up(
        deps, runtime, redis, stream, timeout_s=90, what="the group to read the whole backlog"
    )

    assert await newest_positions(redis, keys) == newest
    total = periods * drivers
    assert runtime.stats.conflated > total // 2, runtime.stats  # most of 5 periods superseded


async def test_a_catch_up_lag_of_0_conflates_a_read_at_lag_0_too(
    settings: Settings, redis: aioredis.Redis
) -> None:
    """README: RIDEPULSE_TELEMETRY_CATCH_UP_LAG_S 0 = always. A lag is never below 0 (a read's
    entries stamped by a server clock ahead of this host's count as 0), and the consumer
    compared `lag > 0`: such a read conflated nothing. One entry a minute ahead, two pings of
    one driver in it: the older is skipped."""
    deps, runtime = geo_service.build(settings.model_copy(update={"telemetry_catch_up_lag_s": 0}))
    keys = deps.keys(runtime.sources[0].market)
    stream = runtime.sources[0].key
    rng = random.Random(3)
    await redis.hset(keys.driver_statuses, mapping={"d1": "available"})
    ahead_ms = int(time.time() * 1000) + 60_000
    older, newer = ping(rng, 1, ahead_ms - 1_000), ping(rng, 1, ahead_ms)
    await redis.xadd(stream, location_fields([older, newer]), id=f"{ahead_ms}-0")
    await geo_until_caught_up(
        deps, runtime, redis, stream, timeout_s=10, what="the group to read the entry"
    )
    assert runtime.stats.conflated == 1, runtime.stats
