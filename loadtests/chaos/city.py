"""The chaos city: drivers and riders as plain asyncio tasks over httpx, bounded and seeded.

Drivers work fast (a ride takes a few seconds of their time) so 60 of them serve 3 requests/s
with room to spare under faults; each decides from what the server says its state is (GET
/v1/drivers/{id}), so a reply lost to a killed process is recovered on the next look. Every
tap is retried until the API answers. Riders send one request each with its own
Idempotency-Key and retry it, same key, until they get an answer."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from ridepulse.auth import mint_token

DOWNTOWN = (37.7793, -122.4193)
AREA_M = 1500.0  # drivers and trips stay within this distance of downtown
MIN_TRIP_M = 600.0
PING_EVERY_S = 5.0  # well inside the 30 s after which matching stops offering a silent driver
LOOK_EVERY_S = 1.0
ARRIVE_AFTER_S, START_AFTER_S, COMPLETE_AFTER_S = 0.5, 0.2, 1.0
RETRY_EVERY_S = 0.3
ANSWER_DEADLINE_S = 60.0  # a request or tap not answered in this long is reported unanswered
TRANSIENT = frozenset({429, 500, 502, 503, 504})


def spot(rng: random.Random) -> tuple[float, float]:
    """A random point within AREA_M of downtown."""
    r, a = AREA_M * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
    return DOWNTOWN[0] + r * math.cos(a) / 111_320, DOWNTOWN[1] + r * math.sin(a) / 88_000


def trip(rng: random.Random) -> tuple[tuple[float, float], tuple[float, float]]:
    pickup = spot(rng)
    while True:
        dropoff = spot(rng)
        dy, dx = (dropoff[0] - pickup[0]) * 111_320, (dropoff[1] - pickup[1]) * 88_000
        if math.hypot(dx, dy) >= MIN_TRIP_M:
            return pickup, dropoff


@dataclass
class Ledger:
    """What the clients saw: answers, acknowledged rides, the times the API answered."""

    acknowledged: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    ack_at: dict[str, float] = field(default_factory=dict)
    unanswered: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)  # monotonic times of API answers
    calls: int = 0
    transient: int = 0
    retries: int = 0
    taps_unanswered: int = 0
    completed_by_drivers: int = 0

    def answered(self) -> None:
        self.answered_at.append(time.monotonic())


class Api:
    """One httpx client, tokens minted locally, and 'retry until answered'."""

    def __init__(self, base_url: str, secret: str, ledger: Ledger) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(10.0, connect=3.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
        )
        self.secret = secret
        self.ledger = ledger
        self._tokens: dict[tuple[str, str], str] = {}

    def auth(self, role: str, subject: str) -> dict[str, str]:
        key = (role, subject)
        if key not in self._tokens:
            self._tokens[key] = mint_token(self.secret, role, subject, ttl_s=6 * 3600)
        return {"Authorization": f"Bearer {self._tokens[key]}"}

    async def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        """One attempt: the response, or None when the API did not answer (down, 5xx, 429)."""
        self.ledger.calls += 1
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.HTTPError:
            self.ledger.transient += 1
            return None
        if response.status_code in TRANSIENT:
            self.ledger.transient += 1
            return None
        self.ledger.answered()
        return response

    async def until_answered(
        self, method: str, url: str, deadline_s: float = ANSWER_DEADLINE_S, **kwargs: Any
    ) -> httpx.Response | None:
        deadline = time.monotonic() + deadline_s
        while True:
            response = await self.call(method, url, **kwargs)
            if response is not None or time.monotonic() > deadline:
                return response
            self.ledger.retries += 1
            await asyncio.sleep(RETRY_EVERY_S)

    async def close(self) -> None:
        await self.http.aclose()


class Driver:
    """Pings, takes offers and drives each ride through its steps after short 'driving' pauses.

    While it holds a ride it follows its own taps' answers; when idle, or when an answer says
    something else happened (409: a race, a reply lost to a killed process), it looks at what
    the server says its state is (GET /v1/drivers/{id}) and carries on from there."""

    def __init__(self, api: Api, driver_id: str, rng: random.Random) -> None:
        self.api, self.id, self.rng = api, driver_id, rng
        self.position = spot(rng)
        self.headers = api.auth("driver", driver_id)
        self.last_ping = 0.0

    async def ping(self) -> None:
        body = {"lat": self.position[0], "lon": self.position[1], "ts": int(time.time() * 1000)}
        url = f"/v1/drivers/{self.id}/location"
        await self.api.call("POST", url, json=body, headers=self.headers)
        self.last_ping = time.monotonic()

    async def tap(self, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        response = await self.api.until_answered(method, url, headers=self.headers, **kwargs)
        if response is None:
            self.api.ledger.taps_unanswered += 1
        return response

    async def pause(self, seconds: float) -> None:
        """Drive for a while, pinging on schedule."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if time.monotonic() - self.last_ping >= PING_EVERY_S:
                await self.ping()
            await asyncio.sleep(min(left, PING_EVERY_S))

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.sleep(self.rng.uniform(0, LOOK_EVERY_S))
        while not stop.is_set():
            if time.monotonic() - self.last_ping >= PING_EVERY_S:
                await self.ping()
            view = await self.api.call("GET", f"/v1/drivers/{self.id}", headers=self.headers)
            if view is not None:
                await self.act(view)
            await asyncio.sleep(LOOK_EVERY_S * self.rng.uniform(0.8, 1.2))

    async def act(self, view: httpx.Response) -> None:
        if view.status_code == 404:  # never pinged yet (or lost its position): ping first
            await self.ping()
            await self.tap("PUT", f"/v1/drivers/{self.id}/status", json={"status": "available"})
            return
        if view.status_code != 200:
            return
        me = view.json()
        status, ride_id, offer = me.get("status"), me.get("ride_id"), me.get("offer")
        if status == "offline":
            await self.tap("PUT", f"/v1/drivers/{self.id}/status", json={"status": "available"})
        elif status == "offered" and offer:
            accepted = await self.tap("POST", f"/v1/rides/{offer['ride_id']}/accept")
            if accepted is not None and accepted.status_code == 200:
                await self.drive(accepted.json())
        elif status in ("en_route", "on_trip") and ride_id:
            ride = await self.api.call("GET", f"/v1/rides/{ride_id}", headers=self.headers)
            if ride is not None and ride.status_code == 200:
                await self.drive(ride.json())

    async def drive(self, ride: dict[str, Any]) -> None:
        """From the ride's current status to completed, one tap per step; any surprise (a 409,
        no answer) hands back to the look loop, which reads the truth and resumes."""
        steps = {
            "matched": ("arrived", ARRIVE_AFTER_S),
            "driver_arrived": ("start", START_AFTER_S),
            "started": ("complete", COMPLETE_AFTER_S),
        }
        while ride.get("status") in steps:
            action, after_s = steps[ride["status"]]
            await self.pause(after_s)
            answer = await self.tap("POST", f"/v1/rides/{ride['ride_id']}/{action}")
            if answer is None or answer.status_code != 200:
                return
            ride = answer.json()
        if ride.get("status") == "completed":
            self.position = (ride["dropoff"]["lat"], ride["dropoff"]["lon"])
            self.api.ledger.completed_by_drivers += 1
            await self.ping()


