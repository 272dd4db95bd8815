"""docs/security.md's roles table, row by row, through the real HTTP API and driver WebSocket.

Each case is one cell of the table: a role, the column it is in (may / may not), the doc's
words, one operation and the driver or ride in the state that operation needs. "may" must
succeed (2xx, or the socket opens) with its effect visible afterwards; a refusal must change
nothing. The API refuses in two ways, both asserted: a role-gated route answers 403 `forbidden`
naming the role; a route on a ride the caller may not see answers 404 exactly as for a missing
ride (README: "anyone else gets 404, like a missing ride"), so a refusal never tells a
stranger that a ride exists. The driver WebSocket refuses at the upgrade with HTTP 403.

The rider row and the driver row's own-id refusals (pings, status, driver read, socket) are
covered by test_api_guards.py, test_rider_contracts.py, test_driver_websocket.py and
test_ingest_in_process.py; here the driver row adds other drivers' offers and rides.

One platform for the module; every case makes its own drivers and rides (fresh ids) and,
when it ends, cancels its rides and takes its drivers offline, so matching offers a case's
ride to the only available driver: that case's own."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ridepulse.auth import mint_token
from tests.e2e.conftest import running_city
from tests.support.api import DOWNTOWN, City, offset
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e

DROPOFF = offset(DOWNTOWN, -2000, 500)
# An offer and an unmatched ride must not move under a refused action on a slow machine
# (FAST_CLOCKS's 2 s offer would): "nothing changed" is then the refusal's doing, not the clock's.
CLOCKS = {"RIDEPULSE_OFFER_TIMEOUT_S": "120", "RIDEPULSE_RIDE_DEADLINE_S": "240"}
WAIT_S = 15.0
FLEET_BATCH = 3  # drivers in one fleet batch

Actor = Literal["fleet", "ops", "another driver", "its driver"]
Column = Literal["may", "may not", "not in its may column"]
Expect = Literal["ok", "forbidden", "hidden"]  # hidden: 404, exactly as for a missing ride
Needs = Literal[
    "new driver",
    "seen driver",
    "available driver",
    "trip",
    "requested",
    "offered",
    "matched",
    "driver_arrived",
    "started",
]


@dataclass(frozen=True)
class Target:
    """What a case acts on: a driver, and a ride when the operation needs one."""

    driver_id: str = ""
    ride_id: str = ""
    rider_id: str = ""


@dataclass(frozen=True)
class Answer:
    status: int  # 101 when the WebSocket opened
    body: dict[str, Any]


@dataclass
class Scene:
    """One case's drivers and rides on the module's city, given back when the case ends."""

    city: City
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    drivers: list[str] = field(default_factory=list)
    rides: list[str] = field(default_factory=list)
    _count: int = 0

    def name(self, kind: str) -> str:
        self._count += 1
        return f"rm-{kind}{self._count}-{self.tag}"

    def new_driver(self) -> str:
        driver = self.name("d")
        self.drivers.append(driver)
        return driver

    def ops(self) -> dict[str, str]:
        """The scene's own ops token for setup and checks (not the token under test)."""
        return self.city.token("ops", f"rm-setup-{self.tag}")

    def token(self, actor: Actor, target: Target) -> tuple[str, str]:
        """(role, token) of the actor a case sends its operation as."""
        role, subject = {
            "fleet": ("fleet", f"rm-gateway-{self.tag}"),
            "ops": ("ops", f"rm-operator-{self.tag}"),
            "another driver": ("driver", self.new_driver()),
            "its driver": ("driver", target.driver_id),
        }[actor]
        return role, mint_token(self.city.secret, role, subject)

    def driver_view(self, driver: str) -> httpx.Response:
        return self.city.http.get(f"/v1/drivers/{driver}", headers=self.ops())

    def wait_position(self, driver: str, spot: tuple[float, float]) -> dict[str, Any]:
        def there() -> dict[str, Any] | None:
            view = self.driver_view(driver)
            if view.status_code != 200:
                return None
            body: dict[str, Any] = view.json()
            close = body.get("lat") is not None and (
                abs(body["lat"] - spot[0]) < 1e-6 and abs(body["lon"] - spot[1]) < 1e-6
            )
            return body if close else None

        return wait_until_sync(there, timeout_s=WAIT_S, what=f"{driver}'s position at {spot}")

    def build(self, needs: Needs) -> Target:
        """A fresh driver or ride in the state `needs` names."""
        if needs == "trip":
            return Target()
        driver = self.new_driver()
        if needs == "new driver":
            return Target(driver)
        spot = offset(DOWNTOWN, 100, 0)
        if needs == "seen driver":
            assert self.city.ping(driver, *spot).status_code == 202
            self.wait_position(driver, spot)
            return Target(driver)
        if needs == "requested":  # no driver: no case leaves one available
            return self._request(driver="")
        self.city.go_available(driver, *spot)
        # available with a position stored: matching-geo has put it in the geo index
        assert self.wait_position(driver, spot)["status"] == "available"
        if needs == "available driver":
            return Target(driver)
        target = self._request(driver)
        self.city.wait_ride(target.ride_id, lambda r: r["status"] == "offered", WAIT_S, "offer")
        offer = self.driver_view(driver).json()["offer"]
        assert offer is not None and offer["ride_id"] == target.ride_id, offer
        steps = {"matched": 1, "driver_arrived": 2, "started": 3}.get(needs, 0)
        for action in ("accept", "arrived", "start")[:steps]:
            moved = self.city.act(driver, target.ride_id, action)
            assert moved.status_code == 200, f"{action}: {moved.text}"
        assert self.city.ride(target.ride_id)["status"] == needs
        return target

    def _request(self, driver: str) -> Target:
        rider = self.name("r")
        response = self.city.request_ride(rider, DOWNTOWN, DROPOFF)
        assert response.status_code == 202, response.text
        self.rides.append(response.json()["ride_id"])
        return Target(driver, response.json()["ride_id"], rider)

    def snapshot(self, target: Target) -> tuple[Any, ...]:
        """What a refused operation must leave as it was (never the ETAs: eta moves those)."""
        ride: tuple[Any, ...] = ()
        if target.ride_id:
            r = self.city.ride(target.ride_id)
            ride = (r["status"], r["version"], r["driver_id"], r["cancelled_by"])
        view = self.driver_view(target.driver_id) if target.driver_id else None
        driver: tuple[Any, ...] = ()
        if view is not None:
            body = view.json()
            driver = (view.status_code, body.get("status"), body.get("ride_id"), body.get("offer"))
        return ride + driver

    def give_back(self) -> None:
        """Cancel the case's rides (409: already over) and take its drivers offline."""
        for ride_id in self.rides:
            cancelled = self.city.http.post(f"/v1/rides/{ride_id}/cancel", headers=self.ops())
            assert cancelled.status_code in (200, 409), cancelled.text
        for driver in self.drivers:
            offline = self.city.http.put(
                f"/v1/drivers/{driver}/status", json={"status": "offline"}, headers=self.ops()
            )
            assert offline.status_code == 200, f"{driver}: {offline.text}"


