"""`ridepulse run matching-geo`: matching's geo index kept fresh from telemetry, in its own
process (consumer group `matching.geo`).

Why not inside `matching`: a telemetry batch is CPU work without an await, and at fleet scale
there is always one. In the same event loop an offer waits behind it; in its own process the
mostly idle ride matcher wakes on a ride event and the kernel's scheduler runs it ahead of the
busy telemetry consumer. Measured at 50,000 pings/s + 100 rides/s: see docs/benchmarks.md."""

from __future__ import annotations

from matching.geo_filter import PositionFilter
from matching.handlers import GEO_HANDLERS, MatchingDeps
from ridepulse.bus.conflation import Conflation
from ridepulse.bus.consumer import ConsumerRuntime, StreamSource
from ridepulse.bus.worker import consumer_name, run_consumer_service, start_service
from ridepulse.keys import MarketKeys
from ridepulse.markets import load_markets
from ridepulse.redis_client import connect
from ridepulse.settings import Settings
from ridepulse.telemetry_groups import MATCHING_GEO

SERVICE = "matching-geo"
GROUP = MATCHING_GEO


def build(
    settings: Settings, *, burst: bool = False
) -> tuple[MatchingDeps, ConsumerRuntime[MatchingDeps]]:
    redis = connect(settings)
    markets = load_markets(settings.markets_file, settings.markets).markets
    keys = {m.id: MarketKeys(m.id, settings.key_prefix) for m in markets}
    deps = MatchingDeps(
        redis=redis, settings=settings, stores={}, speeds={}, geo_filter=geo_filter(settings)
    )
    runtime = ConsumerRuntime(
        redis,
        group=GROUP,
        sources=[StreamSource(k.telemetry, m) for m, k in keys.items()],
        handlers=GEO_HANDLERS,
        read_count=settings.telemetry_read_count,
        settings=settings,
        service=SERVICE,
        consumer=consumer_name(settings, SERVICE),
        deps=deps,
        burst=burst,
        # Safe for this batch handler: the script ignores a ping not newer than the stored one,
        # so two batches applied in either order leave the same index.
        batches_in_flight=settings.geo_batches_in_flight,
        # the index keeps one position per driver: only the newest ping of a read matters
        conflation=Conflation(window_ms=0) if settings.telemetry_conflate else None,
    )
    return deps, runtime


def geo_filter(settings: Settings) -> PositionFilter | None:
    """Skip pings that change nothing matching reads (matching/geo_filter.py); None writes
    every ping. Freshness is kept to a third of the stale limit, so a driver is written at
    least three times before it could go stale."""
    if settings.geo_min_move_m <= 0:
        return None
    return PositionFilter(
        min_move_m=settings.geo_min_move_m, refresh_ms=int(settings.driver_stale_s * 1000 / 3)
    )


async def serve(settings: Settings) -> None:
    deps, runtime = build(settings)
    await run_consumer_service(deps.redis, settings, service=SERVICE, runtimes=[runtime])


def main(settings: Settings) -> None:
    start_service(SERVICE, settings, serve)
