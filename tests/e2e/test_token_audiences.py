"""Every token is good for one surface (docs/security.md): the dashboard link only looks, the
API refuses it; the dashboard refuses API tokens; open sockets end with their token."""

from __future__ import annotations

import re
import time

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from ridepulse.auth import DASHBOARD_LINK_TTL_S, mint_token
from ridepulse.ws_expiry import TOKEN_EXPIRED
from tests.support.api import DOWNTOWN, City, offset

pytestmark = pytest.mark.e2e


def _banner_link(city: City) -> str:
    found = re.search(r"Dashboard: \S+/\?token=(\S+)", city.platform.text())
    assert found, city.platform.text()[-2000:]
    return found.group(1)


def test_the_printed_dashboard_link_is_short_lived_and_powerless_on_the_api(
    shared_city: City,
) -> None:
    link = _banner_link(shared_city)
    claims = jwt.decode(link, options={"verify_signature": False})
    assert claims["aud"] == "dashboard" and claims["role"] == "viewer"
    assert claims["exp"] - claims["iat"] == DASHBOARD_LINK_TTL_S <= 15 * 60
    driver = "aud-driver"
    assert shared_city.ping(driver, *DOWNTOWN).status_code == 202
    rider = shared_city.request_ride("aud-rider", DOWNTOWN, offset(DOWNTOWN, -1500, 300))
    assert rider.status_code == 202, rider.text
    ride_id = rider.json()["ride_id"]
    as_link = {"Authorization": f"Bearer {link}"}
    http = shared_city.http
    refused = [
        http.put(f"/v1/drivers/{driver}/status", json={"status": "offline"}, headers=as_link),
        http.get(f"/v1/rides/{ride_id}", headers=as_link),
        http.post(f"/v1/rides/{ride_id}/cancel", headers=as_link),
        http.post(
            f"/v1/drivers/{driver}/location",
            json={"lat": DOWNTOWN[0], "lon": DOWNTOWN[1]},
            headers=as_link,
        ),
    ]
    assert [r.status_code for r in refused] == [401] * 4, [r.text for r in refused]
    assert "audience" in refused[0].json()["detail"]
    assert shared_city.ride(ride_id)["status"] != "cancelled"
    url = f"ws://127.0.0.1:{shared_city.platform.api_port}/v1/drivers/{driver}/ws?token={link}"
    with pytest.raises(InvalidStatus) as handshake, connect(url, open_timeout=10) as ws:
        ws.recv(timeout=10)
    assert handshake.value.response.status_code == 403  # refused at the handshake


OPEN_ROUTES = {"/healthz", "/readyz", "/metrics"}  # no token asked: probes and scraping


def test_the_dashboard_link_is_refused_by_every_operation_the_api_publishes(
    shared_city: City,
) -> None:
    """Walks the live OpenAPI, so a route added later is covered without editing this test."""
    link = _banner_link(shared_city)
    http = shared_city.http
    spec = http.get("/openapi.json").json()
    tried: dict[str, int] = {}
    for path, operations in spec["paths"].items():
        if path in OPEN_ROUTES:
            continue
        url = re.sub(r"\{[^}]+\}", "aud-any", path)
        for method in operations:
            answer = http.request(
                method.upper(), url, json={}, headers={"Authorization": f"Bearer {link}"}
            )
            tried[f"{method.upper()} {path}"] = answer.status_code
    assert len(tried) >= 10, tried
    assert set(tried.values()) == {401}, {k: v for k, v in tried.items() if v != 401}


def test_the_dashboard_takes_its_link_not_an_api_token(shared_city: City) -> None:
    ops = mint_token(shared_city.secret, "ops", "aud-ops")
    with httpx.Client(base_url=shared_city.platform.dashboard, timeout=10) as http:
        assert (
            http.get("/api/snapshot", headers={"Authorization": f"Bearer {ops}"}).status_code == 401
        )
        opened = http.get(f"/?token={_banner_link(shared_city)}")
        assert opened.status_code == 303 and "httponly" in opened.headers["set-cookie"].lower()
        assert http.get("/api/snapshot").status_code == 200, "the session cookie opens the feed"


def test_a_driver_socket_closes_when_its_token_expires(shared_city: City) -> None:
    driver = "aud-brief"
    token = mint_token(shared_city.secret, "driver", driver, ttl_s=3)
    url = f"ws://127.0.0.1:{shared_city.platform.api_port}/v1/drivers/{driver}/ws?token={token}"
    started = time.monotonic()
    # the loop is the point: read until the server closes the socket at the token's expiry
    with pytest.raises(ConnectionClosed) as closed, connect(url, open_timeout=10) as ws:  # noqa: PT012
        while True:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (TOKEN_EXPIRED, "token expired")
    assert time.monotonic() - started < 25
