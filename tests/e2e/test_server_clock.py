"""Clocks end to end: freshness and offer expiry are judged on the server's clock, so a phone
whose clock runs 31 s slow is offered rides like any other, and its accept after the offer
expired is refused with 409 (offer timeout 2 s in the e2e city)."""

from __future__ import annotations

import time

import pytest

from ridepulse.redis_client import connect_sync
from tests.support.api import DOWNTOWN, City, offset
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e
DROPOFF = offset(DOWNTOWN, -2500, 800)
SLOW_MS = 31_000  # beyond the 30 s after which a driver is stale


def _indexed(city: City, driver: str) -> bool:
    client = connect_sync(city.platform.redis_url())
    try:
        return client.zscore("rp:{sf}:drivers:geo", driver) is not None
    finally:
        client.close()


def test_a_driver_whose_phone_clock_is_31_s_slow_is_offered_and_a_late_accept_is_409(
    city: City,
) -> None:
    driver = "slow-clock"
    position = offset(DOWNTOWN, 300, 0)
    slow_ts = int(time.time() * 1000) - SLOW_MS
    assert city.ping(driver, *position, ts=slow_ts).status_code == 202
    status = city.http.put(
        f"/v1/drivers/{driver}/status",
        json={"status": "available"},
        headers=city.token("driver", driver),
    )
    assert status.status_code == 200, status.text
    wait_until_sync(lambda: _indexed(city, driver), timeout_s=10, what="the driver indexed")
    # keep pinging with the slow clock, as the phone would
    assert city.ping(driver, *position, ts=slow_ts + 1_000).status_code == 202

    response = city.request_ride("rider-slow", DOWNTOWN, DROPOFF)
    assert response.status_code == 202, response.text
    ride_id = response.json()["ride_id"]
    city.wait_ride(ride_id, lambda r: r["status"] == "offered", what="an offer to the slow phone")
    view = city.http.get(f"/v1/drivers/{driver}", headers=city.token("driver", driver)).json()
    assert view["offer"]["ride_id"] == ride_id, view

    # the driver taps accept only after the 2 s offer has expired on the server
    time.sleep(2.5)  # the behaviour under test is the passage of time itself
    late = city.act(driver, ride_id, "accept")
    assert late.status_code == 409, late.text
    assert city.ride(ride_id)["driver_id"] != driver
