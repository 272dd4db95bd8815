"""Under consumer lag, telemetry is shed with 429 — ride requests never are."""

from __future__ import annotations

import time

import pytest
import redis

from tests.e2e.conftest import start_city
from tests.support.api import DOWNTOWN, offset

pytestmark = pytest.mark.e2e


def test_pings_get_429_while_telemetry_lags_but_rides_are_still_accepted(tmp_path: object) -> None:
    from pathlib import Path

    platform, city = start_city(Path(str(tmp_path)) / "city", RIDEPULSE_TELEMETRY_SHED_LAG="50")
    try:
        client = redis.Redis.from_url(platform.redis_url())
        pipe = client.pipeline(transaction=False)
        for _ in range(200):
            pipe.xadd("rp:{sf}:telemetry", {b"filler": b"1"})
        pipe.execute()
        client.xgroup_create("rp:{sf}:telemetry", "laggard", id="0")  # a group 200 entries behind
        deadline = time.monotonic() + 10
        response = city.ping("d-shed", *DOWNTOWN)
        while response.status_code != 429 and time.monotonic() < deadline:
            time.sleep(0.2)
            response = city.ping("d-shed", *DOWNTOWN)
        assert response.status_code == 429, f"expected shedding, got {response.status_code}"
        assert response.json()["error"] == "overloaded" and response.headers["Retry-After"] == "1"
        ride = city.request_ride("r-shed", DOWNTOWN, offset(DOWNTOWN, -1500, 0))
        assert ride.status_code == 202, ride.text
        client.xgroup_destroy("rp:{sf}:telemetry", "laggard")
        deadline = time.monotonic() + 10
        while city.ping("d-shed", *DOWNTOWN).status_code != 202:
            assert time.monotonic() < deadline, "shedding should stop once the lag is gone"
            time.sleep(0.2)
        client.close()
    finally:
        city.close()
        platform.stop()
