"""Micro-measurement of matching-geo's index update in Valkey: Valkey CPU per 1,000 pings with
every ping written (old) against pings that change nothing skipped (new, matching/geo_filter.py),
alternated pair by pair (measure.interleave) on one embedded server, so a machine whose speed
drifts moves both sides alike; the median of per-pair ratios with its range.

    .venv/bin/python -m loadtests.bench.micro_geo [--pairs 5]

Two fleets, each 10,000 drivers, a third of them available, 60 s of pings applied as
matching-geo applies them (newest per driver of each 1,000-ping entry, on a simulated clock):
- `city`: a phone's pace, a ping every 2 s; 40% parked (GPS jitter of up to 5 m), 60% driving
  at 8.5 m/s (17 m a ping);
- `sweep`: the capacity sweep's fleet (loadtests/bench/fleet.py), a ping every 4 s, every driver
  moving ~28 m a ping: nothing to skip, the filter's cost with no gain."""

from __future__ import annotations

import argparse
import functools
import math
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis.asyncio as aioredis

from loadtests.bench.fleet import pings as fleet_pings
from loadtests.bench.measure import in_new_loop, old_against_new, say
from loadtests.bench.report import fmt_paired
from loadtests.bench.servers import scratch_redis
from matching.geo_filter import PositionFilter
from matching.geo_index import update_positions
from ridepulse.contracts.events import Ping
from ridepulse.keys import MarketKeys

DRIVERS, PER_ENTRY, SECONDS = 10_000, 1_000, 60
CENTRE = (37.7749, -122.4194)
M_PER_DEG = 111_320.0


def city(period_ms: int = 2_000) -> Iterator[list[Ping]]:
    rng = random.Random(1)
    home = [
        (CENTRE[0] + rng.uniform(-0.04, 0.04), CENTRE[1] + rng.uniform(-0.04, 0.04))
        for _ in range(DRIVERS)
    ]
    bearing = [rng.uniform(0, 2 * math.pi) for _ in range(DRIVERS)]
    step_m = 8.5 * period_ms / 1000
    for tick in range(SECONDS * 1000 // period_ms):
        pings: list[Ping] = []
        for d in range(DRIVERS):
            lat, lon = home[d]
            if d % 5 < 2:  # parked: jitter only
                north, east = rng.uniform(-5, 5), rng.uniform(-5, 5)
            else:
                north = tick * step_m * math.cos(bearing[d])
                east = tick * step_m * math.sin(bearing[d])
            pings.append(
                Ping(
                    driver_id=f"d{d}",
                    lat=lat + north / M_PER_DEG,
                    lon=lon + east / (M_PER_DEG * math.cos(math.radians(lat))),
                    ts=tick * period_ms + d * period_ms // DRIVERS + 1,
                    heading=0,
                )
            )
        yield from (pings[i : i + PER_ENTRY] for i in range(0, DRIVERS, PER_ENTRY))


def sweep_fleet(period_ms: int = 4_000) -> Iterator[list[Ping]]:
    for tick in range(SECONDS * 1000 // period_ms):
        for first in range(0, DRIVERS, PER_ENTRY):
            ts = tick * period_ms + first * period_ms // DRIVERS + 1
            rows = fleet_pings(first, PER_ENTRY, ts=ts, step=tick + 1)
            yield [Ping(**row) for row in rows]


async def valkey_cpu_s(redis: aioredis.Redis) -> float:
    cpu: Any = await redis.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def apply(url: str, fleet: str, new: bool) -> tuple[float, dict[str, float]]:
    """Valkey CPU µs per 1,000 pings, beside this process's CPU µs per 1,000 pings and the share
    of the pings written."""
    redis = aioredis.Redis.from_url(url)
    keys = MarketKeys("sf", f"g{uuid.uuid4().hex[:8]}")
    await redis.hset(
        keys.driver_statuses,
        mapping={f"d{d}": "available" if d % 3 == 0 else "on_trip" for d in range(DRIVERS)},
    )
    entries = list(city() if fleet == "city" else sweep_fleet())
    clock = [0]
    only = PositionFilter(20, 10_000, clock_ms=lambda: clock[0]) if new else None
    pings = sum(len(e) for e in entries)
    valkey_before, own_before = await valkey_cpu_s(redis), time.process_time()
    for entry in entries:
        clock[0] = entry[-1].ts  # the filter's clock follows the fleet's
        await update_positions(redis, keys, entry, only)
    valkey, own = await valkey_cpu_s(redis) - valkey_before, time.process_time() - own_before
    await redis.delete(keys.drivers_seen, keys.positions, keys.driver_statuses, keys.drivers_geo)
    await redis.aclose()
    written = pings - (only.skipped if only else 0)
    return valkey * 1e9 / pings, {"own_us": own * 1e9 / pings, "written": written / pings}


def measure(url: str, pairs: int) -> None:
    for fleet in ("city", "sweep"):
        old, new = old_against_new(
            fleet,
            "µs",
            in_new_loop(functools.partial(apply, url, fleet, new=False)),
            in_new_loop(functools.partial(apply, url, fleet, new=True)),
            pairs,
        )
        own = [[d["own_us"] for d in m.details] for m in (old, new)]
        say(
            f"{fleet:<6} Valkey CPU per 1,000 pings: old {old.median:,.0f} µs, new"
            f" {new.median:,.0f} µs, old/new {fmt_paired(old.reps, new.reps)}; new writes"
            f" {new.details[-1]['written']:.0%} of pings; matching-geo's own CPU old/new"
            f" {fmt_paired(*own)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    with scratch_redis() as server:
        measure(server.url, args.pairs)


if __name__ == "__main__":
    main()
