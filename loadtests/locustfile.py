"""RidePulse load test: simulated drivers, riders and fleet gateways against the public API.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000            # web UI on :8089
    locust -f loadtests/locustfile.py --headless -u 230 -r 50 -t 30s --host http://127.0.0.1:8000 \
        DriverUser RiderUser

User classes (pick them as positional arguments, with --class-picker in the web UI, or by env):
  DriverUser  a driver app: pings, answers offers, drives rides to completion (weight 10)
  RiderUser   a rider app: quotes, requests, cancels, follows its ride; RIDE metrics (weight 3)
  FleetUser   a telemetry gateway for RIDEPULSE_SIM_FLEET_SIZE virtual drivers; offered only when
              RIDEPULSE_SIM_FLEET_USERS or _FLEET_WEIGHT gives it users (weight 0: opt in)
Counts: RIDEPULSE_SIM_DRIVERS / _RIDERS / _FLEET_USERS set locust's fixed_count per class;
weights: RIDEPULSE_SIM_DRIVER_WEIGHT / _RIDER_WEIGHT / _FLEET_WEIGHT. RIDEPULSE_SIM_SHAPE=rush
turns on the rush-hour load shape. The SLO gate (loadtests/gate.py) sets the exit code of a
headless run. Every knob is in loadtests/behaviours/config.py.
"""

from __future__ import annotations

import sys

from loadtests import gate
from loadtests.behaviours.config import SimConfig
from loadtests.runtime import sim_config
from loadtests.users import fleet
from loadtests.users.driver import DriverUser
from loadtests.users.rider import RiderUser


def configure_user_classes(config: SimConfig) -> None:
    """Weights and fixed counts must be set before locust builds its Environment."""
    for user_class, count, weight in (
        (DriverUser, config.drivers, config.driver_weight),
        (RiderUser, config.riders, config.rider_weight),
        (fleet.FleetUser, config.fleet_users, config.fleet_weight),
    ):
        user_class.fixed_count = count
        user_class.weight = weight


def checked_config() -> SimConfig:
    """The knobs, or exit 1 before any user starts with one line per bad one (no traceback:
    the lines already name each variable and what it must be)."""
    try:
        return sim_config()
    except ValueError as exc:
        sys.exit("\n".join(f"error: {line}" for line in str(exc).splitlines()))


_config = checked_config()
configure_user_classes(_config)
gate.register()
if _config.shape == "rush":
    from loadtests.shape import RushHourShape  # noqa: F401 - locust picks it up from this module
# Locust offers every User class this module holds, positionally and in --class-picker, then
# refuses one of weight 0 ("There are no users with weight > 0"): FleetUser is held only when the
# environment gives it users.
if _config.fleet_users or _config.fleet_weight:
    FleetUser = fleet.FleetUser

__all__ = ["DriverUser", "RiderUser"]
