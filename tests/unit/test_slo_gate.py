"""The SLO gate judges latency on the load phase: the on_stop drain burst is reported, not gated.

Importing locust monkey-patches the interpreter (gevent), so the locust half runs in a child
Python rather than inside the test process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from loadtests.behaviours.slo import SloLimits, breaches, describe_exception

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


# A headless run's end in a fresh interpreter: 100 fast calls logged, then what each case adds
# before the gate judges it at quitting.
A_RUN = textwrap.dedent(
    """
    import argparse, traceback
    from locust.env import Environment
    from loadtests import gate

    env = Environment(parsed_options=argparse.Namespace(headless=True))
    runner = env.create_local_runner()
    for _ in range(100):
        runner.stats.log_request("GET", "/v1/drivers/[id]", 40, 10)
    """
)
CRASH_CHECK = A_RUN + textwrap.dedent(
    """
    def think_time_s():
        return 1.0 / 0.0
    try:
        think_time_s()
    except ZeroDivisionError as exc:  # what locust's user greenlet does with it
        for _ in range(3):
            runner.log_exception("local", str(exc), "".join(traceback.format_tb(exc.__traceback__)))
    gate._on_quitting(env)
    print("exit code", env.process_exit_code)
    """
)


def test_an_exception_in_user_code_fails_the_gate_and_is_named() -> None:
    """Locust's own exit code would be 1 for it; the gate must not turn it into a pass."""
    done = subprocess.run(
        [sys.executable, "-c", CRASH_CHECK],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RIDEPULSE_SLO_CHECK_RIDES": "0"},
    )
    assert done.returncode == 0, done.stderr
    assert "SLO gate: FAIL" in done.stdout and "exit code 1" in done.stdout, done.stdout
    assert "float division by zero at <string>:" in done.stdout, done.stdout
    assert "in think_time_s (3 times)" in done.stdout, done.stdout


def test_exceptions_are_described_by_message_and_raising_frame() -> None:
    tb = (
        '  File "/x/site-packages/locust/user/task.py", line 340, in execute_task\n'
        "    task(self)\n"
        '  File "/w/repo/loadtests/behaviours/demand.py", line 85, in think_time_s\n'
        "    return rng.expovariate(1.0 / self.habits.mean_think_s)\n"
    )
    assert describe_exception("float division by zero", tb, 1) == (
        "float division by zero at loadtests/behaviours/demand.py:85 in think_time_s (once)"
    )
    reasons = breaches(
        fail_ratio=0.0,
        p95_ms=10,
        requests=1000,
        stuck_ride_ids=[],
        limits=SloLimits(),
        exceptions=[describe_exception("boom", "", 2)],
    )
    assert reasons == ["exceptions in user code: boom (2 times)"]


PASS_CHECK = A_RUN + "gate._on_quitting(env)\n"


def test_the_pass_line_claims_no_ride_check_it_did_not_make() -> None:
    env = {**os.environ, "RIDEPULSE_SLO_CHECK_RIDES": "0", "RIDEPULSE_SECRET": "x" * 32}
    done = subprocess.run(
        [sys.executable, "-c", PASS_CHECK], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "SLO gate: pass" in done.stdout, done.stdout
    assert "no ride left open" not in done.stdout, done.stdout
    assert "open rides not checked (RIDEPULSE_SLO_CHECK_RIDES=0)" in done.stdout, done.stdout
