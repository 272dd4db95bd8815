"""A bad setting, an unknown market, an unusable data dir or a busy port ends a command with one
line naming what to fix, before anything starts: never a traceback from a service."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import annotated_types
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from matching import geo_service
from ridepulse import cli
from ridepulse.redis_server import free_port
from ridepulse.settings import Settings
from ridepulse.telemetry_groups import TELEMETRY_GROUPS, parse_shed_groups
from tests.unit.conftest import Launch

BOUNDS = (annotated_types.Ge, annotated_types.Gt, annotated_types.Le, annotated_types.Lt)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, never_started: None) -> CliRunner:
    """A CLI whose platform must never start: every case here fails before it."""
    for name in ("RIDEPULSE_REDIS_URL", "RIDEPULSE_MARKETS", "RIDEPULSE_MARKETS_FILE"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


@pytest.fixture
def listening() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def refused(runner: CliRunner, args: list[str], env: dict[str, str] | None = None) -> str:
    result = runner.invoke(cli.app, args, env=env)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ")
    return result.output


def test_every_numeric_setting_has_a_range() -> None:
    """A new number without bounds would let a typo (a port of 99999, a BLOCK of 0) through."""
    unbounded = [
        name
        for name, field in Settings.model_fields.items()
        if field.annotation in (int, float)
        and not any(isinstance(m, BOUNDS) for m in field.metadata)
    ]
    assert unbounded == []


FLOAT_SETTINGS = [n for n, f in Settings.model_fields.items() if f.annotation is float]


@pytest.mark.parametrize("name", FLOAT_SETTINGS)
@pytest.mark.parametrize("value", ["inf", "-inf", "1e309"])
def test_no_float_setting_takes_an_infinite_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """inf passed gt=0: a heartbeat period of inf s killed pricing with an OverflowError after
    it started, a ride deadline of inf s got every ride request a 422 on a field not sent."""
    monkeypatch.setenv(f"RIDEPULSE_{name.upper()}", value)
    with pytest.raises(ValidationError) as refused_value:
        Settings()
    assert [e["loc"] for e in refused_value.value.errors()] == [(name,)]
    assert refused_value.value.errors()[0]["msg"] == "Input should be a finite number"


def test_the_float_settings_are_found() -> None:
    """The parametrisation above covers something: a change of annotation style would empty it."""
    assert {"heartbeat_interval_s", "ride_deadline_s", "surge_window_s"} <= set(FLOAT_SETTINGS)


def test_an_unknown_shedding_group_names_the_known_ones(runner: CliRunner) -> None:
    """A typo measured no group: ingest never shed and the janitor never held its sweeps."""
    out = refused(runner, ["status"], env={"RIDEPULSE_TELEMETRY_SHED_GROUPS": "matching.geo2"})
    assert out == (
        "error: RIDEPULSE_TELEMETRY_SHED_GROUPS='matching.geo2': unknown telemetry group "
        "'matching.geo2' (the groups are matching.geo, eta.speeds)\n"
    )


def test_the_shedding_groups_are_the_ones_the_telemetry_services_read() -> None:
    assert parse_shed_groups(Settings().telemetry_shed_groups) == {geo_service.GROUP}
    assert parse_shed_groups(" matching.geo , eta.speeds ,") == set(TELEMETRY_GROUPS)


def test_a_port_out_of_range_names_the_flag(runner: CliRunner, tmp_path: Path) -> None:
    out = refused(runner, ["up", "--api-port", "99999", "--data-dir", str(tmp_path)])
    assert out == "error: --api-port=99999: Input should be less than or equal to 65535\n"


def test_a_bad_variable_is_named_with_its_value(runner: CliRunner) -> None:
    out = refused(runner, ["run", "ingest"], env={"RIDEPULSE_API_PORT": "abc"})
    assert out.startswith("error: RIDEPULSE_API_PORT='abc': Input should be a valid integer")


def test_every_bad_variable_is_listed(runner: CliRunner) -> None:
    env = {
        "RIDEPULSE_BLOCK_MS": "0",
        "RIDEPULSE_KEY_PREFIX": "rp{x}",
        "RIDEPULSE_LOG_LEVEL": "loud",
    }
    out = refused(runner, ["status"], env=env)
    assert out.splitlines()[0] == "error: invalid settings:"
    assert "RIDEPULSE_BLOCK_MS='0': Input should be greater than or equal to 1" in out
    assert "RIDEPULSE_KEY_PREFIX='rp{x}': not empty, and no spaces or any of" in out
    assert "RIDEPULSE_LOG_LEVEL='loud': one of debug, info, warning, error, critical" in out


def test_a_redis_url_is_checked_but_never_echoed(runner: CliRunner) -> None:
    out = refused(runner, ["status"], env={"RIDEPULSE_REDIS_URL": "http://user:pw@h:6379"})
    assert "RIDEPULSE_REDIS_URL=(not shown): a Redis URL starts with one of redis://" in out
    assert "pw" not in out


def test_an_unknown_market_stops_up_before_any_service(runner: CliRunner, tmp_path: Path) -> None:
    out = refused(runner, ["up", "--markets", "sf,xyz", "--data-dir", str(tmp_path)])
    assert out == "error: markets: unknown market(s) 'xyz'; known: sf, nyc\n"


def test_a_missing_markets_file(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "markets.json"
    out = refused(runner, ["status"], env={"RIDEPULSE_MARKETS_FILE": str(missing)})
    assert f"error: markets: [Errno 2] No such file or directory: '{missing}'" in out


@pytest.mark.parametrize("command", [["up"], ["redis"], ["cluster", "up"]])
def test_a_data_dir_that_cannot_be_made(
    runner: CliRunner, tmp_path: Path, command: list[str]
) -> None:
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    out = refused(runner, [*command, "--data-dir", str(not_a_dir / "data")])
    assert (
        out
        == f"error: cannot use the data dir {not_a_dir / 'data'}: Not a directory (--data-dir)\n"
    )


def test_a_busy_port_stops_up(runner: CliRunner, tmp_path: Path, listening: int) -> None:
    args = ["up", "--data-dir", str(tmp_path), "--dashboard-port", str(free_port())]
    out = refused(runner, [*args, "--api-port", str(listening)])
    assert out == (
        f"error: cannot listen on 127.0.0.1:{listening} (--api-port, --host): "
        "the port is in use by another program\n"
    )


def test_one_port_for_both_servers(runner: CliRunner, tmp_path: Path) -> None:
    port = str(free_port())
    out = refused(
        runner, ["up", "--data-dir", str(tmp_path), "--api-port", port, "--dashboard-port", port]
    )
    assert out == f"error: --api-port and --dashboard-port are both {port}: give them two ports\n"


def test_an_unknown_host(runner: CliRunner, tmp_path: Path) -> None:
    out = refused(runner, ["up", "--data-dir", str(tmp_path), "--host", "999.1.1.1"])
    assert out.startswith("error: cannot listen on 999.1.1.1:8000 (--api-port, --host): unknown")


def test_a_token_that_would_be_born_expired(runner: CliRunner) -> None:
    result = runner.invoke(cli.app, ["token", "driver", "d1", "--ttl-s", "0"])
    assert result.exit_code == 2  # click's usage error
    assert "greater than or equal to 1" in result.output


def test_token_makes_no_secret_where_no_platform_ran(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ridepulse token` in a shell without the platform's RIDEPULSE_DATA_DIR made a new
    secret in ./.ridepulse: its tokens got 401, its dashboard link a 303 and no session."""
    monkeypatch.delenv("RIDEPULSE_SECRET", raising=False)
    nowhere = tmp_path / "nowhere"
    for args in (["token", "--dashboard"], ["token", "driver", "d-1"]):
        out = refused(runner, args, env={"RIDEPULSE_DATA_DIR": str(nowhere)})
        assert out == (
            f"error: no secret in the data dir {nowhere}: set RIDEPULSE_DATA_DIR to the "
            "platform's (or RIDEPULSE_SECRET), or run `ridepulse up` first\n"
        )
    assert not nowhere.exists()
    nowhere.mkdir()
    (nowhere / "secret").write_text("the-platforms-secret-0123456789abcdef")
    minted = runner.invoke(
        cli.app, ["token", "rider", "r-1"], env={"RIDEPULSE_DATA_DIR": str(nowhere)}
    )
    assert minted.exit_code == 0, minted.output


