"""Micro-measurement of the telemetry consumers' hot path: pings/s a consumer drains, old
settings (no conflation, eta learning from every ping) against new, alternated in one run on
one embedded server, so a machine whose speed drifts moves both sides alike.

    .venv/bin/python -m loadtests.bench.micro_consumer [--pairs 3]

Two situations: `at pace` (reads of `telemetry_read_count` entries, as when nothing is
behind) and `behind` (the same entries as a backlog 12 s old: catch-up reads). The backlog is
5,000 drivers pinging every 2 s, 1,000 pings an entry, 30 entries."""

from __future__ import annotations

import argparse
import functools
import random
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from eta import service as eta_service
from loadtests.bench.measure import in_new_loop, old_against_new, say
from loadtests.bench.report import fmt_paired
from loadtests.bench.servers import scratch_redis
from matching import geo_service
from ridepulse.bus.consumer import ConsumerRuntime
from ridepulse.contracts.registry import make
from ridepulse.keys import MarketKeys
from ridepulse.settings import Settings

DRIVERS, PER_ENTRY, ENTRIES, PING_EVERY_MS = 5_000, 1_000, 30, 2_000
CENTRE = (37.7749, -122.4194)


async def write_backlog(redis: aioredis.Redis, stream: str) -> int:
    rng = random.Random(3)
    start_ms = int(time.time() * 1000) - ENTRIES * PER_ENTRY * PING_EVERY_MS // DRIVERS
    pipe = redis.pipeline(transaction=False)
    for index in range(ENTRIES):
        first = index * PER_ENTRY
        ts = start_ms + first * PING_EVERY_MS // DRIVERS
        pings: list[dict[str, Any]] = [
            {
                "driver_id": f"d{(first + i) % DRIVERS}",
                "lat": CENTRE[0] + rng.uniform(-0.05, 0.05),
                "lon": CENTRE[1] + rng.uniform(-0.05, 0.05),
                "ts": ts,
                "speed_mps": rng.uniform(2, 15),
                "heading": 90.0,
            }
            for i in range(PER_ENTRY)
        ]
        fields: Any = make("driver.location", "fleet", {"pings": pings}, "micro").to_fields()
        pipe.xadd(stream, fields, id=f"{ts}-{index}")
    await pipe.execute()
    return ENTRIES * PER_ENTRY


async def drain(
    base: Settings, service: str, new: bool, behind: bool
) -> tuple[float, dict[str, float]]:
    """Pings/s one burst consumer drains from a fresh backlog."""
    update: dict[str, Any] = {
        "key_prefix": f"m{uuid.uuid4().hex[:8]}",
        "telemetry_conflate": new,
        "eta_learn_interval_ms": 6_000 if new else 0,
        "telemetry_catch_up_lag_s": base.telemetry_catch_up_lag_s if behind else 1e9,
    }
    settings = base.model_copy(update=update)
    runtime: ConsumerRuntime[Any]
    if service == "matching-geo":
        deps, runtime = geo_service.build(settings, burst=True)
        redis = deps.redis
        keys = MarketKeys(runtime.sources[0].market, settings.key_prefix)
        await redis.hset(
            keys.driver_statuses, mapping={f"d{d}": "available" for d in range(DRIVERS)}
        )
    else:
        eta_deps, runtimes = eta_service.build(settings, burst=True)
        redis, runtime = eta_deps.redis, runtimes[1]  # the telemetry group of the first market
    pings = await write_backlog(redis, runtime.sources[0].key)
    started = time.perf_counter()
    await runtime.run()
    elapsed = time.perf_counter() - started
    await redis.aclose()
    return pings / elapsed, {}


def measure(settings: Settings, pairs: int) -> None:
    for service in ("matching-geo", "eta"):
        for behind in (False, True):
            situation = f"{service:<13} {'behind' if behind else 'at pace':<8}"
            old, new = old_against_new(
                situation,
                "pings/s",
                in_new_loop(functools.partial(drain, settings, service, False, behind)),
                in_new_loop(functools.partial(drain, settings, service, True, behind)),
                pairs,
            )
            say(
                f"{situation} old {old.median:>9,.0f} pings/s  new {new.median:>9,.0f} pings/s"
                f"  new/old {fmt_paired(new.reps, old.reps)}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    with scratch_redis() as server:
        settings = Settings(redis_url=server.url, data_dir=server.data_dir, auth_enabled=False)
        measure(settings, args.pairs)


if __name__ == "__main__":
    main()
