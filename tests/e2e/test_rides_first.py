"""Rides first in ingest: ride requests do not queue behind a flood of telemetry batches.

Real `ridepulse up` (uvicorn ingest, embedded Valkey). A few threads post full-size batches
(RIDEPULSE_MAX_BATCH_PINGS valid pings each) back to back, a bounded loop; meanwhile riders
request rides one at a time and each request is timed. Shedding is turned off so every batch
really is validated and appended (with shedding on, the flood soon gets cheap 429s)."""

from __future__ import annotations

import multiprocessing
import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.conftest import start_city
from tests.support.api import DOWNTOWN, City, offset
from tests.support.processes import stop_children

pytestmark = pytest.mark.e2e

FLOODERS = 4
BATCH_PINGS = 5_000
MAX_BATCHES_PER_FLOODER = 400  # bounded: the flood also stops after FLOOD_MAX_S
FLOOD_MAX_S = 60.0
RIDES = 20
TELEMETRY_CONSUMERS = ("matching-geo", "eta", "dashboard")
# Ride request p90 under the flood, on the project's shared 2-core machine (quiet: ~20-35 ms).
# v0.1.0's ingest (orjson + check_ping per ping, every batch at once, one pool): 544 and
# 572 ms in two runs. This ingest: 140 and 241 ms. The bound sits between, with room for noise.
RIDE_P90_BOUND_S = 0.35


@pytest.fixture
def unshed_city(tmp_path: Path) -> Iterator[City]:
    # each flooder re-sends its 5,000 drivers back to back, far past a driver's ping rate: under
    # the default limit most of the flood would be rejected (cheap, flooding nothing)
    platform, client = start_city(
        tmp_path / "city",
        RIDEPULSE_TELEMETRY_SHED_LAG_S="100000",
        RIDEPULSE_PING_RATE_PER_S="1000",
    )
    yield client
    client.close()
    denied = platform.acl_denials()
    platform.stop()
    assert not denied, f"services were refused by their Redis users: {denied}"


def batch_body(seed: int) -> bytes:
    rng = random.Random(seed)
    pings = [
        {
            "driver_id": f"flood-{seed}-{i}",
            "lat": round(37.72 + rng.random() * 0.08, 6),
            "lon": round(-122.50 + rng.random() * 0.12, 6),
            "speed_mps": round(rng.random() * 15, 2),
        }
        for i in range(BATCH_PINGS)
    ]
    return orjson.dumps({"pings": pings})


def flood(api: str, headers: dict[str, str], seed: int, stop: Any, sent: Any) -> None:
    """One flooding client, in a process of its own: a thread would take the GIL from the
    test's ride timings and inflate them."""
    body = batch_body(seed)
    deadline = time.monotonic() + FLOOD_MAX_S
    with httpx.Client(base_url=api, timeout=30) as http:
        for _ in range(MAX_BATCHES_PER_FLOODER):
            if stop.is_set() or time.monotonic() > deadline:
                return
            response = http.post("/v1/telemetry", content=body, headers=headers)
            if response.status_code != 202 or response.json()["accepted"] != BATCH_PINGS:
                return  # the parent sees the count stop; the flood must not raise in a child
            with sent.get_lock():
                sent.value += 1


def time_rides(city: City, tag: str, n: int) -> list[float]:
    latencies = []
    for i in range(n):
        start = time.perf_counter()
        response = city.request_ride(
            f"rider-{tag}-{i}", offset(DOWNTOWN, i, 0), offset(DOWNTOWN, i, 1500)
        )
        latencies.append(time.perf_counter() - start)
        assert response.status_code == 202, response.text
    return sorted(latencies)


def p90(latencies: list[float]) -> float:
    return latencies[int(0.9 * len(latencies)) - 1]


def test_ride_requests_stay_fast_while_telemetry_batches_flood_ingest(unshed_city: City) -> None:
    city = unshed_city
    quiet = time_rides(city, "quiet", RIDES)
    # the flood measures ingest (and the server), not the consumers' share of two cores
    with city.platform.paused(*TELEMETRY_CONSUMERS):
        latencies, batches = flooded_rides(city)
    summary = (
        f"ride request latency under {batches} batches of {BATCH_PINGS}: "
        f"median {statistics.median(latencies) * 1000:.0f} ms, p90 {p90(latencies) * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms; quiet: median {statistics.median(quiet) * 1000:.0f} "
        f"ms, p90 {p90(quiet) * 1000:.0f} ms"
    )
    print(summary)  # the figure the docs quote (pytest -s)
    assert p90(latencies) < RIDE_P90_BOUND_S, summary


def flooded_rides(city: City) -> tuple[list[float], int]:
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    sent = spawn.Value("i", 0)
    headers = {**city.token("fleet", "flood"), "Content-Type": "application/json"}
    flooders = [
        spawn.Process(target=flood, args=(city.platform.api, headers, seed, stop, sent))
        for seed in range(FLOODERS)
    ]
    for process in flooders:
        process.start()
    try:
        deadline = time.monotonic() + 60
        while sent.value < 2 * FLOODERS and time.monotonic() < deadline:  # the flood is on
            time.sleep(0.05)
        assert sent.value >= 2 * FLOODERS, "the telemetry flood never got going"
        latencies = time_rides(city, "flood", RIDES)
        batches = sent.value
    finally:
        stop_children(stop, flooders)
    assert batches > 2 * FLOODERS, "the flood stopped (a batch was not accepted whole)"
    return latencies, batches
