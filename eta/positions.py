"""Drivers' last positions, as eta needs them (fresh enough to base an ETA on)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from ridepulse.keys import MarketKeys
from ridepulse.positions import Position, parse_position


async def last_position(
    redis: aioredis.Redis, keys: MarketKeys, driver_id: str, *, not_before_ms: int
) -> Position | None:
    """The driver's last position if it is no older than `not_before_ms`."""
    raw: Any = await redis.hget(keys.positions, driver_id)
    position = parse_position(raw)
    return position if position is not None and position.ts >= not_before_ms else None


__all__ = ["Position", "last_position", "parse_position"]
