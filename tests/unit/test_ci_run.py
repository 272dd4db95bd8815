"""`make loadtest-ci` (loadtests/ci_run.py) refuses bad arguments and knobs before it starts a
stack, and hands the simulation's and the gate's knobs on to locust."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests import ci_run


class StackStarted(AssertionError):
    pass


@pytest.fixture
def no_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every case here must end before a platform is built."""

    def refuse(*_: object, **__: object) -> None:
        raise StackStarted("ci_run started a stack")

    monkeypatch.setattr(ci_run, "Platform", refuse)
    for name in ("RIDEPULSE_SLO_P95_MS", "RIDEPULSE_SIM_PING_INTERVAL_S", "RIDEPULSE_SIM_USE_WS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["--run-time", "abc"],
        ["--run-time", "0s"],
        ["--drivers", "-5"],
        ["--spawn-rate", "nan"],
        ["--drivers", "0", "--riders", "0"],
    ],
)
def test_bad_arguments_are_refused_before_the_stack_starts(
    no_stack: None, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        ci_run.main(argv)
    assert exited.value.code == 2
    assert "error: " in capsys.readouterr().err


def test_a_bad_knob_is_refused_by_name_before_the_stack_starts(
    no_stack: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RIDEPULSE_SIM_PING_INTERVAL_S", "nan")
    assert ci_run.main([]) == 1
    assert capsys.readouterr().out == (
        "ci_run: error: RIDEPULSE_SIM_PING_INTERVAL_S=nan: must be a finite number > 0\n"
    )


def test_simulation_and_slo_knobs_reach_locust_and_platform_settings_do_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RIDEPULSE_SLO_P95_MS", "250")
    monkeypatch.setenv("RIDEPULSE_SIM_USE_WS", "1")
    monkeypatch.setenv("RIDEPULSE_SIM_DRIVERS", "7")  # the --drivers argument decides
    monkeypatch.setenv("RIDEPULSE_API_PORT", "1")  # the stack's, not locust's
    monkeypatch.delenv("RIDEPULSE_SLO_FAIL_RATIO", raising=False)
    env = ci_run.locust_env(ci_run.parse_args(["--drivers", "20"]), "s" * 32, tmp_path)
    assert env["RIDEPULSE_SLO_P95_MS"] == "250" and env["RIDEPULSE_SIM_USE_WS"] == "1"
    assert env["RIDEPULSE_SIM_DRIVERS"] == "20" and env["RIDEPULSE_SLO_FAIL_RATIO"] == "0"
    assert "RIDEPULSE_API_PORT" not in env


def test_run_times_are_read_like_locust_reads_them() -> None:
    assert [ci_run.run_time_s(t) for t in ("30s", "2m", "1h30m", "45")] == [30, 120, 5400, 45]
    with pytest.raises(ValueError, match="abc"):
        ci_run.run_time_s("abc")
