"""The scenarios `make quality` plays, in order, as stages (scenarios in one stage play at once,
one per market). Sized for the whole run to fit in about 12 minutes on 2 shared cores: small
cities (a disc of 700 m radius), short trips (150-350 m as the crow flies), demand for about a
minute, a 30 s ride deadline so unserved requests resolve quickly.

To add scenarios (the surge on/off pair, say), append stages to `STAGES`, or build your own
list and pass it to `loadtests.quality.runner.run_stages`."""

from __future__ import annotations

from dataclasses import replace

from loadtests.quality.runner import Stage
from loadtests.quality.scenario import Hotspot, Scenario, rush, spike, steady
from loadtests.quality.surge_response import SURGE_RESPONSE

SEED = 13
DEADLINE = {"RIDEPULSE_RIDE_DEADLINE_S": "30"}
WINDOW = "RIDEPULSE_MATCH_BATCH_WINDOW_S"
SWEEP_WINDOWS = ("0", "0.5", "1", "2", "4")
DEMAND_S = 60.0
SWEEP_DEMAND_S = 30.0

STEADY = Scenario("steady", 40, steady(0.3, DEMAND_S), SEED, "sf", 13.0, DEADLINE, drain_s=70)
RUSH = Scenario("rush", 40, rush(0.15, 0.45, DEMAND_S), SEED, "nyc", 8.0, DEADLINE, drain_s=70)
# A stadium letting out: 30 s at 1.5 requests/s, every pickup within 120 m of one corner of
# the area, on top of a light base demand; 15 drivers, far fewer than the let-out's requests
# (the first try, 12 s at 2/s for 25 drivers, was over before surge reacted: 16 rides, all
# served, with surge and without). Riders answer
# the price and half the drivers chase surge (surge_response.py); the same city is played again
# with surge off (cap 1). The city compresses a let-out into a minute, so the surge window is
# scaled down with it (60 s, not the 300 s a real city's pricing uses) in both runs.
SPIKE_ENV = {**DEADLINE, "RIDEPULSE_SURGE_WINDOW_S": "60"}
SPIKE = Scenario(
    "spike",
    15,
    spike(0.12, 1.5, DEMAND_S, 15.0, 30.0),
    SEED,
    "sf",
    22.5,
    SPIKE_ENV,
    hooks=SURGE_RESPONSE,
    drain_s=70,
    hotspot=Hotspot(from_s=15.0, until_s=47.0, east_m=350.0, north_m=250.0),
)
SPIKE_SURGE_OFF = replace(
    SPIKE, name="spike-surge-off", env={**SPIKE_ENV, "RIDEPULSE_SURGE_CAP": "1"}
)


def sweep_stage(window: str) -> Stage:
    """A busy city (sf: more requests than drivers can serve at once) and a quiet one (nyc)
    played at once with one batching window."""
    env = {**DEADLINE, WINDOW: window}
    busy = Scenario(
        f"sweep-busy-w{window}",
        30,
        steady(1.5, SWEEP_DEMAND_S),
        SEED,
        "sf",
        13.0,
        env,
        drain_s=25,
        wait_for="arrived",
    )
    quiet = Scenario(
        f"sweep-quiet-w{window}",
        30,
        steady(0.25, SWEEP_DEMAND_S),
        SEED,
        "nyc",
        13.0,
        env,
        drain_s=25,
        wait_for="arrived",
    )
    return (busy, quiet)


STAGES: list[Stage] = [
    (STEADY, RUSH),
    (SPIKE,),
    (SPIKE_SURGE_OFF,),
    *(sweep_stage(w) for w in SWEEP_WINDOWS),
]
