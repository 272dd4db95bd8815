"""What eta's handlers and background tasks share: one object, built once in eta.service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from eta.active import ActiveRides
from eta.model import SpeedModel
from ridepulse.contracts.envelope import now_ms
from ridepulse.keys import MarketKeys
from ridepulse.rides.store import RideStore
from ridepulse.settings import Settings


@dataclass
class EtaDeps:
    """Per market a ride store and a speed model; `learned` holds the markets whose model
    changed since speeds were last persisted; `clock` is injectable so tests replay time."""

    redis: aioredis.Redis
    settings: Settings
    source: str
    stores: dict[str, RideStore]
    models: dict[str, SpeedModel]
    rides: ActiveRides = field(default_factory=ActiveRides)
    learned: set[str] = field(default_factory=set)
    clock: Callable[[], int] = now_ms

    def keys(self, market: str) -> MarketKeys:
        return self.stores[market].keys
