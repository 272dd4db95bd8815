"""A driver's WebSocket: pings in, offers and assignment changes out."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from ridepulse.auth import mint_dashboard_link, mint_token
from tests.support.api import DOWNTOWN, City, offset
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e


def _ws_url(city: City, driver: str, token: str) -> str:
    return f"ws://127.0.0.1:{city.platform.api_port}/v1/drivers/{driver}/ws?token={token}"


def test_driver_streams_pings_over_websocket_and_receives_its_offer(city: City) -> None:
    token = mint_token(city.secret, "driver", "ws-driver")
    with connect(_ws_url(city, "ws-driver", token), open_timeout=10) as ws:
        spot = offset(DOWNTOWN, 200, 0)
        ws.send(
            orjson.dumps({"lat": spot[0], "lon": spot[1], "ts": int(time.time() * 1000)}).decode()
        )
        response = city.http.put(
            "/v1/drivers/ws-driver/status",
            json={"status": "available"},
            headers=city.token("driver", "ws-driver"),
        )
        assert response.status_code == 200
        deadline = time.monotonic() + 10
        while (
            city.http.get("/v1/drivers/ws-driver", headers=city.token("ops", "t")).json().get("lat")
            is None
        ):
            assert time.monotonic() < deadline, "ping sent over the socket never arrived"
            time.sleep(0.05)
        ride_id = city.request_ride("ws-rider", DOWNTOWN, offset(DOWNTOWN, -2000, 0)).json()[
            "ride_id"
        ]
        message = _next_besides_eta(ws, timeout_s=15)
        assert message["type"] == "ride.offered" and message["ride_id"] == ride_id
        assert city.act("ws-driver", ride_id, "accept").status_code == 200
        matched = _next_besides_eta(ws, timeout_s=10)
        assert (matched["type"], matched["ride_id"]) == ("ride.matched", ride_id)
        ws.send("not json")
        assert _next_besides_eta(ws, timeout_s=5)["type"] == "error"


def _next_besides_eta(ws: ClientConnection, *, timeout_s: float) -> dict[str, Any]:
    """The next message that is not an ETA update: eta publishes those for the matched ride on
    its own schedule, so one may arrive before the reply to what the driver just sent."""
    deadline = time.monotonic() + timeout_s
    while True:
        message: dict[str, Any] = orjson.loads(
            ws.recv(timeout=max(0.0, deadline - time.monotonic()))
        )
        if message["type"] != "eta.updated":
            return message


def _refused_at_handshake(url: str, **options: Any) -> Response:
    """The HTTP answer to a WebSocket upgrade the server refused (never a socket opened and then
    closed, never a timeout)."""
    with pytest.raises(InvalidStatus) as refused, connect(url, open_timeout=5, **options) as ws:
        ws.recv(timeout=5)
    return refused.value.response


def test_websocket_refuses_another_drivers_token_and_foreign_origins(shared_city: City) -> None:
    """docs/security.md: no token, wrong audience, wrong driver or a foreign Origin is answered
    at the upgrade with HTTP 403."""
    city = shared_city
    base = f"ws://127.0.0.1:{city.platform.api_port}/v1/drivers/ws-victim/ws"
    own = mint_token(city.secret, "driver", "ws-victim")
    refusals = {
        "another driver's token": _refused_at_handshake(
            _ws_url(city, "ws-victim", mint_token(city.secret, "driver", "someone-else"))
        ),
        "a foreign origin": _refused_at_handshake(
            _ws_url(city, "ws-victim", own), origin=Origin("http://evil.example")
        ),
        "no token": _refused_at_handshake(base),
        "a dashboard token": _refused_at_handshake(
            _ws_url(city, "ws-victim", mint_dashboard_link(city.secret, "viewer-1"))
        ),
        "a rider token": _refused_at_handshake(
            _ws_url(city, "ws-victim", mint_token(city.secret, "rider", "ws-victim"))
        ),
    }
    statuses = {why: response.status_code for why, response in refusals.items()}
    assert statuses == dict.fromkeys(refusals, 403), statuses


def test_one_driver_socket_past_the_tokens_cap_gets_429_with_retry_after_5(
    shared_city: City,
) -> None:
    """docs/security.md, "WebSocket caps": one more socket than RIDEPULSE_DRIVER_WS_PER_TOKEN
    (default 2) on one token is refused at the upgrade with 429, `Retry-After: 5` and the JSON
    error body; another token is not refused, and a closed socket frees its slot."""
    city = shared_city
    token = mint_token(city.secret, "driver", "ws-capped")
    url = _ws_url(city, "ws-capped", token)
    with connect(url, open_timeout=5), connect(url, open_timeout=5):
        refused = _refused_at_handshake(url)
        assert refused.status_code == 429, refused
        assert refused.headers["Retry-After"] == "5", refused.headers
        assert orjson.loads(refused.body)["error"] == "rate_limited", refused.body
        other = mint_token(city.secret, "driver", "ws-capped-too")
        with connect(_ws_url(city, "ws-capped-too", other), open_timeout=5):
            pass  # another token has slots of its own

    def reopened() -> bool:  # the server frees the slots once it sees the closes
        try:
            with connect(url, open_timeout=5), connect(url, open_timeout=5):
                return True
        except InvalidStatus as exc:
            if exc.response.status_code != 429:
                raise  # only the cap may refuse this token's sockets
            return False

    wait_until_sync(reopened, timeout_s=10, what="the closed sockets' slots to be freed")
