"""The SLO gate judges latency on the load phase: the on_stop drain burst is reported, not gated.

Importing locust monkey-patches the interpreter (gevent), so the locust half runs in a child
Python rather than inside the test process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from loadtests.behaviours.slo import SloLimits, breaches

SNAPSHOT_CHECK = textwrap.dedent(
    """
    from locust.env import Environment
    from loadtests import gate

    env = Environment()
    runner = env.create_local_runner()
    for _ in range(950):
        runner.stats.log_request("GET", "/v1/drivers/[id]", 40, 10)
    gate._on_test_stopping(env)
    for _ in range(200):  # the drain: every user signs off at once
        runner.stats.log_request("GET", "/v1/drivers/[id]", 900, 10)
    load = gate._load_phase[0]
    everything = gate.api_entry(runner.stats, gate.HTTP_METHODS)
    print(load.num_requests, load.get_response_time_percentile(0.95),
          everything.num_requests, everything.get_response_time_percentile(0.95))
    """
)


def test_the_load_phase_snapshot_leaves_out_calls_made_after_the_stop() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SNAPSHOT_CHECK], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["950", "40", "1150", "900"]


def test_a_slow_load_phase_still_fails_the_gate() -> None:
    reasons = breaches(
        fail_ratio=0.0,
        p95_ms=530,
        requests=1000,
        stuck_ride_ids=[],
        limits=SloLimits(max_fail_ratio=0.0, max_p95_ms=500),
    )
    assert reasons == ["p95 of HTTP calls under load 530 ms > 500 ms"]