# --- the operations -------------------------------------------------------------------------

Send = Callable[[Scene, str, Target], Answer]
Verify = Callable[[Scene, Target, Answer], None]


@dataclass(frozen=True)
class Operation:
    name: str
    needs: Needs
    send: Send
    verify: Verify  # the effect a success must have


def _answer(response: httpx.Response) -> Answer:
    is_json = response.headers.get("content-type", "").startswith("application/json")
    return Answer(response.status_code, response.json() if is_json else {})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ping_body(spot: tuple[float, float]) -> dict[str, Any]:
    return {"lat": spot[0], "lon": spot[1], "ts": int(time.time() * 1000)}


BATCH_SPOT = offset(DOWNTOWN, 400, -300)


def _batch_drivers(target: Target) -> list[str]:
    return [f"{target.driver_id}.{i}" for i in range(FLEET_BATCH)]


def send_batch(scene: Scene, token: str, target: Target) -> Answer:
    pings = [
        {"driver_id": driver, **_ping_body(offset(BATCH_SPOT, 10 * i, 0))}
        for i, driver in enumerate(_batch_drivers(target))
    ]
    return _answer(
        scene.city.http.post("/v1/telemetry", json={"pings": pings}, headers=_bearer(token))
    )


def verify_batch(scene: Scene, target: Target, answer: Answer) -> None:
    assert (answer.body["accepted"], answer.body["rejected"]) == (FLEET_BATCH, 0), answer.body
    for i, driver in enumerate(_batch_drivers(target)):
        scene.wait_position(driver, offset(BATCH_SPOT, 10 * i, 0))


