"""End-to-end fixtures: a whole platform (`ridepulse up --no-sim`) on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.api import City
from tests.support.processes import Platform

FAST_CLOCKS = {
    "RIDEPULSE_OFFER_TIMEOUT_S": "2",
    "RIDEPULSE_RIDE_DEADLINE_S": "8",
    "RIDEPULSE_HEARTBEAT_INTERVAL_S": "1",
    "RIDEPULSE_SURGE_WINDOW_S": "8",
    "RIDEPULSE_SURGE_INTERVAL_S": "0.5",
}


def start_city(data_dir: Path, **env: str) -> tuple[Platform, City]:
    platform = Platform(data_dir, "--no-sim", env={**FAST_CLOCKS, **env})
    try:
        platform.wait_up()
        city = City(platform)
        city.wait_ready()
    except BaseException:
        platform.stop()
        raise
    return platform, city


@contextlib.contextmanager
def running_city(data_dir: Path, **env: str) -> Iterator[City]:
    """A city for one test; afterwards no service may have died or been refused by its Redis
    user, and `ridepulse up` must exit cleanly."""
    platform, client = start_city(data_dir, **env)
    try:
        yield client
    finally:
        client.close()
        denied = platform.acl_denials()
        code = platform.stop()
    # nothing here kills a service, so none may have died (a restart loop hides behind retries)
    died = [line for line in platform.text().splitlines() if '"service.died"' in line]
    assert not died, f"services died during the test: {died[:3]}"
    assert not denied, (
        f"services were refused by their Redis users (ridepulse/acl_grants.py): {denied}"
    )
    assert code == 0, f"ridepulse up exited {code}:\n{platform.text()[-2000:]}"


@pytest.fixture
def city(tmp_path: Path) -> Iterator[City]:
    """A fresh city per test: matching decisions of one test never see another's drivers."""
    with running_city(tmp_path / "city") as client:
        yield client


@pytest.fixture
def two_cities(tmp_path: Path) -> Iterator[City]:
    """Both built-in markets on one platform (`RIDEPULSE_MARKETS=sf,nyc`)."""
    with running_city(tmp_path / "city", RIDEPULSE_MARKETS="sf,nyc") as client:
        yield client


@pytest.fixture(scope="module")
def shared_city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    """One city for tests that do not depend on matching (auth, validation)."""
    platform, client = start_city(tmp_path_factory.mktemp("shared"))
    yield client
    client.close()
    denied = platform.acl_denials()
    platform.stop()
    assert not denied, (
        f"services were refused by their Redis users (ridepulse/acl_grants.py): {denied}"
    )
