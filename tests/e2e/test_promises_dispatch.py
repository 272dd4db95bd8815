"""Two documented dispatch promises, end to end on a real `ridepulse up`:
- docs/architecture.md: "the sweeper retries waiting rides every second as drivers free up" —
  a ride requested while nobody nearby is available is offered to a driver who frees up later;
- README (the API table): the driver's WebSocket pushes "offers, assignment changes, ETAs" —
  a matched driver hears its ride's ETAs as it moves, and the rider's cancellation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.sync.client import ClientConnection, connect

from ridepulse.auth import mint_token
from ridepulse.keys import MarketKeys
from tests.e2e.conftest import running_city
from tests.support.api import DOWNTOWN, City, offset
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e
SF = MarketKeys("sf")  # the platform's default key prefix, "rp"
DROPOFF = offset(DOWNTOWN, -2500, 800)
# The sweeper passes every 0.25 s and retries a waiting ride once a second
# (matching/sweeper.py): an offer within this long of the driver freeing up keeps the promise.
RETRY_PROMISE_S = 5.0


def _driver_lookup(city: City, driver: str) -> dict[str, Any] | None:
    """GET /v1/drivers/{driver} as ops; None while the driver is unknown (404 until
    matching-geo has read its first ping: the 202 only says the ping is on the stream)."""
    response = city.http.get(f"/v1/drivers/{driver}", headers=city.token("ops", "tests"))
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def _driver_view(city: City, driver: str) -> dict[str, Any]:
    view = _driver_lookup(city, driver)
    assert view is not None, f"driver {driver} not found"
    return view


def _stream_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _newest_ride_entry(city: City) -> tuple[int, int]:
    """The id of the newest entry on the market's ride stream."""
    client = city.platform.redis_client()
    try:
        newest: Any = client.xrevrange(SF.rides, count=1)
    finally:
        client.close()
    assert newest, f"{SF.rides} is empty"
    return _stream_id(newest[0][0])


def _matching_has_handled(city: City, entry: tuple[int, int]) -> bool:
    """The matching group has read past `entry` and acknowledged all it read."""
    client = city.platform.redis_client()
    try:
        groups: Any = client.xinfo_groups(SF.rides)
    finally:
        client.close()
    for group in groups:
        name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
        if name == "matching":
            delivered = _stream_id(group["last-delivered-id"])
            return delivered >= entry and int(group["pending"]) == 0
    raise AssertionError(f"no matching group on {SF.rides}: {groups}")


def test_waiting_ride_is_offered_to_a_driver_who_goes_available_after_the_request(
    tmp_path: Path,
) -> None:
    # a 30 s deadline (not FAST_CLOCKS' 8 s), so a loaded machine cannot expire the ride first
    with running_city(tmp_path / "city", RIDEPULSE_RIDE_DEADLINE_S="30") as city:
        driver, spot = "late-driver", offset(DOWNTOWN, 400, 0)
        assert city.ping(driver, *spot).status_code == 202  # nearby, but not available

        def located_view() -> dict[str, Any] | None:
            view = _driver_lookup(city, driver)
            return view if view is not None and view["lat"] is not None else None

        located = wait_until_sync(
            located_view,
            timeout_s=10,
            what="the offline driver's ping to be recorded",
        )
        assert located["status"] == "offline", located

        response = city.request_ride("waiting-rider", DOWNTOWN, DROPOFF)
        assert response.status_code == 202, response.text
        ride_id = response.json()["ride_id"]
        requested = _newest_ride_entry(city)  # the request is on the stream before the 202
        wait_until_sync(
            lambda: _matching_has_handled(city, requested),
            timeout_s=10,
            what="matching to handle ride.requested (and find nobody)",
        )
        # nobody is free: the ride waits through several sweeper retries, offered to no one
        waited_until = time.monotonic() + 2.5
        while time.monotonic() < waited_until:
            waiting = city.ride(ride_id)
            assert waiting["status"] == "requested", f"the ride should wait: {waiting}"
            assert _driver_view(city, driver)["offer"] is None
            time.sleep(0.1)
        assert [t["status"] for t in waiting["timeline"]] == ["requested"], waiting

        city.go_available(driver, *spot)
        freed_at = time.monotonic()
        offered = city.wait_ride(
            ride_id,
            lambda r: r["status"] == "offered",
            timeout_s=RETRY_PROMISE_S,
            what=f"the sweeper to offer the waiting ride within {RETRY_PROMISE_S}s of a driver",
        )
        print(f"offered {time.monotonic() - freed_at:.2f}s after the driver went available")
        assert [t["status"] for t in offered["timeline"]] == ["requested", "offered"], offered
        view = _driver_view(city, driver)
        assert view["status"] == "offered" and view["offer"]["ride_id"] == ride_id, view
        assert city.act(driver, ride_id, "accept").json()["status"] == "matched"


