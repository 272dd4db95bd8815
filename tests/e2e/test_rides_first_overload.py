"""Rides first under overload, end to end: while a telemetry flood keeps the platform past what
it sustains, every ride request is offered a driver (or, with nobody near, told so by expiring)
within its deadline, and matching's geo index keeps catching up: its lag is a sawtooth (it rises
while the replicas' catch-up reads are handled, then falls back), never older than a ride's
deadline, and back under the shedding threshold within every deadline's span.

How high the teeth go is the machine's speed, not a behaviour: a tooth lasts one catch-up read
of the niced consumer, 0.5-1.8 s on a quiet machine of 2 cores and 3-4.5 s with two busy
processes beside it (`--cpu-hogs 2`), so a 2 s bound failed CI on slow stretches of its runner.
The brief puts speed figures in the benchmark; this test prints its lag figures (pytest -s) and
docs/architecture.md records them.

Real `ridepulse up` (uvicorn ingest, embedded Valkey, every service). Four processes of 16
gateways each post batches of 10,000 moving drivers back to back, as fast as ingest answers,
each gateway honouring 429's Retry-After as the simulated fleet does, at the lowest CPU
priority (they stand for phones, not for work of this machine); ingest sheds a share of the
requests on matching.geo's lag past 0.5 s. That the
flood is past what the machine sustains is read from the platform's own signals: pings shed
with 429, or pings matching-geo skipped as superseded (`conflated` in its heartbeat), both
zero while it keeps up; the test needs matching-geo to have indexed at most a third of the
pings offered (the rest were shed or skipped as superseded). Meanwhile riders request rides
one a second near available drivers, and a few far from every driver."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ridepulse.keys import GlobalKeys
from ridepulse.redis_client import connect_sync
from tests.e2e.conftest import FAST_CLOCKS, start_city
from tests.e2e.test_shedding import group_lag_s
from tests.support.api import DOWNTOWN, City, offset
from tests.support.processes import stop_children

pytestmark = pytest.mark.e2e

FLOODERS = 4
GATEWAYS = 16  # per flooding process
# Twice the default batch cap (RIDEPULSE_MAX_BATCH_PINGS, raised for this platform): with two
# matching-geo replicas, 5,000-ping batches from four flooders only just reached 3x what the
# platform indexes on a slow CI runner (2.85x); bigger batches flood harder for the same CPU.
BATCH_PINGS = 10_000
BODIES = 4  # each flooder's drivers move ~100 m per body, so no ping repeats the last one
FLOOD_S = 30.0
HEARTBEAT_S = float(FAST_CLOCKS["RIDEPULSE_HEARTBEAT_INTERVAL_S"])
SETTLE_S = 8.0  # lag samples before this are the flood filling the pipeline
SHED_LAG_S = 0.5
NEAR_RIDES, FAR_RIDES = 16, 3
# The near drivers' phones keep pinging, as real ones do: however long a slow machine takes to
# get the flood going, they are never stale (driver_stale_s, 30 s) when their ride comes.
PING_EVERY_S = 4.0
DEADLINE_S = float(FAST_CLOCKS["RIDEPULSE_RIDE_DEADLINE_S"])
# Farther than the widest search (10 km) from every driver of the test, inside the market.
FAR = (37.7100, -122.5130)


@pytest.fixture
def shedding_city(tmp_path: Path) -> Iterator[City]:
    # Offers outlive the test: each ride keeps the driver it was first offered (an offer timing
    # out would send the ride to the next driver, another ride's), so its timeline keeps `offered`.
    platform, client = start_city(
        tmp_path / "city",
        RIDEPULSE_TELEMETRY_SHED_LAG_S=str(SHED_LAG_S),
        RIDEPULSE_OFFER_TIMEOUT_S="60",
        RIDEPULSE_MAX_BATCH_PINGS=str(BATCH_PINGS),
        # each gateway re-sends its drivers back to back, past a driver's ping rate: under the
        # default limit most of the flood would be rejected, not shed or consumed
        RIDEPULSE_PING_RATE_PER_S="1000",
    )
    yield client
    client.close()
    denied = platform.acl_denials()
    platform.stop()
    assert not denied, f"services were refused by their Redis users: {denied}"


def bodies(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    homes = [
        (37.72 + rng.random() * 0.08, -122.50 + rng.random() * 0.12) for _ in range(BATCH_PINGS)
    ]
    return [
        orjson.dumps(
            {
                "pings": [
                    {
                        "driver_id": f"flood-{seed}-{i}",
                        "lat": round(lat + step * 0.0009, 6),
                        "lon": round(lon, 6),
                        "speed_mps": 8.5,
                    }
                    for i, (lat, lon) in enumerate(homes)
                ]
            }
        )
        for step in range(BODIES)
    ]


def flood(api: str, headers: dict[str, str], seed: int, stop: Any, counts: Any) -> None:
    """One flooding process (a thread of the test would take the GIL from its timings) of
    GATEWAYS fleet gateways, each posting its own drivers back to back. counts: [pings
    accepted, pings shed, 429s]."""
    # The load generator stands for phones elsewhere, not for work of this machine: it yields
    # the CPU to every service (telemetry ones included) so what is measured is the platform.
    os.nice(19 - os.nice(0))
    gateways = [
        threading.Thread(
            target=gateway, args=(api, headers, seed * GATEWAYS + g, stop, counts), daemon=True
        )
        for g in range(GATEWAYS)
    ]
    for thread in gateways:
        thread.start()
    for thread in gateways:
        thread.join(FLOOD_S + 30)


def gateway(api: str, headers: dict[str, str], seed: int, stop: Any, counts: Any) -> None:
    """One gateway's batches until `stop` or FLOOD_S; a 429 pauses this gateway only, for its
    Retry-After, as the simulated fleet does. Ingest sheds a share of the requests, so each
    gateway stands for a slice of the fleet that backs off on its own."""
    payloads = bodies(seed)
    deadline = time.monotonic() + FLOOD_S
    sent = 0
    with httpx.Client(base_url=api, timeout=30) as http:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                response = http.post(
                    "/v1/telemetry", content=payloads[sent % BODIES], headers=headers
                )
            except httpx.HTTPError:
                continue  # a timeout under load: try again, the flood must not die
            sent += 1
            with counts.get_lock():
                if response.status_code == 202:
                    counts[0] += int(response.json()["accepted"])
                elif response.status_code == 429:
                    counts[1] += BATCH_PINGS
                    counts[2] += 1
            if response.status_code == 429:
                time.sleep(min(float(response.headers.get("Retry-After", "1")), 2.0))


def keep_pinging(
    city: City, drivers: list[tuple[str, tuple[float, float]]], stop: threading.Event
) -> None:
    """The near drivers' phones: a ping each every PING_EVERY_S (a 429 is retried next round),
    on a client of this thread's own."""
    with httpx.Client(base_url=city.platform.api, timeout=10) as http:
        while not stop.wait(PING_EVERY_S):
            for driver, (lat, lon) in drivers:
                # under the flood a ping may time out; the next round sends another
                with contextlib.suppress(httpx.HTTPError):
                    city.ping(driver, lat, lon, via=http)


