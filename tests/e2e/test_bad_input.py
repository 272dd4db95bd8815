"""Bad input ends the real `ridepulse` command with exit 1 and `error: ` lines naming the flag,
variable or file to fix: never a Python traceback (README, "a value outside them … stops the
command before anything starts, with a line per problem naming the flag or variable to fix")."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ridepulse.redis_server import free_port
from tests.support.processes import RIDEPULSE

pytestmark = pytest.mark.e2e


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A minimal environment, keeping PYTHONPATH: the command runs the checkout under test."""
    kept = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    return {"PATH": "/usr/bin:/bin", **kept, "RIDEPULSE_DATA_DIR": str(tmp_path), **extra}


def refused(args: list[str], env: dict[str, str]) -> str:
    """The command's stderr, once it has ended with exit 1 and an error line, no traceback."""
    result = subprocess.run([RIDEPULSE, *args], capture_output=True, text=True, timeout=60, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, f"exit {result.returncode}: {result.stderr}"
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") or result.stderr.startswith("error: "), result.stderr
    return result.stderr


# ---- a Redis URL that no client could read -----------------------------------------------------

BAD_URLS = [
    "redis://:secret-pw@127.0.0.1:99999",
    "redis://:secret-pw@127.0.0.1:abc",
    "redis://:secret-pw@127.0.0.1:-1",
    "redis://:secret-pw@127.0.0.1:0",  # redis-py reads :0 as no port, so 6379
    "redis://:secret-pw@[::1",
    "redis://:secret-pw@127.0.0.1:6379?socket_timeout=abc",
    "redis://:secret-pw@127.0.0.1:6379/abc",
    "unix:///tmp/x.sock?db=abc",
    "redis+cluster://:secret-pw@127.0.0.1:1,127.0.0.1:abc",
    "redis+cluster://:secret-pw@127.0.0.1:1,,",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_malformed_redis_url_is_one_line_naming_the_variable(tmp_path: Path, url: str) -> None:
    err = refused(["status"], _env(tmp_path, RIDEPULSE_REDIS_URL=url))
    assert err.startswith("error: RIDEPULSE_REDIS_URL=(not shown): "), err
    assert "secret-pw" not in err


@pytest.mark.parametrize("command", [["deadletters"], ["run", "matching"], ["token", "ops", "me"]])
def test_every_command_refuses_a_malformed_redis_url(tmp_path: Path, command: list[str]) -> None:
    env = _env(tmp_path, RIDEPULSE_REDIS_URL="redis://:secret-pw@127.0.0.1:99999")
    err = refused(command, env)
    assert err.startswith("error: RIDEPULSE_REDIS_URL=(not shown): the port is not a number")
    assert "secret-pw" not in err


def test_up_names_the_flag_of_a_malformed_redis_url(tmp_path: Path) -> None:
    ports = ["--api-port", str(free_port()), "--dashboard-port", str(free_port())]
    url = "redis+cluster://:secret-pw@127.0.0.1:7001,127.0.0.1:abc"
    err = refused(["up", "--no-sim", "--redis-url", url, *ports], _env(tmp_path))
    assert err == (
        "error: --redis-url=(not shown): node '127.0.0.1:abc': the port is not a number from "
        "1 to 65535\n"
    )


# ---- a number no range holds --------------------------------------------------------------------


def test_an_infinite_period_stops_a_service_before_it_starts(tmp_path: Path) -> None:
    """It passed the setting's gt=0: pricing started, then died of `OverflowError: cannot
    convert float infinity to integer` at its first heartbeat."""
    env = _env(tmp_path, RIDEPULSE_HEARTBEAT_INTERVAL_S="inf")
    err = refused(["run", "pricing"], env)
    assert err == "error: RIDEPULSE_HEARTBEAT_INTERVAL_S='inf': Input should be a finite number\n"


# ---- a signing secret too short to sign with ----------------------------------------------------


@pytest.mark.parametrize("stored", ["", "short"])
@pytest.mark.parametrize("command", [["token", "driver", "d1"], ["up", "--no-sim"]])
def test_a_stored_secret_too_short_is_one_line_naming_the_file(
    tmp_path: Path, stored: str, command: list[str]
) -> None:
    """What a full disk used to leave behind: a 0-byte secret every later command failed on
    (`InvalidKeyError: HMAC key must not be empty`; `up` started everything first)."""
    (tmp_path / "secret").write_text(stored)
    ports = ["--api-port", str(free_port()), "--dashboard-port", str(free_port())]
    args = [*command, *ports] if command[0] == "up" else command
    err = refused(args, _env(tmp_path))
    assert err.startswith(f"error: the secret in {tmp_path / 'secret'} has {len(stored)} "), err
    assert err.rstrip().endswith("or set RIDEPULSE_SECRET")
    assert not (tmp_path / "redis.url").exists(), "up started before refusing"


def test_run_of_an_http_service_refuses_a_stored_secret_too_short(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("")
    env = _env(tmp_path, RIDEPULSE_REDIS_URL=f"redis://127.0.0.1:{free_port()}")
    err = refused(["run", "ingest"], env)
    assert err.startswith(f"error: the secret in {tmp_path / 'secret'} has 0 characters"), err


@pytest.mark.parametrize("given", ["x", " ", "short-but-not-32"])
def test_a_secret_variable_too_short_is_refused_unechoed(tmp_path: Path, given: str) -> None:
    err = refused(["token", "ops", "me"], _env(tmp_path, RIDEPULSE_SECRET=given))
    assert err == (
        "error: RIDEPULSE_SECRET=(not shown): 32 characters at least (not counting blanks)\n"
    )


# ---- a markets file that is not one -------------------------------------------------------------

SF = {
    "name": "San Francisco",
    "bbox": {"min_lat": 37.708, "min_lon": -122.515, "max_lat": 37.812, "max_lon": -122.355},
    "center": {"lat": 37.7749, "lon": -122.4194},
}


@pytest.mark.parametrize(
    ("doc", "line"),
    [
        ([], "the file: Input should be an object"),
        ({"markets": [{**SF, "id": "x", "name": None}]}, "markets[0].name: Input should be a"),
        ({"markets": [{**SF, "id": "s}f"}]}, "markets[0].id: 's}f' is not 1 to 32 of a-z"),
        ({"markets": [{**SF, "id": ""}]}, "markets[0].id: '' is not 1 to 32 of a-z"),
        ({"markets": [{**SF, "id": "a b"}]}, "markets[0].id: 'a b' is not 1 to 32 of a-z"),
        ({"markets": [{**SF, "id": "sf"}, {**SF, "id": "sf"}]}, "markets: Value error"),
        ({"markets": [{**SF, "id": "sf", "fares": {"base": 1}}]}, "markets[0].fares.base: Extra"),
    ],
)
def test_a_bad_markets_file_is_one_line_naming_the_file_and_field(
    tmp_path: Path, doc: object, line: str
) -> None:
    markets = tmp_path / "markets.json"
    markets.write_text(json.dumps(doc))
    err = refused(["status"], _env(tmp_path, RIDEPULSE_MARKETS_FILE=str(markets)))
    expected = "given more than once" if "Value error" in line else line
    assert err.startswith(f"error: markets: {markets}: "), err
    assert expected.removeprefix("markets: ") in err, err


def test_every_problem_of_a_markets_file_has_its_line(tmp_path: Path) -> None:
    markets = tmp_path / "markets.json"
    markets.write_text(json.dumps({"markets": [{**SF, "id": "a-b"}, {"id": "ok"}]}))
    err = refused(["status"], _env(tmp_path, RIDEPULSE_MARKETS_FILE=str(markets)))
    assert err.splitlines() == [
        f"error: markets: {markets}:",
        "  markets[0].id: 'a-b' is not 1 to 32 of a-z, 0-9 and _",
        "  markets[1].name: Field required",
        "  markets[1].bbox: Field required",
        "  markets[1].center: Field required",
    ]
