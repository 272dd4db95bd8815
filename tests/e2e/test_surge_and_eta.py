"""Surge, quotes and ETAs through the whole platform over HTTP: pricing and eta publish read
models and events, and ingest's quotes and rides reflect them. The platform runs with an
8-second surge window recomputed every 0.5 s (FAST_CLOCKS in conftest.py)."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import redis

from ridepulse.geo import cell_center, cell_of, haversine_m
from ridepulse.redis_client import connect_sync
from tests.e2e.conftest import running_city
from tests.support.api import DOWNTOWN, City, offset
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e

DROPOFF = offset(DOWNTOWN, -2500, 800)
SURGE_CELLS = "rp:{sf}:surge:cells"
SURGE_EVENTS = "rp:{sf}:surge"
ETA_EVENTS = "rp:{sf}:eta"
SPEEDS = "rp:{sf}:eta:speeds"
M_PER_DEG_LAT = 111_195.0


@pytest.fixture
def city(tmp_path: Path) -> Iterator[City]:
    """A fresh city whose drivers may send a burst of 100 pings: the speed test uploads 4.5
    minutes of a probe fleet's history at once, 90 pings a driver (the default burst is 20)."""
    with running_city(tmp_path / "city", RIDEPULSE_PING_BURST="100") as client:
        yield client


@pytest.fixture
def db(city: City) -> Iterator[redis.Redis]:
    client = connect_sync(city.platform.redis_url(), decode_responses=True)
    yield client
    client.close()


def events(db: redis.Redis, stream: str) -> list[dict[str, Any]]:
    """Every event of a stream as {type, id, data}."""
    entries = cast(list[tuple[str, dict[str, str]]], db.xrange(stream))
    return [
        {"type": fields["type"], "id": fields["id"], "data": orjson.loads(fields["data"])}
        for _, fields in entries
    ]


def surge_announced(db: redis.Redis, cell: str) -> list[float]:
    """The multipliers announced for `cell`, in order."""
    return [
        c["multiplier"]
        for e in events(db, SURGE_EVENTS)
        for c in e["data"]["cells"]
        if c["cell"] == cell
    ]


def test_surge_rises_where_riders_outnumber_drivers_is_honoured_and_falls_back(
    city: City, db: redis.Redis
) -> None:
    cell = cell_of(*DOWNTOWN)
    city.go_available("lonely", *DOWNTOWN)
    assert city.ping("lonely", *DOWNTOWN).status_code == 202  # seen available, in the cell
    for i in range(6):
        response = city.request_ride(f"crowd-{i}", offset(DOWNTOWN, 10 * i, 0), DROPOFF)
        assert response.status_code == 202, response.text

    wait_until_sync(
        lambda: city.quote("watch", DOWNTOWN, DROPOFF, role="ops")["surge"] > 1.0,
        timeout_s=10,
        what="the quote to show surge where six riders wait for one driver",
    )
    surging = city.quote("late-rider", DOWNTOWN, DROPOFF)
    assert surging["surge"] > 1.0
    assert float(cast(str, db.hget(SURGE_CELLS, cell))) == surging["surge"]
    assert surging["surge"] in surge_announced(db, cell), "surge.updated announced the rise"
    # architecture.md: quotes come from read models, so they keep working, with the last
    # published values, while pricing and eta are down (here stopped for several surge ticks)
    with city.platform.paused("pricing", "eta"):
        until = time.monotonic() + 1.5
        while time.monotonic() < until:
            frozen = city.quote("watch", DOWNTOWN, DROPOFF, role="ops")  # asserts the 200
            assert frozen["surge"] == surging["surge"] and frozen["trip_eta_s"] > 0, frozen
            time.sleep(0.2)
        # a ride without a quote pays the surge its pickup cell has (it paid 1.0x: leaving
        # the quote out skipped surge)
        unquoted = city.request_ride("no-quote-rider", DOWNTOWN, DROPOFF)
        assert unquoted.status_code == 202, unquoted.text
        assert city.ride(unquoted.json()["ride_id"])["surge"] == surging["surge"]

    response = city.request_ride("late-rider", DOWNTOWN, DROPOFF, quote_id=surging["quote_id"])
    assert response.status_code == 202, response.text
    ride = city.ride(response.json()["ride_id"])
    assert (ride["fare"], ride["surge"]) == (surging["fare"], surging["surge"]), (
        "the quote is honoured"
    )

    calm = wait_until_sync(
        lambda: (q := city.quote("watch", DOWNTOWN, DROPOFF, role="ops"))["surge"] == 1.0 and q,
        timeout_s=25,
        what="surge to fall back once the 8 s window has passed",
    )
    assert calm["fare"] < surging["fare"]
    assert not db.hexists(SURGE_CELLS, cell), "a calm cell leaves the surge read model"
    assert surge_announced(db, cell)[-1] == 1.0, "surge.updated announced the fall"


