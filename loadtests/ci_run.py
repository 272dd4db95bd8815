"""`python -m loadtests.ci_run` (make loadtest-ci): a short headless load with the SLO gate.

Starts the whole stack on loopback (`ridepulse up --no-sim` on free ports, a fresh data dir and a
fresh secret), waits for GET /readyz, runs locust headless with 200 drivers and 30 riders for 30 s
(CSV and HTML reports under loadtests/reports/), stops the stack with SIGTERM and exits with
locust's exit code, which the SLO gate set. Every wait has a deadline; the stack's log is printed
when something goes wrong. Arguments and the simulation's knobs (RIDEPULSE_SIM_*, RIDEPULSE_SLO_*
of this environment, passed on to locust) are checked before anything starts.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from loadtests.behaviours.config import SimConfig
from loadtests.platform import Platform, clean_env, tool

REPO = Path(__file__).resolve().parent.parent
REPORTS = REPO / "loadtests" / "reports"
HOST = "127.0.0.1"
READY_TIMEOUT_S = float(os.environ.get("RIDEPULSE_CI_READY_TIMEOUT_S", "120"))
STOP_TIMEOUT_S = 60.0
DRAIN_ALLOWANCE_S = 240  # beyond the run time: spawn, drain, SLO grace and report writing
LOG_TAIL_LINES = 60
# the knobs of the simulation and its gate travel to locust; the platform's own settings do not
# (the stack is ci_run's own)
PASSED_ON = ("RIDEPULSE_SIM_", "RIDEPULSE_SLO_")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drivers", type=count, default=200, help="DriverUser count (fixed_count)")
    parser.add_argument("--riders", type=count, default=30, help="RiderUser count (fixed_count)")
    parser.add_argument("--spawn-rate", type=rate, default=50, help="users started per second")
    parser.add_argument("--run-time", type=duration, default="30s", help="e.g. 30s, 2m, 1h30m")
    args = parser.parse_args(argv)
    if args.drivers + args.riders == 0:
        parser.error("--drivers and --riders are both 0: the run would measure nothing")
    return args


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def rate(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(text)
    return value


def duration(text: str) -> str:
    """A locust --run-time, checked here (locust would only refuse it after the stack is up)."""
    if run_time_s(text) <= 0:
        raise ValueError(text)
    return text


def run_time_s(text: str) -> float:
    """Seconds in a locust duration such as 90s, 2m or 1h30m, or a bare number of seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    if re.fullmatch(r"\d+", text.strip()):
        return float(text)
    if not re.fullmatch(r"(\d+\s*h)?\s*(\d+\s*m)?\s*(\d+\s*s)?", text.strip()) or not text.strip():
        raise ValueError(f"not a duration like 30s, 2m or 1h30m: {text!r}")
    parts = re.findall(r"(\d+)\s*([hms])", text)
    return float(sum(int(n) * units[u] for n, u in parts))


def locust_env(args: argparse.Namespace, secret: str, data_dir: Path) -> dict[str, str]:
    """This environment's simulation and SLO knobs, then what ci_run itself decides."""
    knobs = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ON)}
    decided = {
        "RIDEPULSE_SECRET": secret,
        "RIDEPULSE_DATA_DIR": str(data_dir),
        "RIDEPULSE_SIM_DRIVERS": str(args.drivers),  # the arguments, not the environment
        "RIDEPULSE_SIM_RIDERS": str(args.riders),
        "RIDEPULSE_SIM_SEED": knobs.get("RIDEPULSE_SIM_SEED", "42"),
        # CI fails on any failure at all (issue 5); the gate's own default allows 1 %.
        "RIDEPULSE_SLO_FAIL_RATIO": knobs.get("RIDEPULSE_SLO_FAIL_RATIO", "0"),
    }
    return clean_env(**{**knobs, **decided})


def locust_command(api_url: str, args: argparse.Namespace) -> list[str]:
    return [
        tool("locust"),
        "-f",
        str(REPO / "loadtests" / "locustfile.py"),
        "--headless",
        "-u",
        str(args.drivers + args.riders),
        "-r",
        str(args.spawn_rate),
        "-t",
        args.run_time,
        "--host",
        api_url,
        "--csv",
        str(REPORTS / "ci"),
        "--html",
        str(REPORTS / "ci.html"),
        "--only-summary",
        "DriverUser",
        "RiderUser",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    secret = secrets.token_urlsafe(32)
    data_dir = Path(tempfile.mkdtemp(prefix="ridepulse-ci-"))
    sim_env = locust_env(args, secret, data_dir)
    try:
        SimConfig.from_env(sim_env)
    except ValueError as exc:  # one line per bad knob, before the stack starts
        print("\n".join(f"ci_run: error: {line}" for line in str(exc).splitlines()), flush=True)
        shutil.rmtree(data_dir, ignore_errors=True)
        return 1
    REPORTS.mkdir(parents=True, exist_ok=True)
    # always the embedded server: CI owns its whole stack
    stack = Platform(data_dir, "--no-sim", env={"RIDEPULSE_SECRET": secret}, host=HOST)
    print(f"ci_run: starting the stack on {stack.api} (data dir {data_dir})", flush=True)
    try:
        try:
            stack.wait_up(READY_TIMEOUT_S)
        except RuntimeError as exc:
            print(f"ci_run: {exc}", flush=True)
            stack.print_logs(LOG_TAIL_LINES)
            return 1
        print(
            f"ci_run: locust: {args.drivers} drivers, {args.riders} riders, {args.run_time}",
            flush=True,
        )
        timeout_s = run_time_s(args.run_time) + DRAIN_ALLOWANCE_S
        command = locust_command(stack.api, args)
        try:
            code = subprocess.run(command, env=sim_env, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            print(f"ci_run: locust did not finish within {timeout_s:.0f}s", flush=True)
            code = 1
        if code != 0:
            stack.print_logs(LOG_TAIL_LINES)
        print(f"ci_run: locust exited with {code}; reports in {REPORTS}", flush=True)
        return code
    finally:
        try:
            stack.stop(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(
                f"ci_run: the stack ignored SIGTERM for {STOP_TIMEOUT_S:.0f}s; killed", flush=True
            )
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