def test_an_empty_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """`RIDEPULSE_DATA_DIR=` put the data in the current directory, not .ridepulse."""
    monkeypatch.setenv("RIDEPULSE_DATA_DIR", "")
    monkeypatch.setenv("RIDEPULSE_KEY_PREFIX", "")
    settings = Settings()
    assert (settings.data_dir, settings.key_prefix) == (Path(".ridepulse"), "rp")


def test_good_settings_start_the_platform(launches: list[Launch], tmp_path: Path) -> None:
    """The control: the same checks let a valid command through to the launcher."""
    ports = [str(free_port()), str(free_port())]
    args = ["up", "--no-sim", "--data-dir", str(tmp_path / "new")]
    result = CliRunner().invoke(
        cli.app, [*args, "--api-port", ports[0], "--dashboard-port", ports[1]]
    )
    assert result.exit_code == 0, result.output
    ran = [(launch.settings.api_port, launch.settings.dashboard_port) for launch in launches]
    assert ran == [(int(ports[0]), int(ports[1]))]
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700


def test_up_takes_its_ports_from_the_environment(launches: list[Launch], tmp_path: Path) -> None:
    """Without the flags, RIDEPULSE_API_PORT and _DASHBOARD_PORT hold (the flags' defaults
    used to override them with 8000 and 8080)."""
    api, dashboard = free_port(), free_port()
    env = {"RIDEPULSE_API_PORT": str(api), "RIDEPULSE_DASHBOARD_PORT": str(dashboard)}
    result = CliRunner().invoke(cli.app, ["up", "--data-dir", str(tmp_path)], env=env)
    assert result.exit_code == 0, result.output
    ran = [(launch.settings.api_port, launch.settings.dashboard_port) for launch in launches]
    assert ran == [(api, dashboard)]