class _Inbox:
    """Every message a driver's socket pushed, in arrival order, so a wait for one kind never
    loses another that came first (eta.updated may come before or after ride.matched)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []

    def next_of(
        self, kind: str, ride_id: str, *, since: int, timeout_s: float
    ) -> tuple[int, dict[str, Any]] | None:
        """The first `kind` message about `ride_id` at index `since` or later, reading the
        socket for up to `timeout_s`; None if none came."""
        deadline = time.monotonic() + timeout_s
        index = since
        while True:
            while index < len(self.messages):
                message = self.messages[index]
                if message["type"] == kind and message.get("ride_id") == ride_id:
                    return index, message
                index += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                raw = self.ws.recv(timeout=remaining)
            except TimeoutError:
                return None
            pushed: dict[str, Any] = orjson.loads(raw)
            assert pushed["type"] != "error", f"the socket answered an error: {pushed}"
            self.messages.append(pushed)

    def expect(
        self, kind: str, ride_id: str, *, since: int = 0, timeout_s: float = 15
    ) -> tuple[int, dict[str, Any]]:
        found = self.next_of(kind, ride_id, since=since, timeout_s=timeout_s)
        assert found is not None, (
            f"no {kind} for ride {ride_id} within {timeout_s}s; the socket pushed: {self.messages}"
        )
        return found


def _ping(spot: tuple[float, float]) -> str:
    return orjson.dumps({"lat": spot[0], "lon": spot[1], "ts": int(time.time() * 1000)}).decode()


def test_matched_driver_socket_pushes_its_rides_etas_and_the_riders_cancellation(
    city: City,
) -> None:
    driver, rider = "ws-eta-driver", "ws-eta-rider"
    far, near = offset(DOWNTOWN, 1500, 0), offset(DOWNTOWN, 150, 0)
    city.go_available(driver, *far)
    token = mint_token(city.secret, "driver", driver)
    url = f"ws://127.0.0.1:{city.platform.api_port}/v1/drivers/{driver}/ws?token={token}"
    with connect(url, open_timeout=10) as ws:
        inbox = _Inbox(ws)
        response = city.request_ride(rider, DOWNTOWN, DROPOFF)
        assert response.status_code == 202, response.text
        ride_id = response.json()["ride_id"]
        inbox.expect("ride.offered", ride_id)
        assert city.act(driver, ride_id, "accept").json()["status"] == "matched"
        inbox.expect("ride.matched", ride_id)

        # eta announces the pickup ETA as the ride is matched …
        first_at, first = inbox.expect("eta.updated", ride_id)
        assert (first["driver_id"], first["phase"]) == (driver, "pickup"), first
        assert first["eta_s"] > 0, first

        # … and again as the driver moves (throttled to one per 5 s and a 10 % or 15 s change):
        # drive close to the pickup, pinging over the socket, until the shorter ETA is pushed
        def moved_eta() -> tuple[int, dict[str, Any]] | None:
            ws.send(_ping(near))
            return inbox.next_of("eta.updated", ride_id, since=first_at + 1, timeout_s=0.5)

        _, moved = wait_until_sync(
            moved_eta, timeout_s=20, interval_s=0, what="an ETA update after the driver moved"
        )
        assert (moved["driver_id"], moved["phase"]) == (driver, "pickup"), moved
        assert moved["eta_s"] < first["eta_s"], f"closer, so sooner: {first} then {moved}"
        assert city.ride(ride_id)["pickup_eta_s"] == moved["eta_s"], "the ride shows the ETA"

        cancel = city.http.post(f"/v1/rides/{ride_id}/cancel", headers=city.token("rider", rider))
        assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled", cancel.text
        _, cancelled = inbox.expect("ride.cancelled", ride_id, timeout_s=10)
        assert (cancelled["by"], cancelled["driver_id"]) == ("rider", driver), cancelled