PING_SPOT = offset(DOWNTOWN, -400, 300)


def send_ping(scene: Scene, token: str, target: Target) -> Answer:
    url = f"/v1/drivers/{target.driver_id}/location"
    return _answer(scene.city.http.post(url, json=_ping_body(PING_SPOT), headers=_bearer(token)))


def verify_ping(scene: Scene, target: Target, answer: Answer) -> None:
    scene.wait_position(target.driver_id, PING_SPOT)


def _set_status(status: str) -> Send:
    def send(scene: Scene, token: str, target: Target) -> Answer:
        url = f"/v1/drivers/{target.driver_id}/status"
        return _answer(scene.city.http.put(url, json={"status": status}, headers=_bearer(token)))

    return send


def _verify_status(status: str) -> Verify:
    def verify(scene: Scene, target: Target, answer: Answer) -> None:
        assert answer.body["status"] == status, answer.body
        assert scene.driver_view(target.driver_id).json()["status"] == status

    return verify


def send_read_driver(scene: Scene, token: str, target: Target) -> Answer:
    return _answer(scene.city.http.get(f"/v1/drivers/{target.driver_id}", headers=_bearer(token)))


def verify_read_driver(scene: Scene, target: Target, answer: Answer) -> None:
    assert answer.body["driver_id"] == target.driver_id and answer.body["lat"] is not None


SOCKET_SPOT = offset(DOWNTOWN, 700, 0)  # > 20 m from the setup ping: matching-geo writes it


def send_socket(scene: Scene, token: str, target: Target) -> Answer:
    """Open the driver's socket; once open, send a ping, then a line that is not JSON: the
    socket answers in order, so the "not JSON" error coming first means the ping was taken."""
    port = scene.city.platform.api_port
    url = f"ws://127.0.0.1:{port}/v1/drivers/{target.driver_id}/ws?token={token}"
    try:
        with connect(url, open_timeout=10) as ws:
            ws.send(orjson.dumps(_ping_body(SOCKET_SPOT)).decode())
            ws.send("not json")
            reply: dict[str, Any] = orjson.loads(ws.recv(timeout=WAIT_S))
    except InvalidStatus as refused:
        return Answer(refused.response.status_code, {})
    return Answer(101, reply)


def verify_socket(scene: Scene, target: Target, answer: Answer) -> None:
    assert answer.body == {"type": "error", "error": "invalid_input", "detail": "not JSON"}, (
        answer.body
    )
    scene.wait_position(target.driver_id, SOCKET_SPOT)


def send_quote(scene: Scene, token: str, target: Target) -> Answer:
    params = {
        "pickup_lat": DOWNTOWN[0],
        "pickup_lon": DOWNTOWN[1],
        "dropoff_lat": DROPOFF[0],
        "dropoff_lon": DROPOFF[1],
    }
    return _answer(scene.city.http.get("/v1/quote", params=params, headers=_bearer(token)))


def verify_quote(scene: Scene, target: Target, answer: Answer) -> None:
    assert answer.body["fare"] > 0 and answer.body["quote_id"], answer.body


def send_request(scene: Scene, token: str, target: Target) -> Answer:
    body = {
        "pickup": {"lat": DOWNTOWN[0], "lon": DOWNTOWN[1]},
        "dropoff": {"lat": DROPOFF[0], "lon": DROPOFF[1]},
    }
    answer = _answer(scene.city.http.post("/v1/rides", json=body, headers=_bearer(token)))
    if answer.status == 202:  # not expected of any role here; given back all the same
        scene.rides.append(answer.body["ride_id"])
    return answer


def unreachable(scene: Scene, target: Target, answer: Answer) -> None:
    raise AssertionError(f"no row expects this to succeed: {answer}")


def send_read_ride(scene: Scene, token: str, target: Target) -> Answer:
    return _answer(scene.city.http.get(f"/v1/rides/{target.ride_id}", headers=_bearer(token)))


