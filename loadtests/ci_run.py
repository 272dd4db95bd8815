"""`python -m loadtests.ci_run` (make loadtest-ci): a short headless load with the SLO gate.

Starts the whole stack on loopback (`ridepulse up --no-sim` on free ports, a fresh data dir and a
fresh secret), waits for GET /readyz, runs locust headless with 200 drivers and 30 riders for 30 s
(CSV and HTML reports under loadtests/reports/), stops the stack with SIGTERM and exits with
locust's exit code, which the SLO gate set. Every wait has a deadline; the stack's log is printed
when something goes wrong.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from loadtests.platform import Platform, clean_env, tool

REPO = Path(__file__).resolve().parent.parent
REPORTS = REPO / "loadtests" / "reports"
HOST = "127.0.0.1"
READY_TIMEOUT_S = float(os.environ.get("RIDEPULSE_CI_READY_TIMEOUT_S", "120"))
STOP_TIMEOUT_S = 60.0
DRAIN_ALLOWANCE_S = 240  # beyond the run time: spawn, drain, SLO grace and report writing
LOG_TAIL_LINES = 60


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drivers", type=int, default=200, help="DriverUser count (fixed_count)")
    parser.add_argument("--riders", type=int, default=30, help="RiderUser count (fixed_count)")
    parser.add_argument("--spawn-rate", type=float, default=50, help="users started per second")
    parser.add_argument("--run-time", default="30s", help="locust --run-time, e.g. 30s, 2m")
    return parser.parse_args(argv)


def run_time_s(text: str) -> float:
    """Seconds in a locust duration such as 90s, 2m or 1h30m."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)\s*([hms])", text)
    if not parts:
        return float(text)
    return float(sum(int(n) * units[u] for n, u in parts))


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
    REPORTS.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="ridepulse-ci-"))
    secret = secrets.token_urlsafe(32)
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
        sim_env = clean_env(
            RIDEPULSE_SECRET=secret,
            RIDEPULSE_DATA_DIR=str(data_dir),
            RIDEPULSE_SIM_DRIVERS=str(args.drivers),
            RIDEPULSE_SIM_RIDERS=str(args.riders),
            RIDEPULSE_SIM_SEED=os.environ.get("RIDEPULSE_SIM_SEED", "42"),
            # CI fails on any failure at all (issue 5); the gate's own default allows 1 %.
            RIDEPULSE_SLO_FAIL_RATIO=os.environ.get("RIDEPULSE_SLO_FAIL_RATIO", "0"),
        )
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
