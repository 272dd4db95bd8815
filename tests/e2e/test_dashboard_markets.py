"""The dashboard of a two-market platform (`RIDEPULSE_MARKETS=sf,nyc`, also on a 3-primary
cluster with RIDEPULSE_TEST_CLUSTER=1, where the two markets and the health stream live on
different slots): a socket with `?market=nyc` follows New York's rides and drivers, the default
socket follows San Francisco's, and both see the services' heartbeats."""

from __future__ import annotations

import time
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from dashboard.protocol import apply_delta, decode
from ridepulse.auth import mint_dashboard_link
from tests.support.api import DOWNTOWN, City, offset

pytestmark = pytest.mark.e2e

MIDTOWN = (40.7580, -73.9855)
State = dict[str, Any]


def _until(ws: ClientConnection, check: Any, what: str, timeout_s: float = 45.0) -> State:
    """The page's state (snapshot plus deltas) once `check` holds, within the deadline."""
    state: State = {}
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = decode(ws.recv(timeout=left))
        except TimeoutError:
            break
        state = message if message["kind"] == "snapshot" else apply_delta(state, message)
        if check(state):
            return state
    raise AssertionError(f"the {what} never showed within {timeout_s}s")


def _rides(state: State) -> set[str]:
    return {r["ride_id"] for r in state.get("rides", [])}


def _drivers(state: State) -> set[str]:
    return {d["id"] for d in state.get("drivers", [])}


def test_each_market_socket_follows_its_own_market_with_the_services_heartbeats(
    two_cities: City,
) -> None:
    city = two_cities
    city.go_available("dash-sf-driver", *offset(DOWNTOWN, 300, 0))
    city.go_available("dash-nyc-driver", *offset(MIDTOWN, 300, 0))
    sf_ride = city.request_ride("dash-sf-rider", DOWNTOWN, offset(DOWNTOWN, -3000, 0))
    nyc_ride = city.request_ride("dash-nyc-rider", MIDTOWN, offset(MIDTOWN, -3000, 0))
    assert sf_ride.status_code == nyc_ride.status_code == 202, (sf_ride.text, nyc_ride.text)
    sf_id, nyc_id = sf_ride.json()["ride_id"], nyc_ride.json()["ride_id"]
    link = mint_dashboard_link(city.secret, "e2e-viewer")
    base = f"ws://127.0.0.1:{city.platform.dashboard_port}/ws?token={link}"
    with connect(f"{base}&market=nyc", open_timeout=10) as nyc_ws:
        nyc = _until(
            nyc_ws,
            lambda s: nyc_id in _rides(s) and "dash-nyc-driver" in _drivers(s) and s["services"],
            "nyc ride, driver and services",
        )
    with connect(base, open_timeout=10) as sf_ws:
        sf = _until(
            sf_ws,
            lambda s: sf_id in _rides(s) and "dash-sf-driver" in _drivers(s) and s["services"],
            "sf ride, driver and services",
        )
    assert nyc["market"]["id"] == "nyc" and sf["market"]["id"] == "sf"
    assert sf_id not in _rides(nyc) and "dash-sf-driver" not in _drivers(nyc)
    assert nyc_id not in _rides(sf) and "dash-nyc-driver" not in _drivers(sf)
