"""`python -m loadtests.bench.consumers --url U --fill-url A --prefix P --pings N`: matching's
geo-index consumer (`ridepulse run matching-geo`), timed in its own process. Pre-fills the
telemetry stream with N pings of N distinct available drivers (entries of `--entry-pings`, as
ingest writes them) through `--fill-url`, since matching-geo's own login may not write them
(docs/security.md); then times ConsumerRuntime in burst mode with matching's GEO_HANDLERS until
the stream is drained; prints one JSON line."""

from __future__ import annotations

import tempfile
import time
from typing import Any

import redis.asyncio as aioredis

from loadtests.bench import fleet
from loadtests.bench.servers import child_main
from matching.geo_service import build
from ridepulse.contracts.envelope import now_ms
from ridepulse.gc_tuning import tune_gc
from ridepulse.keys import MarketKeys
from ridepulse.logs import configure_logging
from ridepulse.settings import Settings


async def prefill(redis: Any, keys: MarketKeys, count: int, entry_pings: int) -> None:
    """The backlog, with every driver available: the worst case, every ping goes into the
    geo index (busy drivers' pings skip the GEOADD), as the per-message peer does for all."""
    all_pings = fleet.pings(0, count, ts=now_ms())
    for start in range(0, count, 10_000):
        chunk = all_pings[start : start + 10_000]
        await redis.hset(keys.driver_statuses, mapping={p["driver_id"]: "available" for p in chunk})
    pipe = redis.pipeline(transaction=False)
    for start in range(0, count, entry_pings):
        pipe.xadd(keys.telemetry, fleet.entry_fields(all_pings[start : start + entry_pings]))
        if len(pipe) >= 50:
            await pipe.execute()
    await pipe.execute()


async def run(
    url: str, fill_url: str, prefix: str, pings: int = 500_000, entry_pings: int = 1000
) -> dict[str, float]:
    settings = Settings(redis_url=url, key_prefix=prefix, data_dir=tempfile.gettempdir())
    keys = MarketKeys("sf", prefix)
    deps, geo = build(settings, burst=True)
    try:
        async with aioredis.from_url(fill_url) as admin:
            await prefill(admin, keys, pings, entry_pings)
            started = time.perf_counter()
            await geo.run()
            elapsed = time.perf_counter() - started
            indexed = await admin.zcard(keys.drivers_geo)
    finally:
        await deps.redis.aclose()
    return {
        "pings": float(pings),
        "seconds": elapsed,
        "indexed": float(indexed),
        "entries": float(geo.stats.processed),
    }


if __name__ == "__main__":
    configure_logging("bench", "warning")
    tune_gc()  # as `ridepulse run matching` starts (ridepulse.bus.worker.start_service)
    child_main(run)
