"""A dashboard that starts (or restarts) while the city is busy shows the same KPIs and finished
rides as one that has been running: it reads the ride stream back by time, not by count."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from dashboard.backfill import read_back
from dashboard.config import FeedConfig
from dashboard.feed import Feed
from dashboard.kpis import MINUTE_MS, percentile
from ridepulse.contracts.envelope import now_ms
from ridepulse.keys import MarketKeys
from ridepulse.rides.state import TERMINAL
from ridepulse.settings import Settings
from tests.support.dashboard_city import SF, RideWriter

pytestmark = pytest.mark.integration

RIDES = 700  # over 5.5 minutes: ~4,000 entries, twenty times the 200 a count-based read took


@dataclass(frozen=True)
class Step:
    at: int
    ride: int
    status: str
    extra: tuple[tuple[str, Any], ...] = ()


def _plan(rng: random.Random, now: int) -> list[Step]:
    """Rides requested over the last 5.5 minutes: most go to completion, some are cancelled
    before a match; steps still in the future are not written (those rides are open)."""
    steps: list[Step] = []
    for ride in range(RIDES):
        at = now - rng.randint(2_000, 330_000)
        path: list[tuple[str, int, tuple[tuple[str, Any], ...]]] = [("requested", 0, ())]
        if rng.random() < 0.1:
            path.append(("cancelled", rng.randint(1_000, 20_000), ()))
        else:
            eta = (("pickup_eta_s", rng.randint(60, 420)),)
            path += [
                ("offered", rng.randint(200, 3_000), eta),
                ("matched", rng.randint(500, 25_000), eta),
                ("driver_arrived", rng.randint(30_000, 120_000), ()),
                ("started", rng.randint(5_000, 30_000), ()),
                ("completed", rng.randint(30_000, 150_000), (("fare", 12.5),)),
            ]
        for status, after_ms, extra in path:
            at += after_ms
            if at >= now:
                break
            steps.append(Step(at, ride, status, extra))
    return sorted(steps, key=lambda s: (s.at, s.ride))


async def _write(redis: aioredis.Redis, keys: MarketKeys, steps: list[Step]) -> None:
    writers: dict[int, RideWriter] = {}
    for step in steps:
        writer = writers.get(step.ride) or RideWriter(
            redis, keys, f"ride-{step.ride:04d}", (37.78, -122.41), (37.77, -122.42), stamp_ids=True
        )
        writers[step.ride] = writer
        driver = f"drv-{step.ride:04d}" if step.status == "offered" else None
        await writer.step(step.status, at_ms=step.at, driver_id=driver, **dict(step.extra))


def _truth(entries: list[Any], eta_by_ride: dict[str, float], now: int, config: FeedConfig) -> Any:
    """The figures a dashboard running all along would show at `now`, from the stream."""
    requested: dict[str, int] = {}
    matched: dict[str, int] = {}
    ended: dict[str, int] = {}
    for _, fields in entries:
        kind = fields[b"type"].decode()
        ride_id = orjson.loads(fields[b"data"])["ride_id"]
        at = int(fields[b"time"])
        if kind == "ride.requested":
            requested[ride_id] = at
        elif kind == "ride.matched":
            matched[ride_id] = at
        elif kind.removeprefix("ride.") in TERMINAL:
            ended[ride_id] = at
    window = {r: at for r, at in matched.items() if now - at <= config.match_window_ms}
    waits = [(at - requested[r]) / 1000 for r, at in window.items()]
    etas = [eta_by_ride[r] for r in window]
    finished = sorted(
        ((at, r) for r, at in ended.items() if now - at <= config.finished_ride_ttl_ms),
        reverse=True,
    )[: config.finished_ride_limit]
    kpis = {
        "matched_last_min": sum(1 for at in window.values() if now - at <= MINUTE_MS),
        "ttm_p50_s": round(percentile(waits, 0.5) or 0, 1),
        "ttm_p95_s": round(percentile(waits, 0.95) or 0, 1),
        "pickup_eta_p50_s": round(percentile(etas, 0.5) or 0, 0),
    }
    return kpis, {r for _, r in finished}


async def test_a_fresh_dashboard_shows_the_kpis_and_finished_rides_of_the_whole_window(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = MarketKeys(SF.id, settings.key_prefix)
    now = now_ms()
    steps = _plan(random.Random(23), now)
    await _write(redis, keys, steps)
    eta_by_ride = {
        f"ride-{s.ride:04d}": float(dict(s.extra)["pickup_eta_s"])
        for s in steps
        if s.status == "matched"
    }

    feed = Feed(redis, settings)  # a process started now, with the default windows
    await feed.reader.load()
    at = now_ms()
    feed.state.refresh(at)

    stream: Any = await redis.xrange(keys.rides)
    expected_kpis, expected_finished = _truth(stream, eta_by_ride, at, feed.config)
    shown = {name: feed.state.kpis[name] for name in expected_kpis}
    assert expected_kpis["matched_last_min"] > 100, f"the plan is too thin: {expected_kpis}"
    assert shown == expected_kpis, (
        f"a fresh dashboard showed {shown}, the stream says {expected_kpis}"
    )
    finished = {r for r, ride in feed.state.rides.items() if ride["status"] in TERMINAL}
    assert len(expected_finished) == feed.config.finished_ride_limit
    assert finished == expected_finished, (
        f"{len(finished & expected_finished)} of the {len(expected_finished)} just-finished "
        f"rides shown ({len(finished - expected_finished)} others)"
    )
    assert [e["time"] for e in feed.state.events] == sorted(s.at for s in steps)[-200:]


async def test_the_read_back_is_newest_first_and_stops_at_its_cap(
    redis: aioredis.Redis, settings: Settings
) -> None:
    stream = MarketKeys(SF.id, settings.key_prefix).rides
    now = now_ms()
    for offset in range(-400_000, 0, 1_000):  # one entry a second over 400 s
        await redis.xadd(stream, {"n": str(offset)}, id=f"{now + offset}-*")

    newest: Any = await redis.xrevrange(stream, count=1)
    window = await read_back(redis, stream, newest[0][0], 299_000, page=37, cap=10_000)
    capped = await read_back(redis, stream, newest[0][0], 299_000, page=37, cap=100)

    assert [int(f[b"n"]) for _, f in window] == list(range(-1_000, -300_001, -1_000))
    assert [int(f[b"n"]) for _, f in capped] == list(range(-1_000, -101_000, -1_000))
