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
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPORTS = REPO / "loadtests" / "reports"
HOST = "127.0.0.1"
READY_TIMEOUT_S = float(os.environ.get("RIDEPULSE_CI_READY_TIMEOUT_S", "120"))
STOP_TIMEOUT_S = 30.0
DRAIN_ALLOWANCE_S = 240  # beyond the run time: spawn, drain, SLO grace and report writing
LOG_TAIL_LINES = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def tool(name: str) -> str:
    """A console script of this venv, else one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"ci_run: `{name}` not found next to {sys.executable} or on PATH")
    return found


def wait_ready(url: str, stack: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stack.poll() is not None:
            raise RuntimeError(f"the stack exited with code {stack.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready within {timeout_s:.0f}s")


def stop(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM, wait, then SIGKILL this process's own group (started in its own session)."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        print(
            f"ci_run: pid {process.pid} ignored SIGTERM for {timeout_s:.0f}s; killing it",
            flush=True,
        )
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def print_tail(path: Path, title: str) -> None:
    if path.exists():
        lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        print(f"--- last lines of {title} ({path}) ---", *lines, "---", sep="\n", flush=True)


def print_stack_logs(stack_log: Path, data_dir: Path) -> None:
    print_tail(stack_log, "the stack's log")
    for service_log in sorted((data_dir / "logs").glob("*.log")):
        print_tail(service_log, service_log.stem)


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
    api_port, dashboard_port = free_port(), free_port()
    api_url = f"http://{HOST}:{api_port}"
    env = {
        **os.environ,
        "RIDEPULSE_SECRET": secrets.token_urlsafe(32),
        "RIDEPULSE_DATA_DIR": str(data_dir),
    }
    env.pop("RIDEPULSE_REDIS_URL", None)  # always the embedded server: CI owns its whole stack
    stack_log = REPORTS / "ci-stack.log"
    stack_cmd = [
        tool("ridepulse"),
        "up",
        "--no-sim",
        "--host",
        HOST,
        "--api-port",
        str(api_port),
        "--dashboard-port",
        str(dashboard_port),
        "--data-dir",
        str(data_dir),
    ]
    print(f"ci_run: starting the stack on {api_url} (data dir {data_dir})", flush=True)
    with stack_log.open("wb") as log:
        stack = subprocess.Popen(
            stack_cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        try:
            wait_ready(f"{api_url}/readyz", stack, READY_TIMEOUT_S)
        except RuntimeError as exc:
            print(f"ci_run: {exc}", flush=True)
            print_stack_logs(stack_log, data_dir)
            return 1
        sim_env = {
            **env,
            "RIDEPULSE_SIM_DRIVERS": str(args.drivers),
            "RIDEPULSE_SIM_RIDERS": str(args.riders),
            "RIDEPULSE_SIM_SEED": env.get("RIDEPULSE_SIM_SEED", "42"),
            # CI fails on any failure at all (issue 5); the gate's own default allows 1 %.
            "RIDEPULSE_SLO_FAIL_RATIO": env.get("RIDEPULSE_SLO_FAIL_RATIO", "0"),
        }
        print(
            f"ci_run: locust: {args.drivers} drivers, {args.riders} riders, {args.run_time}",
            flush=True,
        )
        timeout_s = run_time_s(args.run_time) + DRAIN_ALLOWANCE_S
        command = locust_command(api_url, args)
        try:
            code = subprocess.run(command, env=sim_env, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            print(f"ci_run: locust did not finish within {timeout_s:.0f}s", flush=True)
            code = 1
        if code != 0:
            print_stack_logs(stack_log, data_dir)
        print(f"ci_run: locust exited with {code}; reports in {REPORTS}", flush=True)
        return code
    finally:
        stop(stack, STOP_TIMEOUT_S)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
