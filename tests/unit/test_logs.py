"""Log lines: readable on a terminal, JSON for pipes and files and when asked for."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pydantic
import pytest
from typer.testing import CliRunner

from ridepulse import cli, launcher
from ridepulse.logs import LogFormat, chosen_format, configure_logging, get_logger
from ridepulse.settings import Settings


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# each test configures logging its own way; the next one starts from what was
pytestmark = pytest.mark.usefixtures("restore_structlog")


@pytest.mark.parametrize(
    ("setting", "stream", "expected"),
    [
        ("auto", Terminal(), "console"),
        ("auto", io.StringIO(), "json"),
        ("json", Terminal(), "json"),
        ("console", io.StringIO(), "console"),
    ],
)
def test_auto_is_console_only_on_a_terminal_and_the_others_are_what_they_say(
    setting: LogFormat, stream: io.StringIO, expected: str
) -> None:
    assert chosen_format(setting, stream) == expected


def _log_one_event(
    monkeypatch: pytest.MonkeyPatch, stream: io.StringIO, log_format: LogFormat
) -> str:
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("matching", "info", log_format)
    get_logger().info("ride.matched", ride_id="r1")
    return stream.getvalue()


def test_a_terminal_gets_readable_lines_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _log_one_event(monkeypatch, Terminal(), "auto")
    assert "ride.matched" in out
    assert "ride_id" in out
    assert "r1" in out
    assert not out.lstrip().startswith("{"), f"expected a console line, got {out!r}"


@pytest.mark.parametrize(("stream", "log_format"), [(io.StringIO(), "auto"), (Terminal(), "json")])
def test_pipes_files_and_the_json_setting_get_one_json_object_per_line(
    monkeypatch: pytest.MonkeyPatch, stream: io.StringIO, log_format: LogFormat
) -> None:
    lines = _log_one_event(monkeypatch, stream, log_format).splitlines()
    assert len(lines) == 1, lines
    event: dict[str, Any] = orjson.loads(lines[0])
    assert event["event"] == "ride.matched"
    assert event["ride_id"] == "r1"
    assert event["service"] == "matching"
    assert event["level"] == "info"


def test_the_setting_reads_ridepulse_log_format_and_refuses_other_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RIDEPULSE_LOG_FORMAT", raising=False)
    assert Settings().log_format == "auto"
    monkeypatch.setenv("RIDEPULSE_LOG_FORMAT", "json")
    assert Settings().log_format == "json"
    monkeypatch.setenv("RIDEPULSE_LOG_FORMAT", "xml")
    with pytest.raises(pydantic.ValidationError, match="log_format"):
        Settings()


def test_up_passes_the_log_format_flag_to_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Settings] = []

    def run_platform(settings: Settings, *, simulate: bool, cluster_plan: object = None) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(launcher, "run_platform", run_platform)
    result = CliRunner().invoke(cli.app, ["up", "--no-sim", "--log-format", "json"])
    assert result.exit_code == 0, result.output
    assert [s.log_format for s in seen] == ["json"]
    refused = CliRunner().invoke(cli.app, ["up", "--log-format", "xml"])
    assert refused.exit_code == 2, refused.output
