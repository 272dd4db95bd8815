"""Rides first in ingest: ride requests do not queue behind a flood of telemetry batches.

Real `ridepulse up` (uvicorn ingest, embedded Valkey). A few threads post full-size batches
(RIDEPULSE_MAX_BATCH_PINGS valid pings each) back to back, a bounded loop; meanwhile riders
request rides one at a time and each request is timed. Shedding is turned off so every batch
really is validated and appended (with shedding on, the flood soon gets cheap 429s)."""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.conftest import start_city
from tests.support.api import DOWNTOWN, City, offset

pytestmark = pytest.mark.e2e

FLOODERS = 4
BATCH_PINGS = 5_000
MAX_BATCHES_PER_FLOODER = 400  # bounded: the flood also stops after FLOOD_MAX_S
FLOOD_MAX_S = 60.0
RIDES = 20
# Ride request p90 under the flood. Before issue 10 (orjson + check_ping per ping, one shared
# pool) it was 0.4-0.6 s on the project's 2-core machine; after, under 0.2 s.
RIDE_P90_BOUND_S = 0.25


@pytest.fixture
def unshed_city(tmp_path: Path) -> Iterator[City]:
    platform, client = start_city(tmp_path / "city", RIDEPULSE_TELEMETRY_SHED_LAG_S="100000")
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


def flood(city: City, seed: int, stop: threading.Event, sent: list[int]) -> None:
    body = batch_body(seed)
    headers = {**city.token("fleet", f"flood-{seed}"), "Content-Type": "application/json"}
    deadline = time.monotonic() + FLOOD_MAX_S
    with httpx.Client(base_url=city.platform.api, timeout=30) as http:
        for _ in range(MAX_BATCHES_PER_FLOODER):
            if stop.is_set() or time.monotonic() > deadline:
                return
            response = http.post("/v1/telemetry", content=body, headers=headers)
            assert response.status_code == 202, response.text
            assert response.json()["accepted"] == BATCH_PINGS
            sent[seed] += 1


def test_ride_requests_stay_fast_while_telemetry_batches_flood_ingest(unshed_city: City) -> None:
    city = unshed_city
    stop = threading.Event()
    sent = [0] * FLOODERS
    threads = [
        threading.Thread(target=flood, args=(city, seed, stop, sent), daemon=True)
        for seed in range(FLOODERS)
    ]
    for thread in threads:
        thread.start()
    latencies: list[float] = []
    try:
        deadline = time.monotonic() + 30
        while sum(sent) < FLOODERS and time.monotonic() < deadline:  # the flood is on
            time.sleep(0.05)
        assert sum(sent) >= FLOODERS, "the telemetry flood never got going"
        for n in range(RIDES):
            start = time.perf_counter()
            response = city.request_ride(
                f"rider-flood-{n}", offset(DOWNTOWN, n, 0), offset(DOWNTOWN, n, 1500)
            )
            latencies.append(time.perf_counter() - start)
            assert response.status_code == 202, response.text
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    latencies.sort()
    p90 = latencies[int(0.9 * len(latencies)) - 1]
    summary = (
        f"ride request latency under {sum(sent)} batches of {BATCH_PINGS}: "
        f"median {statistics.median(latencies) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
    print(summary)  # the figure the docs quote (pytest -s)
    assert p90 < RIDE_P90_BOUND_S, summary
