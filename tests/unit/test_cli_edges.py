"""Small edges of the command line: each a one-line refusal or a right URL, never a traceback or a
flag silently ignored."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from typer.testing import CliRunner, Result

from ridepulse import cli, launcher
from ridepulse.cli_events import events_app
from ridepulse.settings import Settings

SECRET = "test-secret-not-for-production-0123456789"


def _one_line_refusal(result: Result, start: str) -> str:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    assert result.output.startswith(start) and result.output.count("\n") == 1, result.output
    return result.output


def test_events_asyncapi_into_a_directory_is_a_one_line_error(tmp_path: Path) -> None:
    """It was an IsADirectoryError traceback."""
    result = CliRunner().invoke(events_app, ["asyncapi", "--out", str(tmp_path)])
    _one_line_refusal(result, f"error: cannot write {tmp_path}: Is a directory")


def test_events_schemas_into_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    """It was a FileExistsError traceback."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = CliRunner().invoke(events_app, ["schemas", "--out", str(afile)])
    _one_line_refusal(result, f"error: cannot write into {afile}: File exists")


@pytest.mark.parametrize("flag", [["--primaries", "5"], ["--replicas", "0"]])
def test_cluster_shape_without_cluster_is_refused(
    flag: list[str], never_started: None, tmp_path: Path
) -> None:
    """`up --primaries 5` without --cluster started one embedded server, the flag ignored."""
    result = CliRunner().invoke(cli.app, ["up", "--data-dir", str(tmp_path), *flag])
    _one_line_refusal(result, "error: --primaries and --replicas shape the cluster of --cluster")


@pytest.mark.parametrize(
    ("args", "most_s"),
    [
        (["token", "--dashboard", "--ttl-s", "1000000000000"], 24 * 3600),
        (["token", "driver", "d-1", "--ttl-s", str(31 * 24 * 3600)], 30 * 24 * 3600),
    ],
)
def test_a_token_lifetime_past_its_cap_is_refused(
    args: list[str], most_s: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`token --dashboard --ttl-s 1000000000000` minted a link valid for millennia."""
    monkeypatch.setenv("RIDEPULSE_SECRET", SECRET)
    result = CliRunner().invoke(cli.app, args)
    _one_line_refusal(result, f"error: --ttl-s {args[-1]}: ")
    assert f"at most {most_s} s" in result.output, result.output
    at_cap = CliRunner().invoke(cli.app, [*args[:-1], str(most_s)])
    assert at_cap.exit_code == 0, at_cap.output
    claims = jwt.decode(at_cap.output.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == most_s


def test_the_banner_brackets_an_ipv6_host(capsys: pytest.CaptureFixture[str]) -> None:
    """`--host ::1` printed http://::1:8000/docs, which no browser or curl opens."""
    settings = Settings(host="::1", api_port=8000, dashboard_port=8080)
    launcher.print_banner(settings, SECRET, ["ingest", "dashboard"], False, None)
    shown = capsys.readouterr().out
    assert "API:       http://[::1]:8000/docs" in shown, shown
    assert "Dashboard: http://[::1]:8080/?token=" in shown, shown
