"""`ridepulse run matching`: wiring of the matching handlers around the shared bus.

The `matching` group on the ride stream (latency-critical), the sweeper (offer timeouts,
deadlines, retries, stale drivers) and the speed cache. The geo index it searches is kept by
`matching-geo` (geo_service.py) in its own process, so offers never queue behind telemetry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from matching.batcher import run_batcher
from matching.handlers import HANDLERS, MatchingDeps
from matching.sweeper import run_sweeper
from ridepulse.bus.consumer import ConsumerRuntime, StreamSource
from ridepulse.bus.worker import consumer_name, run_consumer_service, start_service
from ridepulse.keys import MarketKeys
from ridepulse.markets import load_markets
from ridepulse.redis_client import connect
from ridepulse.rides.store import RideStore
from ridepulse.settings import Settings
from ridepulse.travel import SpeedCache

SERVICE = "matching"


def build(
    settings: Settings, *, burst: bool = False
) -> tuple[MatchingDeps, list[ConsumerRuntime[MatchingDeps]]]:
    redis = connect(settings)
    markets = load_markets(settings.markets_file, settings.markets).markets
    consumer = consumer_name(settings, SERVICE)
    keys = {m.id: MarketKeys(m.id, settings.key_prefix) for m in markets}
    deps = MatchingDeps(
        redis=redis,
        settings=settings,
        stores={m: RideStore(redis, k, f"{SERVICE}/{consumer}") for m, k in keys.items()},
        speeds={m: SpeedCache(redis, k.speeds, settings.h3_resolution) for m, k in keys.items()},
    )
    rides = ConsumerRuntime(
        redis,
        settings=settings,
        service=SERVICE,
        group="matching",
        consumer=consumer,
        sources=[StreamSource(k.rides, m) for m, k in keys.items()],
        handlers=HANDLERS,
        deps=deps,
        burst=burst,
        concurrency=settings.matching_concurrency,
        batches_in_flight=settings.matching_batches_in_flight,
        linger_ms=settings.matching_read_linger_ms,
    )
    return deps, [rides]


async def serve(settings: Settings) -> None:
    deps, runtimes = build(settings)

    async def speeds(stop: asyncio.Event) -> None:
        await asyncio.gather(*(cache.run(stop) for cache in deps.speeds.values()))

    background: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = [
        partial(run_sweeper, deps),
        speeds,
    ]
    if settings.match_batch_window_s > 0:
        background.append(partial(run_batcher, deps))
    await run_consumer_service(
        deps.redis,
        settings,
        service=SERVICE,
        runtimes=runtimes,
        background=background,
    )


def main(settings: Settings) -> None:
    start_service(SERVICE, settings, serve)
