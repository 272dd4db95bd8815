"""Fixtures shared by the integration tests that work on one market's ride store."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from ridepulse.keys import MarketKeys
from ridepulse.rides import RideStore
from ridepulse.settings import Settings


@pytest.fixture
def keys(settings: Settings) -> MarketKeys:
    """The `sf` market's keys under this test's own prefix."""
    return MarketKeys("sf", settings.key_prefix)


@pytest.fixture
def store(redis: aioredis.Redis, keys: MarketKeys) -> RideStore:
    return RideStore(redis, keys, "test")
