"""Two built-in markets side by side on one platform (`RIDEPULSE_MARKETS=sf,nyc`): rides in both
at once, each matched in its own market, each priced at its own rate card."""

from __future__ import annotations

import functools
import subprocess
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from dashboard.protocol import decode
from loadtests.platform import clean_env
from ridepulse.auth import mint_dashboard_link
from ridepulse.redis_client import connect_sync
from tests.support.api import DOWNTOWN, City, offset
from tests.support.processes import RIDEPULSE
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e

MIDTOWN = (40.7580, -73.9855)


def test_rides_in_both_markets_at_once_are_matched_and_priced_in_their_own_market(
    two_cities: City,
) -> None:
    city = two_cities
    # each goes online right after its first ping: ingest knows the market before matching-geo
    for driver, position in (
        ("sf-driver", offset(DOWNTOWN, 300, 0)),
        ("nyc-driver", offset(MIDTOWN, 300, 0)),
    ):
        city.go_available(driver, *position)
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
    _dashboard_follows_each_market(city, rides)
    _status_lists_both_markets(city)
    if city.platform.on_cluster:  # RIDEPULSE_TEST_CLUSTER=1: a 3-primary cluster
        client: Any = connect_sync(city.platform.redis_url())
        try:
            sf_node = client.get_node_from_key("rp:{sf}:rides")
            nyc_node = client.get_node_from_key("rp:{nyc}:rides")
            assert sf_node.name != nyc_node.name, "the two markets share a primary"
        finally:
            client.close()


def _status_lists_both_markets(city: City) -> None:
    """A plain `ridepulse status` (another shell: no RIDEPULSE_MARKETS, the platform's data dir)
    lists nyc's streams and groups beside sf's, not sf's alone."""
    env = clean_env(RIDEPULSE_DATA_DIR=str(city.platform.data_dir))
    result = subprocess.run(
        [RIDEPULSE, "status", "--json"], capture_output=True, text=True, env=env, timeout=30
    )
    report = orjson.loads(result.stdout)
    groups = {(s["key"], g["name"]) for s in report["streams"] for g in s["groups"]}
    for market in ("sf", "nyc"):
        assert (f"rp:{{{market}}}:rides", "matching") in groups, groups
        assert (f"rp:{{{market}}}:telemetry", "matching.geo") in groups, groups


def _dashboard_follows_each_market(city: City, rides: dict[str, str]) -> None:
    """The dashboard serves both markets: each feed holds its own market's ride (over the
    snapshot API and over the WebSocket), and names both for the page's switch."""
    link = mint_dashboard_link(city.secret, "two-markets")
    sf_ride, nyc_ride = rides["sf-driver"], rides["nyc-driver"]
    with httpx.Client(base_url=city.platform.dashboard, timeout=10) as http:
        for market, own, other in (("sf", sf_ride, nyc_ride), ("nyc", nyc_ride, sf_ride)):
            snapshot = wait_until_sync(
                functools.partial(_snapshot_with, http, link, market, own),
                timeout_s=20,
                what=f"the {market} feed showing its ride",
            )
            assert snapshot["market"]["id"] == market
            assert [m["id"] for m in snapshot["market"]["markets"]] == ["sf", "nyc"]
            assert other not in {r["ride_id"] for r in snapshot["rides"]}
        unknown = http.get("/api/snapshot", params={"market": "paris", "token": link})
        assert unknown.status_code == 404 and unknown.json()["field"] == "market"
    ws_url = f"{city.platform.dashboard.replace('http', 'ws', 1)}/ws?market=nyc&token={link}"
    with connect(ws_url, open_timeout=10) as socket:
        first = decode(str(socket.recv(timeout=10)))
        assert first["kind"] == "snapshot" and first["market"]["id"] == "nyc"
    with connect(ws_url.replace("market=nyc", "market=paris"), open_timeout=10) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def _snapshot_with(
    http: httpx.Client, link: str, market: str, ride_id: str
) -> dict[str, Any] | None:
    response = http.get("/api/snapshot", params={"market": market, "token": link})
    assert response.status_code == 200, response.text
    snapshot: dict[str, Any] = decode(response.text)
    return snapshot if ride_id in {r["ride_id"] for r in snapshot["rides"]} else None
