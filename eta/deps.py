"""What eta's handlers and background tasks share: one object, built once in eta.service.

With ``settings.leases`` on, ``leases`` says which markets this replica owns (ridepulse.leases):
only their streams are read, and their speeds and ETAs are written through the fence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from eta.active import ActiveRides
from eta.model import SpeedModel
from ridepulse.contracts.envelope import now_ms
from ridepulse.keys import MarketKeys
from ridepulse.leases import LeaseKeeper, LeaseLost, lease_key
from ridepulse.rides.store import RideStore
from ridepulse.settings import Settings

SERVICE = "eta"


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
    leases: LeaseKeeper | None = None

    def keys(self, market: str) -> MarketKeys:
        return self.stores[market].keys

    def fresh_model(self, market: str) -> SpeedModel:
        """An empty speed model for ``market`` (at build, and for a market just taken over)."""
        self.models[market] = SpeedModel(
            resolution=self.settings.h3_resolution,
            learn_interval_ms=self.settings.eta_learn_interval_ms,
        )
        return self.models[market]

    def owns(self, market: str) -> bool:
        """Whether this replica may read and write ``market`` now (always, without leases)."""
        return self.leases is None or market in self.leases.held

    def require(self, market: str) -> None:
        """Raise LeaseLost for a market not held: its entry stays pending for its owner."""
        if not self.owns(market):
            raise LeaseLost(market)

    def fence(self, market: str) -> tuple[str | None, str]:
        """(lease key, fence value) for a fenced write; (None, "") without leases."""
        if self.leases is None:
            return None, ""
        if market not in self.leases.held:
            raise LeaseLost(market)
        return lease_key(self.settings.key_prefix, SERVICE, market), self.leases.fence(market)

    def refused(self, market: str) -> LeaseLost:
        """The fence refused a write: drop the market (its runtimes stop reading) and say so."""
        if self.leases is not None:
            self.leases.drop(market)
        self.learned.discard(market)
        return LeaseLost(market)
