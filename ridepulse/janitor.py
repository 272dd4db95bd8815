"""The janitor: trims ride streams below what every group has acknowledged (DESIGN §6, §11),
and telemetry streams by age.

Ride streams must never lose an unprocessed event, so they are trimmed only below every
group's oldest pending and last-delivered id. Telemetry is capped by entry count on append,
but an entry holds from one to a thousand pings, so a count alone cannot bound memory: here it
is also trimmed by time (MINID). A ping older than the retention is worthless to every reader
(matching stops offering a driver after 30 s of silence); a consumer lagging that far loses
those pings by design and counts them (ConsumerRuntime's `lost`)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from ridepulse.bus.trimming import trim_acknowledged
from ridepulse.bus.worker import consumer_name, run_service, start_service
from ridepulse.contracts.envelope import now_ms
from ridepulse.keys import MarketKeys
from ridepulse.logs import get_logger
from ridepulse.markets import load_markets
from ridepulse.redis_client import connect
from ridepulse.settings import Settings


async def trim_once(redis: aioredis.Redis, settings: Settings) -> int:
    removed = 0
    for market in load_markets(settings.markets_file).markets:
        keys = MarketKeys(market.id, settings.key_prefix)
        for stream in (keys.rides,):
            if await redis.exists(stream):
                keep_after_ms = now_ms() - int(settings.ride_stream_retention_s * 1000)
                removed += await trim_acknowledged(redis, stream, keep_after_ms=keep_after_ms)
    return removed


async def trim_telemetry_once(redis: aioredis.Redis, settings: Settings) -> int:
    oldest_kept = f"{now_ms() - int(settings.telemetry_retention_s * 1000)}-0"
    removed = 0
    for market in load_markets(settings.markets_file).markets:
        trimmed: int = await redis.xtrim(
            MarketKeys(market.id, settings.key_prefix).telemetry,
            minid=oldest_kept,
            approximate=True,
        )
        removed += trimmed
    return removed


async def serve(settings: Settings) -> None:
    redis = connect(settings)
    log = get_logger()

    async def trim_loop(stop: asyncio.Event) -> None:
        while not stop.is_set():
            removed = await trim_once(redis, settings)
            if removed:
                log.info("janitor.trimmed", entries=removed)
            try:
                await asyncio.wait_for(stop.wait(), settings.ride_stream_trim_interval_s)
            except TimeoutError:
                pass

    async def telemetry_loop(stop: asyncio.Event) -> None:
        while not stop.is_set():
            removed = await trim_telemetry_once(redis, settings)
            if removed:
                log.debug("janitor.telemetry_trimmed", entries=removed)
            try:  # a tenth of the retention: the stream overshoots it by at most 10%
                await asyncio.wait_for(stop.wait(), settings.telemetry_retention_s / 10)
            except TimeoutError:
                pass

    try:
        await run_service(
            redis,
            settings,
            service="janitor",
            consumer=consumer_name(settings, "janitor"),
            runtimes=[],
            background=[trim_loop, telemetry_loop],
        )
    finally:
        await redis.aclose()


def main(settings: Settings) -> None:
    start_service("janitor", settings, serve)
