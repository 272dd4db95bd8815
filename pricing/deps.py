"""What pricing's handlers and background tasks share: per market a demand/supply window and
the surge last published; built once in pricing.service.

With ``settings.leases`` on, ``leases`` says which markets this replica owns (ridepulse.leases):
only those are published, through the fenced write."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis

from pricing.surge import SurgeState, SurgeWindow
from ridepulse.bus.producer import Producer
from ridepulse.geo import cell_of
from ridepulse.keys import MarketKeys
from ridepulse.leases import LeaseKeeper
from ridepulse.settings import Settings


@dataclass
class MarketSurge:
    window: SurgeWindow
    state: SurgeState = field(default_factory=SurgeState)
    # Leased mode: the last ride-stream id read by the owner's catch-up (pricing.publisher), so
    # demand the group delivered to another replica still reaches this market's window.
    cursor: str = "0-0"


def market_surge(settings: Settings) -> MarketSurge:
    """An empty window and published state, sized and damped by the settings."""
    window = SurgeWindow(round(settings.surge_window_s * 1000))
    return MarketSurge(window, SurgeState(settings.surge_min_change))


@dataclass
class PricingDeps:
    redis: aioredis.Redis
    settings: Settings
    source: str
    producer: Producer
    markets: dict[str, MarketSurge]
    leases: LeaseKeeper | None = None

    def keys(self, market: str) -> MarketKeys:
        return MarketKeys(market, self.settings.key_prefix)

    def cell_of(self, lat: float, lon: float) -> str:
        return cell_of(lat, lon, self.settings.h3_resolution)

    def owns(self, market: str) -> bool:
        """Whether this replica may publish ``market`` now (always, without leases)."""
        return self.leases is None or market in self.leases.held

    def fresh_market(self, market: str) -> MarketSurge:
        """An empty window and state for ``market`` (a market just taken over is rebuilt)."""
        self.markets[market] = market_surge(self.settings)
        return self.markets[market]

    @classmethod
    def create(
        cls,
        redis: aioredis.Redis,
        settings: Settings,
        markets: list[str],
        source: str,
        owner: str | None = None,
    ) -> PricingDeps:
        leases = None
        if settings.leases:
            leases = LeaseKeeper(
                redis,
                settings.key_prefix,
                "pricing",
                owner or source,
                markets,
                ttl_ms=settings.lease_ttl_ms,
            )
        return cls(
            redis=redis,
            settings=settings,
            source=source,
            producer=Producer(
                redis, telemetry_maxlen=settings.telemetry_maxlen, prefix=settings.key_prefix
            ),
            markets={m: market_surge(settings) for m in markets},
            leases=leases,
        )