def test_an_unreachable_redis_stops_up(runner: CliRunner, tmp_path: Path) -> None:
    nobody = free_port()  # nothing listens there
    url = f"redis://:secret-pw@127.0.0.1:{nobody}/0"
    ports = ["--api-port", str(free_port()), "--dashboard-port", str(free_port())]
    out = refused(runner, ["up", "--data-dir", str(tmp_path), "--redis-url", url, *ports])
    assert out.startswith(f"error: cannot reach Redis at redis://***@127.0.0.1:{nobody}/0: ")
    assert out.endswith("(--redis-url)\n") and "secret-pw" not in out


@pytest.mark.parametrize(
    "command", [["status"], ["deadletters"], ["deadletters", "replay", "--all"]]
)
def test_an_unreachable_cluster_is_one_line_for_the_operator_commands(
    runner: CliRunner, tmp_path: Path, command: list[str]
) -> None:
    """What `ridepulse status` meets after `up --cluster` was killed: the URL file names a
    cluster nobody serves. A cluster client fails in its constructor, outside redis-py's
    RedisError (it printed a 256-line traceback); a plain URL always was one line."""
    url = f"redis+cluster://:secret-pw@127.0.0.1:{free_port()}/0"
    env = {"RIDEPULSE_REDIS_URL": url, "RIDEPULSE_DATA_DIR": str(tmp_path)}
    out = refused(runner, command, env=env)
    assert out.startswith("error: cannot reach Redis at redis+cluster://***@127.0.0.1:"), out
    assert "secret-pw" not in out


def test_an_unreachable_cluster_stops_up(runner: CliRunner, tmp_path: Path) -> None:
    url = f"redis+cluster://:secret-pw@127.0.0.1:{free_port()}/0"
    ports = ["--api-port", str(free_port()), "--dashboard-port", str(free_port())]
    out = refused(runner, ["up", "--data-dir", str(tmp_path), "--redis-url", url, *ports])
    assert out.startswith("error: cannot reach Redis at redis+cluster://***@"), out
    assert out.endswith("(--redis-url)\n") and "secret-pw" not in out


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://:pw@127.0.0.1:0", "the port is not a number from 1 to 65535"),
        ("redis://:pw@[::1", "Invalid IPv6 URL"),
        (
            "redis://:pw@h:1?socket_timeout=abc",
            "Invalid value for 'socket_timeout' in connection URL",
        ),
        ("redis+cluster://:pw@h:1,,", "an empty node between commas"),
    ],
)
def test_a_redis_url_no_client_could_read_is_refused(
    runner: CliRunner, url: str, reason: str
) -> None:
    out = refused(runner, ["status"], env={"RIDEPULSE_REDIS_URL": url})
    assert out == f"error: RIDEPULSE_REDIS_URL=(not shown): {reason}\n"


def test_metrics_ports_past_65535_stop_up(runner: CliRunner, tmp_path: Path) -> None:
    ports = ["--api-port", str(free_port()), "--dashboard-port", str(free_port())]
    out = refused(
        runner, ["up", "--data-dir", str(tmp_path), *ports], env={"RIDEPULSE_METRICS_PORT": "65533"}
    )
    assert out == (
        "error: RIDEPULSE_METRICS_PORT=65533: the 6 consumer processes serve /metrics on that "
        "port and the next ones, past 65535\n"
    )