def verify_read_ride(scene: Scene, target: Target, answer: Answer) -> None:
    body = answer.body
    assert (body["ride_id"], body["rider_id"]) == (target.ride_id, target.rider_id), body
    assert (body["status"], body["driver_id"]) == ("matched", target.driver_id), body


def _ride_action(action: str) -> Send:
    def send(scene: Scene, token: str, target: Target) -> Answer:
        url = f"/v1/rides/{target.ride_id}/{action}"
        return _answer(scene.city.http.post(url, headers=_bearer(token)))

    return send


def verify_cancelled(scene: Scene, target: Target, answer: Answer) -> None:
    assert (answer.body["status"], answer.body["cancelled_by"]) == ("cancelled", "ops")
    assert scene.city.ride(target.ride_id)["status"] == "cancelled"
    if target.driver_id:  # the driver is freed of the ride
        view = scene.driver_view(target.driver_id).json()
        assert view["ride_id"] is None and view["status"] == "available", view


BATCH = Operation("post a batch of pings", "new driver", send_batch, verify_batch)
PING = Operation("ping for a driver", "new driver", send_ping, verify_ping)
SET_AVAILABLE = Operation(
    "set a driver available", "seen driver", _set_status("available"), _verify_status("available")
)
SET_OFFLINE = Operation(
    "set a driver offline", "available driver", _set_status("offline"), _verify_status("offline")
)
READ_DRIVER = Operation("read a driver", "seen driver", send_read_driver, verify_read_driver)
OPEN_SOCKET = Operation("open a driver's WebSocket", "seen driver", send_socket, verify_socket)
QUOTE = Operation("get a quote", "trip", send_quote, verify_quote)
REQUEST = Operation("request a ride", "trip", send_request, unreachable)
READ_RIDE = Operation("read a matched ride", "matched", send_read_ride, verify_read_ride)
CANCEL_REQUESTED = Operation(
    "cancel a requested ride", "requested", _ride_action("cancel"), verify_cancelled
)
CANCEL_MATCHED = Operation(
    "cancel a matched ride", "matched", _ride_action("cancel"), verify_cancelled
)
CANCEL_STARTED = Operation(
    "cancel a started ride", "started", _ride_action("cancel"), verify_cancelled
)
ACCEPT = Operation("accept an offer", "offered", _ride_action("accept"), unreachable)
DECLINE = Operation("decline an offer", "offered", _ride_action("decline"), unreachable)
ARRIVED = Operation("arrive at a pickup", "matched", _ride_action("arrived"), unreachable)
START = Operation("start a trip", "driver_arrived", _ride_action("start"), unreachable)
COMPLETE = Operation("complete a trip", "started", _ride_action("complete"), unreachable)


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    actor: Actor
    column: Column
    words: str  # the doc's words for the cell
    operation: Operation
    expect: Expect

    @property
    def id(self) -> str:
        return f"{self.actor} | {self.column} | {self.operation.name}".replace(" ", "_")


FLEET_PINGS = "post batches of pings for many drivers and single pings for any driver"
FLEET_RIDES = "ride actions"
FLEET_ONLY_PINGS = "its may column is pings only: no driver status, reads or sockets"
OPS = (
    "read any ride or driver, set any driver's status, cancel any ride, get quotes, open any "
    "driver's WebSocket, post pings"
)
OPS_NOT_A_PARTY = "ops is no rider and no driver: it neither requests nor accepts rides"
DRIVER_OTHERS = "act for another driver (403), read other drivers' rides"
DRIVER_OWN = "read itself and its rides"

