"""Real servers for the suite: one embedded Valkey per test session, a key prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ridepulse.redis_client import connect
from ridepulse.redis_server import EmbeddedRedis
from ridepulse.settings import Settings
from tests.support.settings import quick_bus_settings

pytest_plugins = ["tests.support.cpu_hogs"]


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Valkey of the test's own, for what must not reach the session's server: stopping,
    freezing or reconfiguring it (maxmemory, save points)."""
    server = EmbeddedRedis(tmp_path / "valkey").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("valkey")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
def key_prefix() -> str:
    """Each test owns its keys: no FLUSHALL, no collisions."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    return quick_bus_settings(
        redis_url=redis_url,
        key_prefix=key_prefix,
        data_dir=tmp_path,
        secret="test-secret-not-for-production-0123456789",
    )


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = connect(settings)
    yield client
    await client.aclose()
