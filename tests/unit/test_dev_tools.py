"""The developer commands the README promises: described targets, one CI entry point that runs the
checks, pre-commit running the same targets, and no system package installed behind `make test`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="needs GNU make")


def _make(*args: str) -> str:
    assert MAKE is not None
    result = subprocess.run(
        [MAKE, "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"make {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def _targets() -> set[str]:
    rule = re.compile(r"^([a-zA-Z.][\w.-]*):(?!=)")
    names = {
        m.group(1)
        for line in (ROOT / "Makefile").read_text().splitlines()
        if (m := rule.match(line))
    }
    return {n for n in names if n not in {".PHONY", ".DEFAULT_GOAL"}}


def test_make_help_describes_every_target() -> None:
    described = {line.split()[0] for line in _make("help").splitlines() if line.strip()}
    missing = _targets() - described
    assert not missing, f"give these Makefile targets a '## description': {sorted(missing)}"


def test_ci_runs_the_format_check_lint_strict_types_everywhere_and_the_suite() -> None:
    assert "make ci" in (ROOT / ".ci" / "run").read_text()
    plan = _make("-n", "ci")
    for step in ("ruff format --check .", "ruff check .", "mypy ", "-m pytest", "loadtests.ci_run"):
        assert step in plan, f"make ci does not run {step!r}:\n{plan}"
    mypy_line = next(line for line in plan.splitlines() if "mypy " in line)
    assert {"tests", "loadtests", "ridepulse"} <= set(mypy_line.split()), mypy_line


def test_make_test_installs_no_system_package() -> None:
    plan = _make("-n", "test")
    assert "apt-get" not in plan, plan
    assert "apt-get" in _make("-n", "deps")


def test_pre_commit_runs_the_same_make_targets() -> None:
    config: dict[str, Any] = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    entries = {hook["entry"] for repo in config["repos"] for hook in repo["hooks"]}
    assert entries == {"make lint", "make typecheck"}
