"""RushHourShape: base load, a ramp to the peak, the peak held, a drain back down, then stop.

Enabled by RIDEPULSE_SIM_SHAPE=rush (the locustfile only exposes the class then, because locust
uses any shape class it finds). User classes keep their weights/fixed counts within each total.
"""

from __future__ import annotations

import time

from locust import LoadTestShape

from loadtests.behaviours.rush import RushHour
from loadtests.runtime import sim_config


def rush_hour_from_config() -> RushHour:
    config = sim_config()
    return RushHour(
        base_users=config.rush_base_users,
        peak_users=config.rush_peak_users,
        ramp_s=config.rush_ramp_s,
        peak_s=config.rush_peak_s,
        drain_s=config.rush_drain_s,
    )


class RushHourShape(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        rush = rush_hour_from_config()
        # start_time is reset by locust when the test starts
        users = rush.users_at(time.perf_counter() - self.start_time)
        return None if users is None else (users, rush.spawn_rate())
