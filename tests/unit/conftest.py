"""Fixtures the unit tests share: the launcher replaced, so `ridepulse up` and `ridepulse
redis` run every check of the command line and start nothing; structlog's configuration put
back after a test that logs its own way."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import structlog

from ridepulse import launcher
from ridepulse.settings import Settings


@dataclass(frozen=True)
class Launch:
    """One platform the CLI asked the launcher to run."""

    settings: Settings
    simulate: bool
    cluster_plan: launcher.ClusterPlan | None


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[Launch]:
    """Every `ridepulse up` that passed its checks, recorded instead of run."""
    recorded: list[Launch] = []

    def run_platform(
        settings: Settings, *, simulate: bool, cluster_plan: launcher.ClusterPlan | None = None
    ) -> int:
        recorded.append(Launch(settings, simulate, cluster_plan))
        return 0

    monkeypatch.setattr(launcher, "run_platform", run_platform)
    return recorded


@pytest.fixture
def never_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """A case that must fail before anything starts: starting the platform or a server fails it."""
    for starts in ("run_platform", "run_server_only"):
        monkeypatch.setattr(launcher, starts, lambda *a, **k: pytest.fail("started"))


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
    structlog.contextvars.clear_contextvars()