async def request_ride(api: Api, seq: int, run_id: str, rng: random.Random) -> None:
    """One rider, one Idempotency-Key, retried (same key, same body) until answered."""
    rider = f"rider-{run_id}-{seq}"
    pickup, dropoff = trip(rng)
    body = {
        "pickup": {"lat": pickup[0], "lon": pickup[1]},
        "dropoff": {"lat": dropoff[0], "lon": dropoff[1]},
    }
    headers = {**api.auth("rider", rider), "Idempotency-Key": rider}
    deadline = time.monotonic() + ANSWER_DEADLINE_S
    ledger = api.ledger
    while True:
        response = await api.call("POST", "/v1/rides", json=body, headers=headers)
        if response is not None and response.status_code == 202:
            ledger.acknowledged[rider].add(response.json()["ride_id"])
            ledger.ack_at.setdefault(rider, time.monotonic())
            # one more try with the same key: it must name the same ride
            if rng.random() < 0.1:
                again = await api.call("POST", "/v1/rides", json=body, headers=headers)
                if again is not None and again.status_code == 202:
                    ledger.acknowledged[rider].add(again.json()["ride_id"])
            return
        if response is not None:
            ledger.rejected.append(f"{rider}: {response.status_code} {response.text[:200]}")
            return
        if time.monotonic() > deadline:
            ledger.unanswered.append(rider)
            return
        ledger.retries += 1
        await asyncio.sleep(RETRY_EVERY_S)


async def riders(
    api: Api, rate_per_s: float, duration_s: float, run_id: str, rng: random.Random
) -> None:
    """Poisson arrivals at `rate_per_s` for `duration_s`; waits for every request's answer."""
    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic()
    next_at, seq = 0.0, 0
    while next_at < duration_s:
        # arrivals on an absolute schedule: a slow event loop delays requests, never drops them
        await asyncio.sleep(max(0.0, start + next_at - time.monotonic()))
        tasks.append(
            asyncio.create_task(request_ride(api, seq, run_id, random.Random(rng.random())))
        )
        seq += 1
        next_at += rng.expovariate(rate_per_s)
    await asyncio.gather(*tasks)


async def prober(api: Api, stop: asyncio.Event) -> None:
    """A steady reader, so outages are measured even between other calls."""
    headers = api.auth("ops", "chaos-prober")
    while not stop.is_set():
        latest = next(iter(reversed(api.ledger.acknowledged.values())), None)
        url = f"/v1/rides/{next(iter(latest))}" if latest else "/readyz"
        await api.call("GET", url, headers=headers)
        await asyncio.sleep(0.2)