def eta_updates(db: redis.Redis, ride_id: str, phase: str) -> list[dict[str, Any]]:
    return [
        e["data"]
        for e in events(db, ETA_EVENTS)
        if e["data"]["ride_id"] == ride_id and e["data"]["phase"] == phase
    ]


def test_a_quoted_ride_gets_pickup_and_trip_etas_and_is_charged_the_quote(
    city: City, db: redis.Redis
) -> None:
    driver = "eta-driver"
    city.go_available(driver, *offset(DOWNTOWN, 900, 0))
    wait_until_sync(
        lambda: db.zscore("rp:{sf}:drivers:geo", driver) is not None,
        timeout_s=10,
        what="driver indexed",
    )
    quoted = city.quote("eta-rider", DOWNTOWN, DROPOFF)
    ride_id = city.request_ride("eta-rider", DOWNTOWN, DROPOFF, quote_id=quoted["quote_id"]).json()[
        "ride_id"
    ]
    city.wait_ride(ride_id, lambda r: r["status"] == "offered", what="an offer")
    assert city.act(driver, ride_id, "accept").status_code == 200

    [pickup] = wait_until_sync(
        lambda: eta_updates(db, ride_id, "pickup"), timeout_s=10, what="a pickup eta.updated"
    )
    assert pickup["driver_id"] == driver and 0 < pickup["eta_s"] < 600, pickup
    assert city.ride(ride_id)["pickup_eta_s"] == pickup["eta_s"]

    assert city.act(driver, ride_id, "arrived").status_code == 200
    assert city.act(driver, ride_id, "start").status_code == 200
    [trip] = wait_until_sync(
        lambda: eta_updates(db, ride_id, "trip"), timeout_s=10, what="a trip eta.updated"
    )
    assert trip["eta_s"] > 0 and city.ride(ride_id)["trip_eta_s"] == trip["eta_s"]

    done = city.act(driver, ride_id, "complete")
    assert done.status_code == 200, done.text
    assert done.json()["fare"] == quoted["fare"], "the quoted fare is charged at completion"


def circling_fleet(
    cell: str, speed_mps: float, rng: random.Random, *, drivers: int, now_ms: int
) -> list[dict[str, Any]]:
    """Pings of drivers circling a cell's centre at `speed_mps` over the last ~4.5 minutes,
    every 3 s, in time order (backdated: ingest accepts pings up to 5 minutes old)."""
    lat0, lon0 = cell_center(cell)
    m_per_deg_lon = M_PER_DEG_LAT * math.cos(math.radians(lat0))
    radius_m, interval_ms, steps = 250.0, 3_000, 90
    phases = [rng.uniform(0, 2 * math.pi) for _ in range(drivers)]
    start = now_ms - 10_000 - steps * interval_ms
    pings = []
    for i in range(steps):
        for d, phase in enumerate(phases):
            angle = phase + speed_mps * i * interval_ms / 1000 / radius_m
            north = radius_m * math.sin(angle) + rng.gauss(0, 3.0)
            east = radius_m * math.cos(angle) + rng.gauss(0, 3.0)
            pings.append(
                {
                    "driver_id": f"probe-{d}",
                    "lat": lat0 + north / M_PER_DEG_LAT,
                    "lon": lon0 + east / m_per_deg_lon,
                    "ts": start + i * interval_ms,
                }
            )
    return pings


def test_learned_speed_in_a_cell_converges_within_ten_percent_and_prices_trips(
    city: City, db: redis.Redis
) -> None:
    truth_mps = 7.0
    mission = cell_of(37.7599, -122.4148)
    pings = circling_fleet(
        mission, truth_mps, random.Random(23), drivers=6, now_ms=int(time.time() * 1000)
    )
    response = city.http.post(
        "/v1/telemetry", json={"pings": pings}, headers=city.token("fleet", "probe-fleet")
    )
    assert response.status_code == 202 and response.json()["accepted"] == len(pings), response.text

    seen: list[float] = []

    def learned() -> float:
        """The learned speed once within 10% of the truth, else 0.0 (keep waiting)."""
        raw = cast(str | None, db.hget(SPEEDS, mission))
        seen.append(0.0 if raw is None else float(raw))
        return seen[-1] if abs(seen[-1] - truth_mps) <= 0.1 * truth_mps else 0.0

    try:
        speed = wait_until_sync(learned, timeout_s=20, interval_s=0.2, what="the learned speed")
    except AssertionError:
        raise AssertionError(
            f"speed of {mission} never within 10% of {truth_mps} m/s; read {seen[-5:]}"
        ) from None

    centre = cell_center(mission)
    inside = offset(centre, 300, 0)  # a trip that stays inside the cell
    trip_s = city.quote("speed-rider", centre, inside)["trip_eta_s"]
    expected_s = haversine_m(*centre, *inside) * 1.3 / speed
    assert trip_s == pytest.approx(expected_s, rel=0.05), "quotes price trips at the learned speed"
