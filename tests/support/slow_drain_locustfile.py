"""A locustfile for the gate's distributed test: users whose on_stop takes seconds, like a real
drain of a big city, with the real SLO gate attached. No platform needed: each user records
samples of its own."""

from __future__ import annotations

import time

from locust import User, constant, task

from loadtests import gate
from loadtests.users.samples import fire_sample

DRAIN_S = 2.0  # well past the 0.5 s locust's master gives the workers' last reports

gate.register()


class SlowDrainUser(User):
    wait_time = constant(0.5)

    @task
    def tick(self) -> None:
        fire_sample(self.environment, "GET", "tick", 5)

    def on_stop(self) -> None:
        time.sleep(DRAIN_S)  # gevent-patched under locust: other users drain meanwhile
        fire_sample(self.environment, "POST", "sign-off", 5)
