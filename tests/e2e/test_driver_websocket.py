"""A driver's WebSocket: pings in, offers and assignment changes out."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from ridepulse.auth import mint_token
from tests.support.api import DOWNTOWN, City, offset

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


def test_websocket_refuses_another_drivers_token_and_foreign_origins(city: City) -> None:
    token = mint_token(city.secret, "driver", "someone-else")
    # Refused at the handshake or closed by the server: a websockets error, never a timeout.
    with (
        pytest.raises(WebSocketException),
        connect(_ws_url(city, "ws-victim", token), open_timeout=5) as ws,
    ):
        ws.recv(timeout=5)
    own = mint_token(city.secret, "driver", "ws-victim")
    with (
        pytest.raises(WebSocketException),
        connect(
            _ws_url(city, "ws-victim", own),
            origin=Origin("http://evil.example"),
            open_timeout=5,
        ) as ws,
    ):
        ws.recv(timeout=5)
