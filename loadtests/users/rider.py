"""RiderUser: one simulated rider app, polling every couple of seconds.

Idle riders wait a think time, draw a trip from the demand model, sometimes quote first, then
request with an Idempotency-Key. An active rider polls its ride to a terminal state, cancels when
its patience runs out, and reports time_to_match, pickup_wait and outcome:<status> as "RIDE"
samples. On stop it cancels what it can (anything before `started`; drivers finish the rest), so
the SLO gate finds no ride left open.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from locust import task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

from loadtests.behaviours.ledger import TERMINAL_STATUSES
from loadtests.behaviours.rider import RideMetric, RideWatch
from loadtests.runtime import runtime
from loadtests.users.api import Reply, call, get_ride
from loadtests.users.samples import fire_sample
from ridepulse.auth import mint_token
from ridepulse.markets import LatLon

DRAIN_ATTEMPTS = 3  # on stop, a transient error must not strand a ride
FIRST_REQUEST_WITHIN_S = 5.0  # stagger riders so a short CI run still sees rides early
CANCELLABLE_ON_STOP = frozenset({"requested", "offered", "matched", "driver_arrived"})


def now_ms() -> int:
    return int(time.time() * 1000)


class RiderUser(FastHttpUser):
    weight = 3

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.rider_id = ""
        self.token = ""
        self.watch: RideWatch | None = None
        self.pending_key: str | None = None  # sent, reply not yet seen: replayable after a kill
        self.pending_body: dict[str, Any] | None = None
        self.next_request_ms = 0
        self.rng = random.Random()
        self.attempts = 1

    def wait_time(self) -> float:
        return runtime().config.rider_poll_s

    def on_start(self) -> None:
        rt = runtime()
        n = rt.next_index("rider")
        self.rider_id = f"r-{rt.run_id}-{n:04d}"
        self.token = mint_token(rt.secret, "rider", self.rider_id)
        self.rng = rt.rng("rider", n)
        self.next_request_ms = now_ms() + int(self.rng.uniform(0, FIRST_REQUEST_WITHIN_S) * 1000)

    @task
    def tick(self) -> None:
        if self.watch is not None:
            self._follow(self.watch)
        elif now_ms() >= self.next_request_ms:
            self._request()

    def on_stop(self) -> None:
        self.attempts = DRAIN_ATTEMPTS
        if self.watch is None and self.pending_key is not None and self.pending_body is not None:
            self._post_ride(self.pending_key, self.pending_body)  # same key: the same ride, or none
        if self.watch is None:
            return
        ride = self._get_ride(self.watch.ride_id)
        if ride.status == 0:
            return  # the API is gone (the stack is stopping too): the gate will say so
        if ride.body.get("status") in CANCELLABLE_ON_STOP:
            # A 409 means the driver started it meanwhile: the driver's own on_stop finishes it.
            self._cancel(self.watch.ride_id)
            ride = self._get_ride(self.watch.ride_id)
        if ride.body.get("status") in TERMINAL_STATUSES:
            runtime().ledger.closed(self.watch.ride_id)

    def _request(self) -> None:
        if self.pending_key is not None and self.pending_body is not None:
            # the last attempt got no answer or a 5xx (e.g. 503 not durable): the same key
            # replays the ride it may have made, or makes it now
            self._after(self._post_ride(self.pending_key, self.pending_body))
            return
        demand = runtime().demand
        pickup, dropoff = demand.next_trip(self.rng)
        body: dict[str, Any] = {"pickup": _wire(pickup), "dropoff": _wire(dropoff)}
        if demand.wants_quote(self.rng):
            quote = call(
                self.client,
                "GET",
                f"/v1/quote?pickup_lat={body['pickup']['lat']}&pickup_lon={body['pickup']['lon']}"
                f"&dropoff_lat={body['dropoff']['lat']}&dropoff_lon={body['dropoff']['lon']}",
                name="/v1/quote",
                token=self.token,
                shed_ok=True,  # 429: the per-rider quote limit; ride on without a quote
            )
            if isinstance(quote.body.get("quote_id"), str):
                body["quote_id"] = quote.body["quote_id"]
        self.pending_key, self.pending_body = str(uuid.uuid4()), body
        self._after(self._post_ride(self.pending_key, body))

    def _after(self, reply: Reply) -> None:
        """Schedule the next attempt: Retry-After when the API gave one, else a think time."""
        if reply.ok:
            return
        wait_s = reply.retry_after_s or runtime().demand.think_time_s(self.rng)
        self.next_request_ms = now_ms() + int(wait_s * 1000)

    def _post_ride(self, key: str, body: dict[str, Any]) -> Reply:
        sent_ms = now_ms()
        reply = call(
            self.client,
            "POST",
            "/v1/rides",
            name="/v1/rides",
            token=self.token,
            json=body,
            headers={"Idempotency-Key": key},
            attempts=self.attempts,
            shed_ok=True,  # 429 + Retry-After: a per-rider limit, honoured by waiting
        )
        ride_id = reply.body.get("ride_id")
        if reply.ok and isinstance(ride_id, str):
            runtime().ledger.opened(ride_id, self.rider_id)
            patience = runtime().demand.cancel_after_s(self.rng)
            cancel_at = None if patience is None else sent_ms + int(patience * 1000)
            self.watch = RideWatch(ride_id, sent_ms, cancel_at)
        if not reply.transient:  # answered for good: nothing left to replay
            self.pending_key = self.pending_body = None
        return reply

    def _follow(self, watch: RideWatch) -> None:
        ride = self._get_ride(watch.ride_id)
        if not ride.ok:
            return
        self._report(watch.observe(ride.body, now_ms()))
        if watch.terminal:
            runtime().ledger.closed(watch.ride_id)
            self.watch = None
            self.next_request_ms = now_ms() + int(runtime().demand.think_time_s(self.rng) * 1000)
        elif watch.should_cancel(now_ms()):
            self._cancel(watch.ride_id)

    def _report(self, metrics: list[RideMetric]) -> None:
        for metric in metrics:
            fire_sample(self.environment, "RIDE", metric.name, metric.ms)

    def _get_ride(self, ride_id: str) -> Reply:
        return get_ride(self.client, ride_id, self.token, self.attempts)

    def _cancel(self, ride_id: str) -> Reply:
        return call(
            self.client,
            "POST",
            f"/v1/rides/{ride_id}/cancel",
            name="/v1/rides/[id]/cancel",
            token=self.token,
            race_ok=True,
            attempts=self.attempts,
        )


def _wire(point: LatLon) -> dict[str, float]:
    return {"lat": round(point.lat, 6), "lon": round(point.lon, 6)}
