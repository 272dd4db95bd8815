"""`ridepulse up --cluster`: the flags reach the launcher, and a conflicting URL is refused."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from ridepulse import cli, launcher
from ridepulse.redis_server import free_port
from tests.unit.conftest import Launch


def test_cluster_flags_reach_the_launcher(launches: list[Launch], tmp_path: Path) -> None:
    runner = CliRunner()
    # ports nothing else holds: `up` checks them before it starts anything
    free = ["--api-port", str(free_port()), "--dashboard-port", str(free_port())]
    up = ["up", "--no-sim", "--data-dir", str(tmp_path), *free]
    assert runner.invoke(cli.app, up).exit_code == 0
    result = runner.invoke(cli.app, [*up, "--cluster", "--primaries", "2", "--replicas", "0"])
    assert result.exit_code == 0, result.output
    plans = [launch.cluster_plan for launch in launches]
    assert plans == [None, launcher.ClusterPlan(primaries=2, replicas=0)]


def test_cluster_and_a_redis_url_together_are_refused(never_started: None) -> None:
    result = CliRunner().invoke(
        cli.app, ["up", "--cluster", "--redis-url", "redis://127.0.0.1:6379/0"]
    )
    assert result.exit_code == 1
    assert "--cluster starts its own cluster" in result.output
