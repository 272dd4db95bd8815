"""Two markets on one dashboard (RIDEPULSE_MARKETS=sf,nyc): each WebSocket follows the market of
its `?market=`, gets that market's snapshot and only that market's deltas; each snapshot lists
both markets; an unknown market is refused, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ridepulse.keys import MarketKeys
from ridepulse.settings import Settings
from tests.integration.test_dashboard_feed import Dashboard, View, _serve
from tests.support.dashboard_city import RideWriter, put_drivers

pytestmark = pytest.mark.integration

MIDTOWN, TIMES_SQUARE = (40.7580, -73.9855), (40.7560, -73.9870)
DOWNTOWN_SF, MISSION = (37.7880, -122.4075), (37.7600, -122.4150)


@pytest.fixture
async def two_markets(settings: Settings) -> AsyncIterator[Dashboard]:
    async with _serve(settings.model_copy(update={"markets": "sf,nyc"})) as served:
        yield served


def _ride_ids(state: dict[str, object]) -> set[str]:
    rides = state["rides"]
    assert isinstance(rides, list)
    return {r["ride_id"] for r in rides}


def _driver_ids(state: dict[str, object]) -> set[str]:
    drivers = state["drivers"]
    assert isinstance(drivers, list)
    return {d["id"] for d in drivers}


async def test_each_socket_gets_only_its_own_markets_rides_and_drivers(
    two_markets: Dashboard, redis: aioredis.Redis
) -> None:
    prefix = two_markets.settings.key_prefix
    sf, nyc = MarketKeys("sf", prefix), MarketKeys("nyc", prefix)
    async with (
        connect(two_markets.ws()) as sf_ws,
        connect(two_markets.ws(market="nyc")) as nyc_ws,
    ):
        sf_view, nyc_view = View(sf_ws), View(nyc_ws)
        first_sf = await sf_view.until(lambda s: True, what="the default market's snapshot")
        first_nyc = await nyc_view.until(lambda s: True, what="the nyc snapshot")
        assert first_sf["market"]["id"] == "sf", "no ?market= means the first market"
        assert first_nyc["market"]["id"] == "nyc"
        assert first_nyc["market"]["center"]["lat"] == pytest.approx(40.7, abs=0.3)
        await RideWriter(redis, nyc, "ride-nyc-1", MIDTOWN, TIMES_SQUARE).step("requested")
        await RideWriter(redis, sf, "ride-sf-1", DOWNTOWN_SF, MISSION).step("requested")
        await put_drivers(redis, nyc, {"drv-nyc": (*MIDTOWN, "available")})
        await put_drivers(redis, sf, {"drv-sf": (*DOWNTOWN_SF, "available")})
        nyc_state = await nyc_view.until(
            lambda s: "ride-nyc-1" in _ride_ids(s) and "drv-nyc" in _driver_ids(s),
            timeout_s=10,
            what="the nyc ride and driver",
        )
        sf_state = await sf_view.until(
            lambda s: "ride-sf-1" in _ride_ids(s) and "drv-sf" in _driver_ids(s),
            timeout_s=10,
            what="the sf ride and driver",
        )
        assert _ride_ids(nyc_state) == {"ride-nyc-1"} and _driver_ids(nyc_state) == {"drv-nyc"}
        assert _ride_ids(sf_state) == {"ride-sf-1"} and _driver_ids(sf_state) == {"drv-sf"}
        assert [e["ride_id"] for e in nyc_state["events"]] == ["ride-nyc-1"]


async def test_each_markets_snapshot_lists_both_markets_and_rides_are_read_in_their_market(
    two_markets: Dashboard, redis: aioredis.Redis
) -> None:
    nyc = MarketKeys("nyc", two_markets.settings.key_prefix)
    await RideWriter(redis, nyc, "nyc-api1", MIDTOWN, TIMES_SQUARE).step("requested")
    auth = {"Authorization": f"Bearer {two_markets.token}"}
    async with httpx.AsyncClient(base_url=two_markets.http, headers=auth, timeout=10) as http:
        default = (await http.get("/api/snapshot")).json()
        assert default["market"]["id"] == "sf"
        assert [m["id"] for m in default["market"]["markets"]] == ["sf", "nyc"]
        snapshot = (await http.get("/api/snapshot", params={"market": "nyc"})).json()
        assert snapshot["market"]["id"] == "nyc" and snapshot["market"]["bbox"]["min_lat"] > 40
        # the ride id names its market: found in nyc's keys from any page
        found = await http.get("/api/rides/nyc-api1")
        assert found.status_code == 200 and found.json()["fields"]["market"] == "nyc"
        basemaps = [await http.get("/basemap.geojson", params={"market": m}) for m in ("sf", "nyc")]
        assert basemaps[0].status_code == basemaps[1].status_code == 200
        assert basemaps[0].content != basemaps[1].content
        unknown = await http.get("/api/snapshot", params={"market": "paris"})
        assert unknown.status_code == 404
        assert unknown.json()["field"] == "market" and unknown.json()["error"]


async def test_a_socket_for_an_unknown_market_is_closed_as_a_policy_violation(
    two_markets: Dashboard,
) -> None:
    async with connect(two_markets.ws(market="paris")) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
