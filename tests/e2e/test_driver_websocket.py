"""A driver's WebSocket: pings in, offers and assignment changes out."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Response
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from ingest.routes_driver_ws import MAX_FRAME_BYTES
from ridepulse.auth import mint_dashboard_link, mint_token
from tests.e2e.conftest import running_city
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


def test_a_refused_upgrade_says_why_in_the_apis_json(shared_city: City) -> None:
    """Still 403 for who may not connect, but with the API's error body: an expired token is
    told apart from another driver's (the upgrade used to be a bare 403). A malformed driver id
    is the 422 the HTTP routes give, where it used to open a socket for an ops token."""
    city = shared_city
    expired = mint_token(city.secret, "driver", "ws-late", ttl_s=-5)
    late = _refused_at_handshake(_ws_url(city, "ws-late", expired))
    assert late.status_code == 403
    assert orjson.loads(late.body)["error"] == "forbidden"
    assert "expired" in orjson.loads(late.body)["detail"], late.body
    other = _refused_at_handshake(
        _ws_url(city, "ws-late", mint_token(city.secret, "driver", "someone-else"))
    )
    assert orjson.loads(other.body)["detail"] == "a driver may only connect as itself"
    ops = mint_token(city.secret, "ops", "t")
    # braces, and ids outside the documented ASCII pattern (été, a fullwidth digit), which the
    # HTTP routes refuse the same way
    for driver_id in ("a%7Bb%7D", quote("été"), quote("d-4２")):
        bad_id = _refused_at_handshake(_ws_url(city, driver_id, ops))
        assert bad_id.status_code == 422, (driver_id, bad_id)
        assert orjson.loads(bad_id.body)["field"] == "driver_id", bad_id.body


def test_the_cap_counts_the_token_however_the_header_spells_it(shared_city: City) -> None:
    """Two sockets with ?token=, then the same token as `bearer …` or `Bearer  …` in the header,
    or with a `=` after its signature (PyJWT's base64 accepts it): refused, as the cap is per
    token (it counted the header's text, then the token's, so each spelling had a cap of its
    own)."""
    city = shared_city
    token = mint_token(city.secret, "driver", "ws-spelling")
    url = _ws_url(city, "ws-spelling", token)
    bare = f"ws://127.0.0.1:{city.platform.api_port}/v1/drivers/ws-spelling/ws"
    with connect(url, open_timeout=5), connect(url, open_timeout=5):
        spellings = (f"bearer {token}", f"BEARER {token}", f"Bearer  {token}", f"Bearer {token}=")
        for spelling in spellings:
            refused = _refused_at_handshake(bare, additional_headers={"Authorization": spelling})
            assert refused.status_code == 429, (spelling, refused)


def test_binary_frames_are_read_as_json_and_every_error_is_text(city: City) -> None:
    """A binary frame used to drop the socket (receive_text's KeyError); errors came back as
    binary frames but for "not JSON"."""
    token = mint_token(city.secret, "driver", "ws-binary")
    spot = offset(DOWNTOWN, 300, 0)
    with connect(_ws_url(city, "ws-binary", token), open_timeout=10) as ws:
        ws.send(orjson.dumps({"lat": spot[0], "lon": spot[1], "ts": int(time.time() * 1000)}))

        def arrived() -> bool:
            read = city.http.get("/v1/drivers/ws-binary", headers=city.token("ops", "t"))
            lat = read.json().get("lat")
            return lat is not None and abs(float(lat) - spot[0]) < 1e-4

        wait_until_sync(arrived, timeout_s=10, what="the ping sent in a binary frame")
        codes = []
        for bad in (b"\xff\xfe", "not json", orjson.dumps({"lat": 91, "lon": 0}), "x" * 5000):
            ws.send(bad)
            reply = ws.recv(timeout=5)
            assert isinstance(reply, str), reply  # a text frame
            assert orjson.loads(reply)["type"] == "error", reply
            codes.append(orjson.loads(reply)["error"])
        assert codes == ["invalid_input"] * 3 + ["payload_too_large"], codes


MESSAGE_TOO_BIG = 1009


def test_a_frame_past_the_cap_closes_the_socket_with_1009_before_it_is_read(
    shared_city: City,
) -> None:
    """uvicorn read a frame of up to 16 MiB whole before the socket's 4 KiB check answered it
    with an error frame (4 sockets x 16 MiB: ingest 81 → 182 MB). A frame over the message
    limit but within the frame cap still gets the error frame; one past the cap, here 1 MiB,
    ends the socket with 1009 (message too big) from its header alone."""
    city = shared_city
    token = mint_token(city.secret, "driver", "ws-huge")
    with connect(_ws_url(city, "ws-huge", token), open_timeout=10) as ws:
        ws.send("x" * MAX_FRAME_BYTES)
        reply = orjson.loads(ws.recv(timeout=5))
        assert (reply["type"], reply["error"]) == ("error", "payload_too_large"), reply
        with contextlib.suppress(ConnectionClosed):  # closed while the frame is still going
            ws.send(b"x" * 2**20)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)  # a reply (the old answer) fails the test here
    assert closed.value.rcvd is not None, f"closed without a close frame: {closed.value!r}"
    assert closed.value.rcvd.code == MESSAGE_TOO_BIG, closed.value.rcvd


def test_a_ping_over_the_drivers_rate_gets_the_error_code_and_retry_after_in_its_frame(
    shared_city: City,
) -> None:
    """A ping the API refuses for now (over the driver's rate, or shed) says so on the socket
    as HTTP does with 429 + Retry-After: `error` and `retry_after_s`, so the app can pause."""
    city = shared_city
    token = mint_token(city.secret, "driver", "ws-eager")
    spot = offset(DOWNTOWN, 400, 0)
    with connect(_ws_url(city, "ws-eager", token), open_timeout=10) as ws:
        for _ in range(40):  # twice the burst (RIDEPULSE_PING_BURST, 20), sent at once
            ping = {"lat": spot[0], "lon": spot[1], "ts": int(time.time() * 1000)}
            ws.send(orjson.dumps(ping).decode())
        refusal = _next_besides_eta(ws, timeout_s=10)
    assert refusal["type"] == "error", refusal
    assert refusal["error"] == "overloaded", refusal  # the code HTTP gives it
    assert isinstance(refusal["retry_after_s"], int) and refusal["retry_after_s"] >= 1, refusal


LIVE_OFFER_FIELDS = {
    "type",
    "ride_id",
    "driver_id",
    "pickup_eta_s",
    "expires_at",
    "attempt",
    "version",
}


def test_a_socket_opened_while_the_driver_holds_an_offer_or_a_ride_hears_of_it_first(
    tmp_path: Path,
) -> None:
    """The notifier fans out what it reads after a socket subscribes: an offer made while the
    driver's socket was down never reached it, and the reopened socket heard only the offer's
    timeout (the hunt: 8 of 165 offers in a reconnect-heavy burst reached no socket). A socket
    now opens with the offer the driver holds, as the live frame, or the ride it is on."""
    # an offer that waits for the reopened socket (the suite's 2 s would time out under load)
    with running_city(
        tmp_path / "city", RIDEPULSE_OFFER_TIMEOUT_S="30", RIDEPULSE_RIDE_DEADLINE_S="60"
    ) as city:
        driver = "ws-away"
        token = mint_token(city.secret, "driver", driver)
        spot = offset(DOWNTOWN, 200, 0)
        with connect(_ws_url(city, driver, token), open_timeout=10) as ws:
            ping = {"lat": spot[0], "lon": spot[1], "ts": int(time.time() * 1000)}
            ws.send(orjson.dumps(ping).decode())
            wait_until_sync(
                lambda: _driver(city, driver).get("lat") is not None,
                timeout_s=10,
                what="the socket's ping to arrive",
            )
        # the socket is closed: the driver goes available and is offered a ride meanwhile
        city.go_available(driver, *spot)
        ride_id = city.request_ride("ws-away-rider", DOWNTOWN, offset(DOWNTOWN, -2000, 0)).json()[
            "ride_id"
        ]
        offer = wait_until_sync(
            lambda: _driver(city, driver).get("offer"), timeout_s=15, what="the offer"
        )
        with connect(_ws_url(city, driver, token), open_timeout=10) as ws:
            first = _next_besides_eta(ws, timeout_s=5)
        assert set(first) == LIVE_OFFER_FIELDS, first
        assert (first["type"], first["ride_id"], first["driver_id"]) == (
            "ride.offered",
            ride_id,
            driver,
        )
        assert first["expires_at"] == offer["expires_at"]
        assert first["version"] == city.ride(ride_id)["version"]

        # accepted from another screen while the socket was down: the next socket hears it too
        assert city.act(driver, ride_id, "accept").status_code == 200
        with connect(_ws_url(city, driver, token), open_timeout=10) as ws:
            first = _next_besides_eta(ws, timeout_s=5)
        assert (first["type"], first["ride_id"], first["driver_id"]) == (
            "ride.matched",
            ride_id,
            driver,
        )


def _driver(city: City, driver: str) -> dict[str, Any]:
    view: dict[str, Any] = city.http.get(
        f"/v1/drivers/{driver}", headers=city.token("ops", "t")
    ).json()
    return view


def test_a_driver_socket_is_not_compressed_though_the_client_offers_it(shared_city: City) -> None:
    """The client offers permessage-deflate, as websockets and browsers do; ingest declines it:
    frames of ~100 bytes gain nothing, and each socket's zlib context cost ~46 KB."""
    city = shared_city
    token = mint_token(city.secret, "driver", "ws-plain")
    with connect(_ws_url(city, "ws-plain", token), open_timeout=10) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers, ws.response.headers