def conflated_by_matching_geo(client: Any) -> int:
    total = 0
    for key in client.smembers(GlobalKeys("rp").heartbeats):
        raw = client.get(key)
        if raw and (beat := orjson.loads(raw)).get("service") == "matching-geo":
            total += int(beat.get("conflated", 0))
    return total


def conflated_after_catch_up(client: Any) -> int:
    """matching-geo's conflated count once it has read the whole flood: a backlog still unread
    when the flood stops is conflated too, and the heartbeat publishes the count once a period."""
    deadline = time.monotonic() + 30
    while group_lag_s(client, "matching.geo") > 0:
        assert time.monotonic() < deadline, "matching-geo never caught up with the flood"
        time.sleep(0.2)
    last = conflated_by_matching_geo(client)
    while time.monotonic() < deadline:
        time.sleep(HEARTBEAT_S + 0.5)  # one more beat: the count is final if it did not move
        now = conflated_by_matching_geo(client)
        if now == last:
            return now
        last = now
    raise AssertionError("matching-geo's conflated count never settled")


def offered_or_expired(ride: dict[str, Any]) -> bool:
    return ride["status"] == "expired" or any(s["status"] == "offered" for s in ride["timeline"])


def step_at(ride: dict[str, Any], status: str) -> int:
    return next(int(s["at"]) for s in ride["timeline"] if s["status"] == status)


