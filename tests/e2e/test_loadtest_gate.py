"""The SLO gate and the reports of a real locust run against a real `ridepulse up`.

- loadtests/README.md: the stuck-ride check runs "after every user's on_stop has run", and the
  verdict covers the stop drain, however the run ends (`-t`, Ctrl-C, SIGTERM): locust fires its
  quitting hook before it stops the users on a signal.
- The CSV and HTML reports agree with the final stats (locust's CSV writer rewrites it every
  second and never at close, so it used to miss the drain; its HTML report was written before the
  drain on Ctrl-C and not at all on SIGTERM).
"""

from __future__ import annotations

import csv
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from loadtests.platform import clean_env, tool
from ridepulse.redis_server import free_port
from tests.support.processes import Platform
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py"
# a handful of users who ride at once: every driver accepts, riders ask again soon, at midday
SMALL_CITY = {
    "RIDEPULSE_SIM_DRIVERS": "12",
    "RIDEPULSE_SIM_RIDERS": "6",
    "RIDEPULSE_SIM_SEED": "7",
    "RIDEPULSE_SIM_ACCEPT_PROBABILITY": "1",
    "RIDEPULSE_SIM_RIDER_THINK_S": "2",
    "RIDEPULSE_SIM_START_HOUR": "12",
    "RIDEPULSE_SIM_PING_INTERVAL_S": "1",
}
GATE_LINE = re.compile(r"SLO gate: (pass|FAIL)(?: \((\d+) API calls)?")
EXIT_WITHIN_S = 120.0


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    stack = Platform(tmp_path_factory.mktemp("gate"), "--no-sim")
    try:
        stack.wait_up()
        yield stack
    finally:
        stack.stop()


def start_locust(platform: Platform, reports: Path, *extra: str) -> subprocess.Popen[str]:
    env = clean_env(RIDEPULSE_SECRET=platform.secret, **SMALL_CITY)
    users = int(SMALL_CITY["RIDEPULSE_SIM_DRIVERS"]) + int(SMALL_CITY["RIDEPULSE_SIM_RIDERS"])
    command = [
        tool("locust"),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "--host",
        platform.api,
        "--only-summary",
        "--csv",
        str(reports / "run"),
        "--json-file",
        str(reports / "final"),  # written after locust stopped every user: the final figures
        "--html",
        str(reports / "run.html"),
        *extra,
        "DriverUser",
        "RiderUser",
    ]
    # a shell or CI may start us with SIGINT ignored, and a child inherits that: restore it
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finish(locust: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = locust.communicate(timeout=EXIT_WITHIN_S)
    return locust.returncode, output


def rides_under_way(reports: Path) -> bool:
    """Some rider has been matched: the drain will have rides to cancel or finish."""
    path = reports / "run_stats.csv"
    return path.exists() and "time_to_match" in path.read_text()


def final_counts(reports: Path) -> tuple[int, int]:
    """(every sample, API samples only) of the run's final stats."""
    entries: list[dict[str, Any]] = orjson.loads((reports / "final.json").read_bytes())
    total = sum(int(e["num_requests"]) for e in entries)
    api = sum(int(e["num_requests"]) for e in entries if e["method"] != "RIDE")
    return total, api


def csv_total(reports: Path) -> int:
    with (reports / "run_stats.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["Name"] == "Aggregated"]
    return int(rows[0]["Request Count"])


HTML_ARGS = re.compile(r"window\.templateArgs = (\{.+\})$", re.M)  # one line of JSON


def html_total(reports: Path) -> int:
    """The "Aggregated" row of the HTML report's request statistics."""
    found = HTML_ARGS.search((reports / "run.html").read_text())
    assert found, "no report data in the HTML report"
    rows = orjson.loads(found[1])["requests_statistics"]
    return int(next(r for r in rows if r["name"] == "Aggregated")["num_requests"])


def gate_calls(output: str) -> int:
    found = GATE_LINE.search(output)
    assert found and found[2], f"no pass line of the gate in:\n{output[-3000:]}"
    return int(found[2])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_ends_the_run_with_a_verdict_on_the_whole_run_drain_included(
    platform: Platform, tmp_path: Path, sig: signal.Signals
) -> None:
    locust = start_locust(platform, tmp_path)
    try:
        wait_until_sync(
            lambda: rides_under_way(tmp_path), timeout_s=60, interval_s=0.5, what="a ride"
        )
    finally:
        locust.send_signal(sig)
    code, output = finish(locust)
    assert code == 0, output[-3000:]
    total, api = final_counts(tmp_path)
    # the verdict counted every API call the final stats hold: the drain came before it
    assert gate_calls(output) == api, output[-3000:]
    assert csv_total(tmp_path) == total
    assert html_total(tmp_path) == total


def test_the_csv_report_agrees_with_the_final_stats_after_the_run_time(
    platform: Platform, tmp_path: Path
) -> None:
    locust = start_locust(platform, tmp_path, "-t", "8s")
    code, output = finish(locust)
    assert code == 0, output[-3000:]
    total, api = final_counts(tmp_path)
    assert gate_calls(output) == api, output[-3000:]
    assert csv_total(tmp_path) == total, "the CSV misses calls the final stats hold"
    assert html_total(tmp_path) == total, "the HTML report misses calls the final stats hold"


SLOW_DRAIN = Path(__file__).resolve().parents[1] / "support" / "slow_drain_locustfile.py"
WORKERS = 2
USERS = 6


def test_a_distributed_verdict_waits_for_every_workers_drain(tmp_path: Path) -> None:
    """Locust's master gives the workers' last reports 0.5 s; a drain takes longer."""
    env = clean_env(RIDEPULSE_SECRET="x" * 32, RIDEPULSE_SLO_CHECK_RIDES="0")
    port = free_port()
    locust = [tool("locust"), "-f", str(SLOW_DRAIN)]
    master = subprocess.Popen(
        [
            *locust,
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--headless",
            "-u",
            str(USERS),
            "-r",
            str(USERS),
            "-t",
            "3s",
            "--expect-workers",
            str(WORKERS),
            "--only-summary",
            "--json-file",
            str(tmp_path / "final"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    workers = [
        subprocess.Popen(
            [*locust, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    try:
        code, output = finish(master)
        for worker in workers:
            assert worker.wait(timeout=EXIT_WITHIN_S) == 0
    finally:
        for proc in (master, *workers):
            proc.kill()
    assert code == 0, output[-3000:]
    entries: list[dict[str, Any]] = orjson.loads((tmp_path / "final.json").read_bytes())
    signed_off = sum(int(e["num_requests"]) for e in entries if e["name"] == "sign-off")
    assert signed_off == USERS, f"the verdict missed {USERS - signed_off} users' drain"
    assert gate_calls(output) == sum(int(e["num_requests"]) for e in entries), output[-3000:]
