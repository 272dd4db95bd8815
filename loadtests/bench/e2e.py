"""Figures 4 and 5: the whole platform (`ridepulse up --no-sim`) under sustained, paced load —
batched telemetry from a fleet plus ride requests from riders — watched for consumer lag,
request→offered latency, RSS per service and the telemetry stream's memory."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from loadtests.bench import loadgen
from loadtests.bench.fleet import driver_id, random_point, telemetry_request
from loadtests.bench.measure import say
from loadtests.bench.noise import machine_busy_s
from loadtests.bench.ride_latency import request_to_offer_ms, ride_events
from loadtests.bench.samplers import (
    GroupLag,
    command_stats,
    cpu_seconds,
    group_lags,
    sample_lag,
    sample_rss,
    sample_stream_memory,
)
from loadtests.bench.stats import percentile
from loadtests.bench.tokens import mint_tokens
from loadtests.platform import Platform
from ridepulse.contracts.envelope import now_ms
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.redis_client import connect
from ridepulse.settings import Settings

CENTRE = (37.76, -122.435)  # the middle of the default market's box: dropoffs lean toward it


@dataclass(frozen=True)
class E2EConfig:
    pings_per_s: int = 50_000
    rides_per_s: float = 100.0
    seconds: float = 45.0
    fleet_size: int = 200_000  # every driver pings every fleet_size / pings_per_s seconds (4 s)
    available_drivers: int = 6_000  # > rides_per_s x seconds: every open ride can hold one
    batch_pings: int = 1000


AVAILABLE = b'{"status":"available"}'
# The pings' ts while a request waits to be sent: 13 digits, like a ms timestamp of today, so
# stamping the send time in keeps the Content-Length.
TS_MARK = 1_999_999_999_999


def _telemetry_requests(cfg: E2EConfig, token: str, port: int) -> Callable[[int], bytes]:
    """Every telemetry request of the level, built before the clock starts; sending stamps the
    pings' ts. Building a 1000-ping body costs this process ~6 ms of CPU: at 60 batches/s, built
    while sending, that was a third of a core taken from the platform under measurement."""
    blocks = cfg.fleet_size // cfg.batch_pings
    mark = str(TS_MARK).encode()
    built = []
    for index in range(math.ceil(cfg.pings_per_s / cfg.batch_pings * cfg.seconds)):
        block, step = index % blocks, index // blocks
        first, size = block * cfg.batch_pings, cfg.batch_pings
        raw = telemetry_request(first, size, token=token, port=port, ts=TS_MARK, step=step + 1)
        if raw.count(mark) != cfg.batch_pings:  # the mark must stand for the ts alone
            raise ValueError("the ts mark occurs in the request outside the pings' ts")
        built.append(raw)
    return lambda index: built[index].replace(mark, str(now_ms()).encode())


def _ride_request(rider_tokens: list[str], port: int) -> Callable[[int], bytes]:
    def make(index: int) -> bytes:
        rng = random.Random(index)
        lat, lon = random_point(rng)
        toward_centre = (0.012 if lat < CENTRE[0] else -0.012, 0.012 if lon < CENTRE[1] else -0.012)
        dropoff = {"lat": round(lat + toward_centre[0], 6), "lon": round(lon + toward_centre[1], 6)}
        body = orjson.dumps({"pickup": {"lat": lat, "lon": lon}, "dropoff": dropoff})
        token = rider_tokens[index % len(rider_tokens)]
        return loadgen.build_request("POST", "/v1/rides", token=token, body=body, port=port)

    return make


async def prepare_fleet(
    port: int, telemetry: list[bytes], ops: str, available: Iterable[str], connections: int
) -> dict[str, dict[int, int]]:
    """Every driver pings once (`telemetry`, one request a block), then those in `available` go
    available (`ops`' token, over `connections`); status → count of each."""
    pinged = await loadgen.send_all(port, telemetry, connections=4)
    puts = [
        loadgen.build_request(
            "PUT", f"/v1/drivers/{d}/status", token=ops, body=AVAILABLE, port=port
        )
        for d in available
    ]
    return {
        "fleet_pings": pinged,
        "status_puts": await loadgen.send_all(port, puts, connections=connections),
    }


async def _wait_drained(redis: Any, stream: str, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        lags = await group_lags(redis, stream)
        if lags and all(entries == 0 and pending == 0 for entries, _, pending in lags.values()):
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - started


async def conflated_total(redis: Any, keys: MarketKeys) -> int | None:
    """Pings the consumers skipped as superseded (`conflated` in their heartbeats), summed over
    services; None when no heartbeat carries the field (a release without conflation)."""
    members: Any = await redis.smembers(GlobalKeys(keys.prefix).heartbeats)
    beats = [orjson.loads(raw) for key in members if (raw := await redis.get(key))]
    found = [int(beat["conflated"]) for beat in beats if "conflated" in beat]
    return sum(found) if found else None


def _paced_summary(
    result: loadgen.PacedResult, seconds: float, per_request: int = 1
) -> dict[str, Any]:
    lat = result.latencies_ms or [0.0]
    return {
        "scheduled": result.scheduled,
        "completed": result.completed,
        "statuses": result.statuses,
        "failures": result.failures,
        "accepted_per_s": result.accepted * per_request / seconds,
        "latency_ms_p50": percentile(lat, 50),
        "latency_ms_p99": percentile(lat, 99),
    }


@contextlib.asynccontextmanager
async def running(*platforms: Platform) -> AsyncIterator[None]:
    """The platforms, waited for together and stopped on the way out whatever happened."""
    try:
        await asyncio.gather(*(asyncio.to_thread(p.wait_up, 300.0) for p in platforms))
        yield
    finally:
        stops = (asyncio.to_thread(p.stop) for p in platforms)
        await asyncio.gather(*stops, return_exceptions=True)


async def run_e2e(
    cfg: E2EConfig, work_dir: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """One level on a fresh platform; `env` selects the code it runs (PYTHONPATH of a release)."""
    stack = Platform(work_dir / "stack", "--no-sim", env=env)
    async with running(stack):
        return await _measure(cfg, stack, env)


async def _measure(cfg: E2EConfig, stack: Platform, env: dict[str, str] | None) -> dict[str, Any]:
    redis = connect(Settings(), stack.redis_url())
    keys = MarketKeys("sf")
    port = stack.api_port
    riders = [("rider", f"bench-rider-{i}") for i in range(int(cfg.rides_per_s * cfg.seconds) + 1)]
    wanted = [("fleet", "bench-fleet"), ("ops", "bench"), *riders]
    fleet, ops, *rider_tokens = await asyncio.to_thread(mint_tokens, stack.secret, wanted, env)
    try:
        say(
            f"  stack up; fleet of {cfg.fleet_size} drivers pings once, "
            f"{cfg.available_drivers} go available"
        )
        ts, size = now_ms(), cfg.batch_pings
        first_pings = [
            telemetry_request(first, size, token=fleet, port=port, ts=ts)
            for first in range(0, cfg.fleet_size, size)
        ]
        available = map(driver_id, range(cfg.available_drivers))
        prepared = await prepare_fleet(port, first_pings, ops, available, connections=32)
        drained_s = await _wait_drained(redis, keys.telemetry, 60)
        say(
            f"  prepared: {prepared}, consumers drained in {drained_s:.1f}s; "
            f"{cfg.pings_per_s} pings/s + {cfg.rides_per_s:g} rides/s for {cfg.seconds:g}s"
        )
        batches = _telemetry_requests(cfg, fleet, port)
        ride_requests = _ride_request(rider_tokens, port)
        stop = asyncio.Event()
        lags: dict[str, GroupLag] = {}
        peaks: dict[str, int] = {}
        memory: list[tuple[float, int, int]] = []
        streams = {"telemetry": keys.telemetry, "rides": keys.rides}
        samplers = asyncio.gather(
            sample_lag(redis, streams, stop, lags),
            sample_rss(stack.processes, stop, peaks),
            sample_stream_memory(redis, keys.telemetry, stop, memory),
        )
        await redis.config_resetstat()
        cpu_before, wall_before = cpu_seconds(stack.processes_by_service()), time.monotonic()
        busy_before, harness_before = machine_busy_s(), time.process_time()
        since = now_ms()
        paced = functools.partial(loadgen.paced, port, seconds=cfg.seconds)
        telemetry, rides = await asyncio.gather(
            # 64 gateways' connections: with 16, requests queued in this process once ingest
            # took over 100 ms to answer, and the door's delay went unmeasured as lag
            paced(batches, rate_per_s=cfg.pings_per_s / cfg.batch_pings, max_connections=64),
            paced(ride_requests, rate_per_s=cfg.rides_per_s, max_connections=256),
        )
        stop.set()
        cpu_after, wall = cpu_seconds(stack.processes_by_service()), time.monotonic() - wall_before
        busy = {
            "machine": round((machine_busy_s() - busy_before) / wall, 2),
            "load generator (this process)": round(
                (time.process_time() - harness_before) / wall, 2
            ),
        }
        commands = await command_stats(redis)
        await samplers
        await asyncio.sleep(2.0)  # offers of the last requests
        gaps, unoffered = request_to_offer_ms(await ride_events(redis, keys.rides, since))
        final_bytes: Any = await redis.memory_usage(keys.telemetry, samples=0)
        final_len: Any = await redis.xlen(keys.telemetry)
        conflated = await conflated_total(redis, keys)
    finally:
        await redis.aclose()
    return {
        "config": asdict(cfg),
        "telemetry": _paced_summary(telemetry, cfg.seconds, cfg.batch_pings),
        "conflated": conflated,
        "rides": _paced_summary(rides, cfg.seconds),
        "offer_ms": {
            "count": len(gaps),
            "unoffered": unoffered,
            "p50": percentile(gaps, 50) if gaps else None,
            "p99": percentile(gaps, 99) if gaps else None,
            "max": max(gaps) if gaps else None,
        },
        "lag": {
            k: {**asdict(v), "max_seconds": round(v.max_seconds, 3)}
            for k, v in sorted(lags.items())
        },
        "cpu_cores": {
            k: round((cpu_after[k] - v) / wall, 2)
            for k, v in sorted(cpu_before.items())
            if k in cpu_after
        },
        "cpu_totals": busy,
        "measured_s": round(wall, 1),
        "valkey_commands": commands,
        "rss_peak_mb": {k: round(v / 2**20, 1) for k, v in sorted(peaks.items())},
        "telemetry_stream": {
            "series": memory,
            "final_bytes": int(final_bytes or 0),
            "final_entries": int(final_len),
        },
    }
