"""The janitor: trims ride streams below what every group has acknowledged (DESIGN §6, §11),
and telemetry streams by age.

Ride streams must never lose an unprocessed event, so they are trimmed only below every
group's oldest pending and last-delivered id. Telemetry is capped by entry count on append,
but an entry holds from one to a thousand pings, so a count alone cannot bound memory: here it
is also trimmed by time (MINID). A ping older than the retention is worthless to every reader
(matching stops offering a driver after 30 s of silence); a consumer lagging that far loses
those pings by design; this janitor counts them (ridepulse/telemetry_loss.py).

It also keeps the projections bounded as drivers and riders come and go: rides are taken back
from drivers silent past `driver_lost_s` and drivers silent past `driver_evict_s` are forgotten
(ridepulse/silent_drivers.py; silence counts only while drivers can be heard,
ridepulse/unheard.py: not while a telemetry group is behind, nor while the platform was down or
cut off from Redis, ridepulse/heard_until.py), riders' ride and open-rides sets and the
heartbeat set are trimmed (ridepulse/retention.py). Every replica may run it: each step
re-checks inside its script."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter

from ridepulse.bus.backlog import shedding_groups_backlog
from ridepulse.bus.trimming import trim_acknowledged
from ridepulse.bus.worker import consumer_name, run_service, start_service
from ridepulse.contracts.envelope import now_ms
from ridepulse.heard_until import forget_unheard, hear
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.logs import get_logger
from ridepulse.markets import load_markets
from ridepulse.pause import sleep_or_stop
from ridepulse.periodic import every
from ridepulse.redis_client import connect
from ridepulse.retention import prune_heartbeats, prune_rider_open_rides, trim_rider_rides
from ridepulse.rides.clock import server_time_ms
from ridepulse.rides.store import RideStore
from ridepulse.settings import UNHEARD_AFTER_SWEEPS, Settings
from ridepulse.silent_drivers import evict_departed, release_lost_rides
from ridepulse.telemetry_loss import TrimmedReads
from ridepulse.unheard import UnheardTimes

DRIVER_SWEEPS_HELD_BACK = Counter(
    "rp_driver_sweeps_held_back_total",
    "Driver sweeps that did not count a stretch when the market's drivers could not be heard "
    "(a telemetry group behind, the platform down or cut off from Redis) as silence",
    ["market"],
)


async def trim_once(redis: aioredis.Redis, settings: Settings) -> int:
    removed = 0
    for market in load_markets(settings.markets_file, settings.markets).markets:
        keys = MarketKeys(market.id, settings.key_prefix)
        for stream in (keys.rides,):
            if await redis.exists(stream):
                keep_after_ms = now_ms() - int(settings.ride_stream_retention_s * 1000)
                removed += await trim_acknowledged(redis, stream, keep_after_ms=keep_after_ms)
    return removed


async def trim_telemetry_once(
    redis: aioredis.Redis, settings: Settings, lost: TrimmedReads | None = None
) -> int:
    """Trim telemetry past the retention; what it and the append cap took from under a group
    that had not read it is counted (`lost` remembers what earlier passes counted)."""
    lost = lost or TrimmedReads()
    oldest_kept = f"{now_ms() - int(settings.telemetry_retention_s * 1000)}-0"
    removed = 0
    for market in load_markets(settings.markets_file, settings.markets).markets:
        stream = MarketKeys(market.id, settings.key_prefix).telemetry
        await lost.observe(redis, stream)  # the append cap's trims since the last pass
        trimmed: int = await redis.xtrim(stream, minid=oldest_kept, approximate=True)
        if trimmed:
            await lost.observe(redis, stream)
        removed += trimmed
    return removed


async def sweep_drivers_once(
    redis: aioredis.Redis,
    settings: Settings,
    consumer: str = "janitor",
    unheard: dict[str, UnheardTimes] | None = None,
) -> dict[str, int]:
    """Rides of lost drivers first, then departed drivers: a driver released from its ride
    this pass can be evicted in the same pass once silent past `driver_evict_s`. Silence is
    counted only while the server could hear the market's drivers (ridepulse/unheard.py;
    `unheard` keeps each market's record between passes, the platform's own deafness is read
    back from Redis each pass, ridepulse/heard_until.py). Their events' source is
    `janitor/<consumer>`, as every other service's is `<service>/<instance>`."""
    source = f"janitor/{consumer}"
    unheard = {} if unheard is None else unheard
    now = await server_time_ms(redis)
    totals = {"rides_released": 0, "drivers_evicted": 0}
    for market in load_markets(settings.markets_file, settings.markets).markets:
        keys = MarketKeys(market.id, settings.key_prefix)
        times = unheard.setdefault(market.id, UnheardTimes())
        await observe_deafness(redis, settings, keys, now, times)
        await observe_dispatch_lag(redis, settings, keys, now, times)
        lost_cutoff = times.cutoff_ms(now, settings.driver_lost_s)
        evict_cutoff = times.cutoff_ms(now, settings.driver_evict_s)
        times.forget_before(min(lost_cutoff, evict_cutoff))
        await forget_unheard(redis, keys, min(lost_cutoff, evict_cutoff))
        if lost_cutoff < now - int(settings.driver_lost_s * 1000):
            DRIVER_SWEEPS_HELD_BACK.labels(market.id).inc()
        store = RideStore(redis, keys, source)
        totals["rides_released"] += await release_lost_rides(
            store, lost_cutoff, settings.driver_lost_s
        )
        totals["drivers_evicted"] += await evict_departed(
            store, evict_cutoff, settings.driver_evict_s
        )
    return totals


