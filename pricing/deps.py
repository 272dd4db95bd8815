"""What pricing's handlers and background tasks share: per market a demand/supply window and
the surge last published; built once in pricing.service."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis

from pricing.surge import SurgeState, SurgeWindow
from ridepulse.bus.producer import Producer
from ridepulse.geo import cell_of
from ridepulse.keys import MarketKeys
from ridepulse.settings import Settings


@dataclass
class MarketSurge:
    window: SurgeWindow
    state: SurgeState = field(default_factory=SurgeState)


@dataclass
class PricingDeps:
    redis: aioredis.Redis
    settings: Settings
    source: str
    producer: Producer
    markets: dict[str, MarketSurge]

    def keys(self, market: str) -> MarketKeys:
        return MarketKeys(market, self.settings.key_prefix)

    def cell_of(self, lat: float, lon: float) -> str:
        return cell_of(lat, lon, self.settings.h3_resolution)

    @classmethod
    def create(
        cls, redis: aioredis.Redis, settings: Settings, markets: list[str], source: str
    ) -> PricingDeps:
        window_ms = round(settings.surge_window_s * 1000)
        return cls(
            redis=redis,
            settings=settings,
            source=source,
            producer=Producer(
                redis, telemetry_maxlen=settings.telemetry_maxlen, prefix=settings.key_prefix
            ),
            markets={m: MarketSurge(SurgeWindow(window_ms)) for m in markets},
        )
