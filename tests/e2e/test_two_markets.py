"""Two built-in markets side by side on one platform (`RIDEPULSE_MARKETS=sf,nyc`): rides in both
at once, each matched in its own market, each priced at its own rate card."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ridepulse.redis_client import connect_sync
from tests.e2e.conftest import start_city
from tests.support.api import DOWNTOWN, City, offset

pytestmark = pytest.mark.e2e

MIDTOWN = (40.7580, -73.9855)


@pytest.fixture
def two_cities(tmp_path: Path) -> Iterator[City]:
    platform, client = start_city(tmp_path / "city", RIDEPULSE_MARKETS="sf,nyc")
    yield client
    client.close()
    denied = platform.acl_denials()
    code = platform.stop()
    assert not denied, f"services were refused by their Redis users: {denied}"
    assert code == 0, f"ridepulse up exited {code}:\n{platform.text()[-2000:]}"


def test_rides_in_both_markets_at_once_are_matched_and_priced_in_their_own_market(
    two_cities: City,
) -> None:
    city = two_cities
    city.go_available("sf-driver", *offset(DOWNTOWN, 300, 0))
    city.go_available("nyc-driver", *offset(MIDTOWN, 300, 0))
    sf_quote = city.quote("sf-rider", DOWNTOWN, offset(DOWNTOWN, -3000, 0))
    nyc_quote = city.quote("nyc-rider", MIDTOWN, offset(MIDTOWN, -3000, 0))
    # the same trip shape costs more at New York's rate card (no surge: no demand yet)
    assert sf_quote["surge"] == nyc_quote["surge"] == 1.0
    assert nyc_quote["fare"] > sf_quote["fare"]
    sf_ride = city.request_ride(
        "sf-rider", DOWNTOWN, offset(DOWNTOWN, -3000, 0), quote_id=sf_quote["quote_id"]
    )
    nyc_ride = city.request_ride(
        "nyc-rider", MIDTOWN, offset(MIDTOWN, -3000, 0), quote_id=nyc_quote["quote_id"]
    )
    assert sf_ride.status_code == 202 and nyc_ride.status_code == 202, (sf_ride, nyc_ride)
    rides = {"sf-driver": sf_ride.json()["ride_id"], "nyc-driver": nyc_ride.json()["ride_id"]}
    for driver, ride_id in rides.items():
        city.wait_ride(ride_id, lambda r: r["status"] == "offered", timeout_s=30, what="an offer")
        view = city.http.get(f"/v1/drivers/{driver}", headers=city.token("driver", driver)).json()
        assert view["offer"]["ride_id"] == ride_id, view
    for action in ("accept", "arrived", "start", "complete"):
        for driver, ride_id in rides.items():
            result = city.act(driver, ride_id, action)
            assert result.status_code == 200, f"{driver} {action}: {result.text}"
    assert city.ride(rides["sf-driver"])["fare"] == sf_quote["fare"]
    assert city.ride(rides["nyc-driver"])["fare"] == nyc_quote["fare"]
    if city.platform.cluster is not None:  # RIDEPULSE_TEST_CLUSTER=1: a 3-primary cluster
        client: Any = connect_sync(city.platform.cluster.url)
        try:
            sf_node = client.get_node_from_key("rp:{sf}:rides")
            nyc_node = client.get_node_from_key("rp:{nyc}:rides")
            assert sf_node.name != nyc_node.name, "the two markets share a primary"
        finally:
            client.close()
