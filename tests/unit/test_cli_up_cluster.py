"""`ridepulse up --cluster`: the flags reach the launcher, and a conflicting URL is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ridepulse import cli, launcher
from ridepulse.redis_server import free_port
from ridepulse.settings import Settings


def test_cluster_flags_reach_the_launcher(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    plans: list[launcher.ClusterPlan | None] = []

    def run_platform(
        settings: Settings, *, simulate: bool, cluster_plan: launcher.ClusterPlan | None = None
    ) -> int:
        plans.append(cluster_plan)
        return 0

    monkeypatch.setattr(launcher, "run_platform", run_platform)
    runner = CliRunner()
    # ports nothing else holds: `up` checks them before it starts anything
    free = ["--api-port", str(free_port()), "--dashboard-port", str(free_port())]
    up = ["up", "--no-sim", "--data-dir", str(tmp_path), *free]
    assert runner.invoke(cli.app, up).exit_code == 0
    result = runner.invoke(cli.app, [*up, "--cluster", "--primaries", "2", "--replicas", "0"])
    assert result.exit_code == 0, result.output
    assert plans == [None, launcher.ClusterPlan(primaries=2, replicas=0)]


def test_cluster_and_a_redis_url_together_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "run_platform", lambda *a, **k: pytest.fail("must not start"))
    result = CliRunner().invoke(
        cli.app, ["up", "--cluster", "--redis-url", "redis://127.0.0.1:6379/0"]
    )
    assert result.exit_code == 1
    assert "--cluster starts its own cluster" in result.output