async def observe_deafness(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, now: int, times: UnheardTimes
) -> None:
    """Stamp the market heard; a stamp found older than a few sweep intervals makes the time
    since it unheard (for every janitor, kept in Redis) and is logged."""
    gap_ms = int(settings.driver_sweep_interval_s * UNHEARD_AFTER_SWEEPS * 1000)
    heard = await hear(redis, keys, now, gap_ms)
    for start, end in heard.stretches:
        times.add(start, end)
    if heard.recorded:
        start, end = heard.recorded
        get_logger().warning(
            "janitor.platform_unheard", market=keys.market, unheard_s=round((end - start) / 1000, 1)
        )


async def observe_dispatch_lag(
    redis: aioredis.Redis, settings: Settings, keys: MarketKeys, now: int, times: UnheardTimes
) -> None:
    """Sample the worst lag of the groups whose lag sheds pings (the one stamping
    `drivers:seen` among them); log when the market's drivers stop and start being heard."""
    backlogs = await shedding_groups_backlog(redis, settings, keys.telemetry, now)
    lag_s = max((b.lag_s for b in backlogs.values()), default=0.0)
    log, was_behind = get_logger(), times.behind
    times.observe(now, lag_s, settings.telemetry_shed_lag_s)
    if times.behind and not was_behind:
        log.warning("janitor.drivers_unheard", market=keys.market, lag_s=round(lag_s, 1))
    elif was_behind and not times.behind:
        log.info("janitor.drivers_heard_again", market=keys.market)


async def retain_once(
    redis: aioredis.Redis, settings: Settings, absent_since: dict[bytes, float]
) -> dict[str, int]:
    trimmed = open_pruned = 0
    for market in load_markets(settings.markets_file, settings.markets).markets:
        keys = MarketKeys(market.id, settings.key_prefix)
        trimmed += await trim_rider_rides(redis, keys, settings.rider_rides_kept)
        open_pruned += await prune_rider_open_rides(redis, keys)
    pruned = await prune_heartbeats(
        redis,
        GlobalKeys(settings.key_prefix),
        absent_since,
        time.monotonic(),
        settings.heartbeat_interval_s * settings.heartbeat_prune_intervals,
    )
    return {
        "rider_rides_trimmed": trimmed,
        "rider_open_rides_pruned": open_pruned,
        "heartbeats_pruned": pruned,
    }


def _every(
    interval_s: float, name: str, step: Callable[[], Awaitable[dict[str, int]]]
) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
    """A background loop running `step` every `interval_s`; a Redis error is logged and the
    loop carries on (the next pass redoes whatever this one missed), backing off while the
    errors last."""
    log = get_logger()

    async def one_pass() -> None:
        totals = await step()
        if any(totals.values()):
            log.info(f"janitor.{name}", **totals)

    async def loop(stop: asyncio.Event) -> None:
        await every(stop, interval_s, one_pass, log=log, failed=f"janitor.{name}_failed")

    return loop


async def serve(settings: Settings) -> None:
    redis = connect(settings)
    log = get_logger()

    async def trim_loop(stop: asyncio.Event) -> None:
        while not stop.is_set():
            removed = await trim_once(redis, settings)
            if removed:
                log.info("janitor.trimmed", entries=removed)
            await sleep_or_stop(stop, settings.ride_stream_trim_interval_s)

    lost = TrimmedReads()

    async def telemetry_loop(stop: asyncio.Event) -> None:
        while not stop.is_set():
            removed = await trim_telemetry_once(redis, settings, lost)
            if removed:
                log.debug("janitor.telemetry_trimmed", entries=removed)
            # a tenth of the retention: the stream overshoots it by at most 10%
            await sleep_or_stop(stop, settings.telemetry_retention_s / 10)

    consumer = consumer_name(settings, "janitor")
    absent_since: dict[bytes, float] = {}
    unheard: dict[str, UnheardTimes] = {}
    drivers_loop = _every(
        settings.driver_sweep_interval_s,
        "drivers_swept",
        lambda: sweep_drivers_once(redis, settings, consumer, unheard),
    )
    retention_loop = _every(
        settings.retention_interval_s,
        "retained",
        lambda: retain_once(redis, settings, absent_since),
    )
    try:
        await run_service(
            redis,
            settings,
            service="janitor",
            consumer=consumer,
            runtimes=[],
            background=[trim_loop, telemetry_loop, drivers_loop, retention_loop],
        )
    finally:
        await redis.aclose()


def main(settings: Settings) -> None:
    start_service("janitor", settings, serve)
