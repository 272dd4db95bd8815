"""What the locustfile offers locust: classes that can get users, and a host to send them to.

Locust runs as a child process (importing it here would monkey-patch this one)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from loadtests.platform import tool

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "loadtests" / "locustfile.py"


def locust(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RIDEPULSE_SIM_FLEET")}
    return subprocess.run(
        [tool("locust"), "-f", str(LOCUSTFILE), *args],
        env={**base, "RIDEPULSE_SECRET": "x" * 32, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def offered(**env: str) -> list[str]:
    done = locust("--list", **env)
    assert done.returncode == 0, done.stderr
    return [line.strip() for line in done.stdout.splitlines()[1:] if line.strip()]


def test_fleet_user_is_not_offered_while_it_can_get_no_user() -> None:
    """Offered with weight 0, locust would refuse it: `There are no users with weight > 0`."""
    assert offered() == ["DriverUser", "RiderUser"]


@pytest.mark.parametrize("knob", ["RIDEPULSE_SIM_FLEET_USERS", "RIDEPULSE_SIM_FLEET_WEIGHT"])
def test_fleet_user_is_offered_once_the_environment_gives_it_users(knob: str) -> None:
    assert offered(**{knob: "2"}) == ["DriverUser", "RiderUser", "FleetUser"]


def test_naming_fleet_user_without_its_knobs_is_refused_in_one_line() -> None:
    done = locust("--headless", "-u", "1", "-t", "1s", "--host", "http://127.0.0.1:9", "FleetUser")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "Unknown User(s): FleetUser" in done.stderr, done.stderr


def test_make_loadtest_and_the_documented_commands_name_the_stacks_api() -> None:
    """Without --host the web UI opens with an empty host and a headless run cannot start."""
    makefile = (REPO / "Makefile").read_text()
    target = makefile.split("\nloadtest:", 1)[1].split("\n\n", 1)[0]
    assert "--host http://127.0.0.1:$(or $(RIDEPULSE_API_PORT),8000)" in target, target
    docstring = LOCUSTFILE.read_text().split('"""')[1]
    commands = docstring.split("\n\n")[1]
    assert commands.count("--host http://127.0.0.1:8000") == 2, commands
