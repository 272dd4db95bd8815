"""`ridepulse up --scale pricing=2` (RIDEPULSE_SCALE) with two markets: the two pricing replicas
split sf and nyc by lease, each market still surges, and no service user is refused a command
(the lease grants in ridepulse/acl_grants.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import running_city
from tests.support.api import DOWNTOWN, City, offset
from tests.support.lease_replicas import split_owners
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e

MIDTOWN = (40.7580, -73.9855)


@pytest.fixture
def scaled(tmp_path: Path) -> Iterator[City]:
    env = {"RIDEPULSE_MARKETS": "sf,nyc", "RIDEPULSE_SCALE": "pricing=2"}
    with running_city(tmp_path / "city", **env) as client:
        yield client


def test_two_pricing_replicas_split_the_markets_and_both_surge(scaled: City) -> None:
    city = scaled
    redis = city.platform.redis_client()
    try:
        split = wait_until_sync(
            lambda: split_owners(redis, "pricing", ("sf", "nyc")),
            timeout_s=60,
            what="one market per pricing replica",
        )
        assert set(split.values()) == {"pricing-1", "pricing-2"}, split
        for market, spot in (("sf", DOWNTOWN), ("nyc", MIDTOWN)):
            for i in range(5):  # no drivers: demand alone raises the surge
                response = city.request_ride(f"{market}-rider-{i}", spot, offset(spot, -3000, 0))
                assert response.status_code == 202, response.text
            wait_until_sync(
                lambda s=spot, m=market: (
                    city.quote(f"{m}-q", s, offset(s, -3000, 0), "ops")["surge"]  # type: ignore[misc]
                    > 1.0
                ),
                timeout_s=60,
                what=f"{market} to surge under its own replica",
            )
    finally:
        redis.close()
