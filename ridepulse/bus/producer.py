"""Appends of single events (ingest batches its own). Telemetry and notification streams trim
approximately."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from ridepulse.bus.metrics import EVENTS_PUBLISHED
from ridepulse.contracts.envelope import Envelope
from ridepulse.contracts.registry import channel_of
from ridepulse.keys import GlobalKeys, MarketKeys


def stream_for(envelope: Envelope, market: MarketKeys, global_keys: GlobalKeys) -> str:
    """The stream an event travels on, by its type's channel."""
    channel = channel_of(envelope.type)
    if channel == "health":
        return global_keys.health
    stream: str = getattr(
        market, {"surge": "surge_events", "eta": "eta_events"}.get(channel, channel)
    )
    return stream


# notifications (health, surge, eta): their consumers keep their own state, so a short history
NOTIFICATION_MAXLEN = 10_000


class Producer:
    """Appends events; `telemetry_maxlen` caps telemetry streams (approximate MAXLEN)."""

    def __init__(self, redis: aioredis.Redis, *, telemetry_maxlen: int, prefix: str = "rp") -> None:
        self.redis = redis
        self.telemetry_maxlen = telemetry_maxlen
        self.global_keys = GlobalKeys(prefix)
        self.prefix = prefix

    def _maxlen(self, stream: str) -> int | None:
        if stream.endswith(":telemetry"):
            return self.telemetry_maxlen
        if stream == self.global_keys.health or stream.endswith((":surge", ":eta")):
            return NOTIFICATION_MAXLEN
        return None  # ride streams: trimmed only by trim_acknowledged

    async def publish(self, stream: str, envelope: Envelope) -> bytes:
        entry_id: Any = await self.redis.xadd(
            stream,
            envelope.to_fields(),  # type: ignore[arg-type]
            maxlen=self._maxlen(stream),
            approximate=True,
        )
        EVENTS_PUBLISHED.labels(stream).inc()
        return bytes(entry_id)

    def route(self, envelope: Envelope, market: str) -> str:
        return stream_for(envelope, MarketKeys(market, self.prefix), self.global_keys)
