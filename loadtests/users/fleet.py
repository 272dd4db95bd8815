"""FleetUser: a telemetry gateway forwarding a whole fleet's pings in batches.

One locust user moves RIDEPULSE_SIM_FLEET_SIZE virtual drivers (behaviours.fleet) and posts their
pings every ping interval to `POST /v1/telemetry` in batches of RIDEPULSE_SIM_BATCH_SIZE, with a
fleet token. This is the high-volume path; the virtual drivers never take rides. A batch with
rejected pings is a failure (the simulator only sends valid pings), reported with the first reason.
A 429 with `Retry-After` is the API shedding telemetry as designed: the gateway holds its pings
for that long (a success in the report; the server counts what it shed).
"""

from __future__ import annotations

import time

from locust import constant_pacing, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

from loadtests.behaviours.fleet import Fleet, batches
from loadtests.runtime import runtime
from loadtests.users.api import SHED_STATUS, parse_body, retry_after
from ridepulse.auth import mint_token


class FleetUser(FastHttpUser):
    weight = 0  # off unless asked for: see RIDEPULSE_SIM_FLEET_USERS / RIDEPULSE_SIM_FLEET_WEIGHT

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.fleet: Fleet | None = None
        self.token = ""
        self.last_tick = time.monotonic()
        self.paused_until = 0.0

    def wait_time(self) -> float:
        return float(constant_pacing(runtime().config.ping_interval_s)(self))

    def on_start(self) -> None:
        rt = runtime()
        n = rt.next_index("fleet")
        self.token = mint_token(rt.secret, "fleet", f"fleet-{rt.run_id}-{n}")
        self.fleet = Fleet(
            rt.grid,
            rt.rng("fleet", n),
            rt.config.fleet_size,
            f"v-{rt.run_id}-{n}",
            start_hour=rt.config.start_hour,
        )
        self.last_tick = time.monotonic()

    @task
    def tick(self) -> None:
        assert self.fleet is not None
        config = runtime().config
        now = time.monotonic()
        if now < self.paused_until:
            return  # shed: the fleet moves on, and the next tick sends where it is then
        dt_s = (now - self.last_tick) * config.time_scale
        self.last_tick = now
        pings = self.fleet.step(dt_s, int(time.time() * 1000))
        headers = {"Authorization": f"Bearer {self.token}"}
        for batch in batches(pings, config.batch_size):
            with self.client.post(
                "/v1/telemetry",
                json={"pings": batch},
                headers=headers,
                name="/v1/telemetry",
                catch_response=True,
            ) as response:
                shed_for_s = retry_after(response.headers)
                if response.status_code == SHED_STATUS and shed_for_s > 0:
                    response.success()
                    self.paused_until = time.monotonic() + shed_for_s
                    return
                if not 200 <= (response.status_code or 0) < 300:
                    response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                    continue
                body = parse_body(response.content)
                if body.get("rejected"):
                    errors = body.get("errors") or ["no reason given"]
                    response.failure(
                        f"{body['rejected']} of {len(batch)} pings rejected, e.g. {errors[0]}"
                    )