ROWS = [
    # fleet: a telemetry gateway
    Row("fleet", "may", FLEET_PINGS, BATCH, "ok"),
    Row("fleet", "may", FLEET_PINGS, PING, "ok"),
    Row("fleet", "may not", FLEET_RIDES, REQUEST, "forbidden"),
    Row("fleet", "may not", FLEET_RIDES, QUOTE, "forbidden"),
    Row("fleet", "may not", FLEET_RIDES, READ_RIDE, "hidden"),
    Row("fleet", "may not", FLEET_RIDES, CANCEL_MATCHED, "hidden"),
    Row("fleet", "may not", FLEET_RIDES, ACCEPT, "hidden"),
    Row("fleet", "may not", FLEET_RIDES, DECLINE, "hidden"),
    Row("fleet", "may not", FLEET_RIDES, ARRIVED, "hidden"),
    Row("fleet", "may not", FLEET_RIDES, START, "hidden"),
    Row("fleet", "may not", FLEET_RIDES, COMPLETE, "hidden"),
    Row("fleet", "not in its may column", FLEET_ONLY_PINGS, SET_OFFLINE, "forbidden"),
    Row("fleet", "not in its may column", FLEET_ONLY_PINGS, READ_DRIVER, "forbidden"),
    Row("fleet", "not in its may column", FLEET_ONLY_PINGS, OPEN_SOCKET, "forbidden"),
    # ops: an operator's tool or script
    Row("ops", "may", OPS, READ_RIDE, "ok"),
    Row("ops", "may", OPS, READ_DRIVER, "ok"),
    Row("ops", "may", OPS, SET_AVAILABLE, "ok"),
    Row("ops", "may", OPS, SET_OFFLINE, "ok"),
    Row("ops", "may", OPS, CANCEL_REQUESTED, "ok"),
    Row("ops", "may", OPS, CANCEL_MATCHED, "ok"),
    Row("ops", "may", OPS, CANCEL_STARTED, "ok"),
    Row("ops", "may", OPS, QUOTE, "ok"),
    Row("ops", "may", OPS, OPEN_SOCKET, "ok"),
    Row("ops", "may", OPS, PING, "ok"),
    Row("ops", "may", OPS, BATCH, "ok"),
    Row("ops", "not in its may column", OPS_NOT_A_PARTY, REQUEST, "forbidden"),
    Row("ops", "not in its may column", OPS_NOT_A_PARTY, ACCEPT, "forbidden"),
    # driver: what test_api_guards.py and test_rider_contracts.py leave out
    Row("another driver", "may not", DRIVER_OTHERS, READ_RIDE, "hidden"),
    Row("another driver", "may not", DRIVER_OTHERS, ACCEPT, "hidden"),
    Row("another driver", "may not", DRIVER_OTHERS, DECLINE, "hidden"),
    Row("another driver", "may not", DRIVER_OTHERS, ARRIVED, "hidden"),
    Row("another driver", "may not", DRIVER_OTHERS, START, "hidden"),
    Row("another driver", "may not", DRIVER_OTHERS, COMPLETE, "hidden"),
    Row("another driver", "may not", DRIVER_OTHERS, CANCEL_MATCHED, "hidden"),
    Row("its driver", "may", DRIVER_OWN, READ_RIDE, "ok"),
]


@pytest.fixture(scope="module")
def role_city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    with running_city(tmp_path_factory.mktemp("roles") / "city", **CLOCKS) as city:
        yield city


@pytest.fixture
def scene(role_city: City) -> Iterator[Scene]:
    made = Scene(role_city)
    yield made
    made.give_back()


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_each_role_may_do_what_the_security_page_says_and_nothing_it_forbids(
    scene: Scene, row: Row
) -> None:
    operation = row.operation
    target = scene.build(operation.needs)
    role, token = scene.token(row.actor, target)
    before = scene.snapshot(target)
    answer = operation.send(scene, token, target)
    what = f"{row.actor} {row.column} ({row.words!r}): {operation.name}"
    if row.expect == "ok":
        assert 200 <= answer.status < 300 or answer.status == 101, f"{what}: {answer}"
        operation.verify(scene, target, answer)
        return
    if row.expect == "forbidden":
        assert answer.status == 403, f"{what}: {answer}"
        if operation is not OPEN_SOCKET:  # a refused upgrade is a bare HTTP 403
            assert answer.body["error"] == "forbidden" and role in answer.body["detail"], answer
    else:
        assert answer.status == 404, f"{what}: {answer}"
        missing = Target(target.driver_id, target.ride_id[:-4] + "0000", target.rider_id)
        alike = operation.send(scene, token, missing)
        assert alike.status == 404, f"{what}: a missing ride answered {alike}"
        assert answer.body["error"] == alike.body["error"] == "not_found", answer
        assert answer.body["detail"].replace(target.ride_id, "X") == alike.body["detail"].replace(
            missing.ride_id, "X"
        ), (answer, alike)
    assert scene.snapshot(target) == before, f"{what}: the refused call changed something"
