"""DriverUser: one simulated driver app, ticking once per ping interval.

Each tick: send a ping (HTTP or the driver WebSocket), learn of offers and ride changes (poll the
driver resource over HTTP; pushes over WS, with a slow poll as a safety net), then act on what the
DriverModel decides: answer an offer, report arrival, start, complete, or sign off for a while.
On stop it declines an open offer, finishes the ride in hand and goes offline, so a run never ends
with a ride that nobody will close.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from locust import constant_pacing, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

from loadtests.behaviours.driving import DriverModel, DriverState
from loadtests.behaviours.inbox import DriverInbox, Offer
from loadtests.behaviours.ledger import TERMINAL_STATUSES
from loadtests.behaviours.ping_pause import PingPause
from loadtests.runtime import runtime
from loadtests.users.api import Reply, call, get_ride
from loadtests.users.driver_socket import DriverSocket
from ridepulse.auth import mint_token
from ridepulse.markets import LatLon

WS_SAFETY_POLL_TICKS = 5  # over WS, still read the driver resource every 5th tick
DRAIN_STEPS = 4  # matched → arrived → started → completed, plus one re-read
DRAIN_ATTEMPTS = 3  # on stop, a transient error must not strand a ride


@dataclass
class Leg:
    """The ride in hand: where to meet the rider and where to take them."""

    ride_id: str
    pickup: LatLon
    dropoff: LatLon
    arrived: bool = False


class DriverUser(FastHttpUser):
    weight = 10

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.driver_id = ""
        self.token = ""
        self.model: DriverModel | None = None
        self.inbox = DriverInbox()
        self.leg: Leg | None = None
        self.socket: DriverSocket | None = None
        self.ticks = 0
        self.last_tick = time.monotonic()
        self.attempts = 1
        self.ping_pause = PingPause()  # the API shed our pings: honour its Retry-After

    def wait_time(self) -> float:
        return float(constant_pacing(runtime().config.ping_interval_s)(self))

    def on_start(self) -> None:
        rt = runtime()
        n = rt.next_index("driver")
        self.driver_id = f"d-{rt.run_id}-{n:04d}"
        self.token = mint_token(rt.secret, "driver", self.driver_id)
        self.model = DriverModel(rt.grid, rt.rng("driver", n), rt.traits)
        if rt.config.use_ws:
            self.socket = DriverSocket(
                self.environment, self.host or "", self.driver_id, self.token
            )
        self.last_tick = time.monotonic()
        # On the map before asking for work: over HTTP, whose 202 means ingest has the ping (and,
        # with several markets, the driver's market); a WebSocket send does not wait for that.
        self._ping(self.model.step(0.0).to_json(), over_http=True)
        if not self._set_status("available").ok:
            self.model.go_offline()  # e.g. the ping was shed: the tick loop goes online later

    @task
    def tick(self) -> None:
        model = self.model
        assert model is not None
        now = time.monotonic()
        dt_s = (now - self.last_tick) * runtime().config.time_scale
        self.last_tick, self.ticks = now, self.ticks + 1
        if model.state is DriverState.OFFLINE:
            if model.wants_online(dt_s) and self._set_status("available").ok:
                model.go_online()
            return
        self._ping(model.step(dt_s).to_json())
        self._refresh_inbox()
        if model.state is DriverState.ROAMING:
            self._roam(dt_s)
        elif model.state is DriverState.TO_PICKUP:
            self._approach()
        elif model.state is DriverState.ON_TRIP:
            self._carry()

    def on_stop(self) -> None:
        if self.socket is not None:
            self.socket.close()
        if self.model is None:
            return
        self.attempts = DRAIN_ATTEMPTS
        snapshot = self._get_driver()
        if snapshot.status == 0:
            return  # the API is gone (the stack is stopping too): nothing left to tidy
        if snapshot.ok:
            self.inbox.apply_snapshot(snapshot.body)
        offer = self.inbox.take_offer()
        if offer is not None:
            self._ride_action(offer.ride_id, "decline")
        ride_id = self.leg.ride_id if self.leg else self.inbox.ride_id
        if ride_id:
            self._drain(ride_id)
        self._set_status("offline")

    # -- one tick's decisions -------------------------------------------------------------

    def _roam(self, dt_s: float) -> None:
        assert self.model is not None
        # Ours on the server though we missed the news (e.g. the accept's reply was lost).
        if self.inbox.ride_id is not None:
            self._adopt(self.inbox.ride_id)
            return
        offer = self.inbox.take_offer()
        if offer is not None:
            self._answer(offer)
        elif self.model.wants_offline(dt_s) and self._set_status("offline").ok:
            self.model.go_offline()

    def _answer(self, offer: Offer) -> None:
        assert self.model is not None
        if not self.model.decide_offer():
            self._ride_action(offer.ride_id, "decline")
        # A 409 here means the offer expired or the rider cancelled first: keep roaming.
        elif self._ride_action(offer.ride_id, "accept").ok:
            self.inbox.assign(offer.ride_id)
            self._adopt(offer.ride_id)

    def _adopt(self, ride_id: str) -> None:
        """Take on a ride assigned to us: read where to meet the rider and head there."""
        assert self.model is not None
        ride = self._get_ride(ride_id)
        status = ride.body.get("status")
        pickup, dropoff = _point(ride.body.get("pickup")), _point(ride.body.get("dropoff"))
        if (
            status not in {"matched", "driver_arrived", "started"}
            or ride.body.get("driver_id") != self.driver_id
        ):
            self.inbox.forget(ride_id)
        elif pickup is None or dropoff is None:
            self._ride_action(ride_id, "cancel")  # cannot navigate: hand the ride back
            self.inbox.forget(ride_id)
        else:
            self.leg = Leg(ride_id, pickup, dropoff, arrived=status == "driver_arrived")
            if status == "started":
                self.model.start_trip(dropoff)
            else:
                self.model.start_pickup(pickup)

    def _approach(self) -> None:
        assert self.model is not None and self.leg is not None
        leg = self.leg
        if self.inbox.lost(leg.ride_id):
            self._drop_leg()
        elif not self.model.at_destination:
            return
        elif not leg.arrived:
            ok = self._ride_action(leg.ride_id, "arrived").ok
            leg.arrived = ok or self._resync(leg) in {"driver_arrived", "started"}
        else:  # the rider had one ping interval to get in
            ok = self._ride_action(leg.ride_id, "start").ok
            status = "started" if ok else self._resync(leg)
            if status == "started":
                self.model.start_trip(leg.dropoff)
            leg.arrived = status != "matched"

    def _carry(self) -> None:
        assert self.model is not None and self.leg is not None
        if self.model.at_destination:
            self._ride_action(self.leg.ride_id, "complete")
            self._drop_leg()

    def _resync(self, leg: Leg) -> str | None:
        """After a 409: the ride's status if it is still ours, else None (the leg is dropped)."""
        ride = self._get_ride(leg.ride_id).body
        status = ride.get("status")
        if (
            status in {"matched", "driver_arrived", "started"}
            and ride.get("driver_id") == self.driver_id
        ):
            return str(status)
        self._drop_leg()
        return None

    def _drop_leg(self) -> None:
        if self.leg is not None:
            self.inbox.forget(self.leg.ride_id)
        self.leg = None
        if self.model is not None:
            self.model.finish()

    def _drain(self, ride_id: str) -> None:
        """Finish the ride in hand at once: a stopping driver must not leave a ride half-done."""
        actions = {"matched": "arrived", "driver_arrived": "start", "started": "complete"}
        for _ in range(DRAIN_STEPS):
            ride = self._get_ride(ride_id)
            if not ride.ok or ride.body.get("status") in TERMINAL_STATUSES:
                return
            if ride.body.get("driver_id") not in (None, self.driver_id):
                return
            action = actions.get(str(ride.body.get("status")))
            if action is None:
                return
            self._ride_action(ride_id, action)

    # -- channels -----------------------------------------------------------------------

    def _ping(self, ping: dict[str, Any], *, over_http: bool = False) -> None:
        if self.ping_pause.paused(time.monotonic()):
            return
        if self.socket is not None and not over_http:
            ws_ping = {k: ping[k] for k in ("lat", "lon", "ts", "speed_mps", "heading")}
            if self.socket.send(ws_ping):
                return
        reply = call(
            self.client,
            "POST",
            f"/v1/drivers/{self.driver_id}/location",
            name="/v1/drivers/[id]/location",
            token=self.token,
            json=ping,
            shed_ok=True,
        )
        if reply.shed:
            self.ping_pause.hold(reply.retry_after_s, time.monotonic())

    def _refresh_inbox(self) -> None:
        if self.socket is not None:
            for message in self.socket.drain():
                self.inbox.apply_message(message)
            self.ping_pause.hold(self.socket.take_pause_s(), time.monotonic())
            if self.ticks % WS_SAFETY_POLL_TICKS:
                return
        reply = self._get_driver()
        if reply.ok:
            self.inbox.apply_snapshot(reply.body)

    def _get_driver(self) -> Reply:
        return call(
            self.client,
            "GET",
            f"/v1/drivers/{self.driver_id}",
            name="/v1/drivers/[id]",
            token=self.token,
        )

    def _get_ride(self, ride_id: str) -> Reply:
        return get_ride(self.client, ride_id, self.token, self.attempts)

    def _set_status(self, status: str) -> Reply:
        return call(
            self.client,
            "PUT",
            f"/v1/drivers/{self.driver_id}/status",
            name="/v1/drivers/[id]/status",
            token=self.token,
            json={"status": status},
            race_ok=True,
            attempts=self.attempts,
        )

    def _ride_action(self, ride_id: str, action: str) -> Reply:
        return call(
            self.client,
            "POST",
            f"/v1/rides/{ride_id}/{action}",
            name=f"/v1/rides/[id]/{action}",
            token=self.token,
            race_ok=True,
            attempts=self.attempts,
        )


def _point(value: Any) -> LatLon | None:
    if (
        isinstance(value, dict)
        and isinstance(value.get("lat"), int | float)
        and isinstance(value.get("lon"), int | float)
    ):
        return LatLon(lat=float(value["lat"]), lon=float(value["lon"]))
    return None