def test_rides_are_offered_within_their_deadline_while_telemetry_floods_past_capacity(
    shedding_city: City,
) -> None:
    city = shedding_city
    client = connect_sync(city.platform.redis_url())
    # one available driver per near pickup, 400 m apart, NE of downtown (far from FAR)
    pickups = [offset(DOWNTOWN, 400 * (i // 4), 400 * (i % 4)) for i in range(NEAR_RIDES)]
    near_drivers = [(f"near-{i}", offset(point, 50, 0)) for i, point in enumerate(pickups)]
    for driver, position in near_drivers:
        city.go_available(driver, *position)
    phones_off = threading.Event()
    phones = threading.Thread(  # daemon: a failure before the flood's `finally` cannot hang pytest
        target=keep_pinging, args=(city, near_drivers, phones_off), daemon=True
    )
    phones.start()
    deadline = time.monotonic() + 30
    while group_lag_s(client, "matching.geo") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)  # their pings are in the index before the flood starts

    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    counts = spawn.Array("q", 3)
    headers = {**city.token("fleet", "flood"), "Content-Type": "application/json"}
    flooders = [
        spawn.Process(target=flood, args=(city.platform.api, headers, seed, stop, counts))
        for seed in range(FLOODERS)
    ]
    conflated_before = conflated_by_matching_geo(client)
    for process in flooders:
        process.start()
    rides: list[tuple[str, bool]] = []  # (ride id, near a driver)
    lags: list[tuple[float, float]] = []
    try:
        wait_until = time.monotonic() + 60
        while counts[0] + counts[1] < 2 * BATCH_PINGS * FLOODERS:  # the flood is on
            assert time.monotonic() < wait_until, "the telemetry flood never got going"
            time.sleep(0.05)
        began = time.monotonic()
        plan = [True] * NEAR_RIDES + [False] * FAR_RIDES
        random.Random(3).shuffle(plan)
        next_ride = began
        while time.monotonic() - began < FLOOD_S - 4 or plan:
            now = time.monotonic()
            if plan and now >= next_ride:
                near = plan.pop()
                n = len(rides)
                pickup = pickups[sum(1 for _, was in rides if was)] if near else FAR
                response = city.request_ride(f"rider-{n}", pickup, offset(pickup, 1500, 0))
                assert response.status_code == 202, response.text
                rides.append((response.json()["ride_id"], near))
                next_ride = now + 1.0
            lags.append((now - began, group_lag_s(client, "matching.geo")))
            time.sleep(0.25)
    finally:
        stop_children(stop, flooders)
        phones_off.set()
        phones.join(timeout=30)

    accepted, shed, refused = counts[0], counts[1], counts[2]
    settled_samples = [(at, lag) for at, lag in lags if at >= SETTLE_S]
    settled = [lag for _, lag in settled_samples]
    behind_s = longest_above(settled_samples, SHED_LAG_S)
    outcomes = {
        ride_id: city.wait_ride(
            ride_id, offered_or_expired, timeout_s=DEADLINE_S + 15, what="an offer or expiry"
        )
        for ride_id, _ in rides
    }
    conflated = conflated_after_catch_up(client) - conflated_before
    unoffered = [r for r, near in rides if near and outcomes[r]["status"] == "expired"]
    offer_s = [
        (step_at(outcomes[r], "offered") - step_at(outcomes[r], "requested")) / 1000
        for r, near in rides
        if near and r not in unoffered
    ]
    summary = (
        f"flood: {accepted:,} pings accepted, {shed:,} shed ({refused} 429s), {conflated:,} "
        f"conflated by matching-geo; matching.geo lag after {SETTLE_S:g} s: p90 "
        f"{sorted(settled)[int(0.9 * len(settled))] if settled else 0:.2f} s, max "
        f"{max(settled, default=0):.2f} s over {len(settled)} samples, at most {behind_s:.1f} s "
        f"on end over {SHED_LAG_S:g} s; request->offered: "
        f"max {max(offer_s, default=0):.2f} s over {len(offer_s)} near rides, "
        f"{len(unoffered)} expired unoffered; "
        f"far rides: {[outcomes[r]['status'] for r, near in rides if not near]}"
    )
    print(summary)  # the figure the docs quote (pytest -s)
    # past capacity: matching-geo indexed (rather than skipped as superseded) at most a third
    # of the pings offered; it conflates only while behind, so at pace the ratio is 1
    indexed = accepted - conflated
    assert accepted + shed >= 3 * indexed, f"the flood never reached 3x capacity: {summary}"
    assert all(offered_or_expired(outcomes[r]) for r, _ in rides), summary
    assert not unoffered, summary
    assert max(offer_s) < DEADLINE_S, summary
    for ride_id, near in rides:
        if not near:  # nobody within 10 km: told so by expiry, at its deadline, not later
            ride = outcomes[ride_id]
            assert ride["status"] == "expired", summary
            took_s = (step_at(ride, "expired") - step_at(ride, "requested")) / 1000
            assert took_s < DEADLINE_S + 5, summary
    # bounded, not a queue: no position dispatch relies on is older than a ride may wait for its
    # offer, and the lag comes back under the shedding threshold within every such span (a lag
    # that stood still past it would be a backlog that shedding and conflation failed to clear)
    assert settled and max(settled) < DEADLINE_S, summary
    assert behind_s < DEADLINE_S, summary


def longest_above(samples: list[tuple[float, float]], floor_s: float) -> float:
    """The longest time, in seconds, over which every sampled lag was at or above `floor_s`."""
    longest, since = 0.0, None
    for at, lag in samples:
        if lag < floor_s:
            since = None
            continue
        since = at if since is None else since
        longest = max(longest, at - since)
    return longest
