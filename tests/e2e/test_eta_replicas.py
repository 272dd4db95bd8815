"""`ridepulse up --scale eta=2` (RIDEPULSE_SCALE) with two markets: the two eta replicas split
sf and nyc by lease, rides in both markets get ETAs from their market's owner, and no service
user is refused a command (the lease grants in ridepulse/acl_grants.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ridepulse.contracts.registry import decode
from tests.e2e.conftest import running_city
from tests.support.api import DOWNTOWN, City, offset
from tests.support.lease_replicas import split_owners
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e

MIDTOWN = (40.7580, -73.9855)


@pytest.fixture
def scaled(tmp_path: Path) -> Iterator[City]:
    env = {"RIDEPULSE_MARKETS": "sf,nyc", "RIDEPULSE_SCALE": "eta=2"}
    with running_city(tmp_path / "city", **env) as client:
        yield client


def test_two_eta_replicas_split_the_markets_and_rides_in_both_get_etas(scaled: City) -> None:
    city = scaled
    redis = city.platform.redis_client()
    try:
        split = wait_until_sync(
            lambda: split_owners(redis, "eta", ("sf", "nyc")),
            timeout_s=60,
            what="one market per eta replica",
        )
        assert set(split.values()) == {"eta-1", "eta-2"}, split
        for market, spot in (("sf", DOWNTOWN), ("nyc", MIDTOWN)):
            driver = f"{market}-driver"
            city.go_available(driver, *offset(spot, 300, 0))
            response = city.request_ride(f"{market}-rider", spot, offset(spot, -3000, 0))
            assert response.status_code == 202, response.text
            ride_id = response.json()["ride_id"]
            city.wait_ride(ride_id, lambda r: r["status"] == "offered", timeout_s=60, what="offer")
            assert city.act(driver, ride_id, "accept").json()["status"] == "matched"

            def announced(m: str = market, r: str = ride_id) -> list[str]:
                entries: Any = redis.xrange(f"rp:{{{m}}}:eta")
                events = [decode(fields) for _, fields in entries]
                return [e.envelope.source for e in events if e.envelope.subject == f"ride/{r}"]

            sources = wait_until_sync(announced, timeout_s=60, what=f"an ETA in {market}")
            assert set(sources) == {f"eta/{split[market]}"}, (market, sources)
    finally:
        redis.close()
