"""Drivers' last positions as matching's geo index stores them (HASH driver → "lat,lon,ts,heading")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from ridepulse.keys import MarketKeys


@dataclass(frozen=True, slots=True)
class Position:
    lat: float
    lon: float
    ts: int


def parse_position(raw: bytes | str | None) -> Position | None:
    """A packed position, or None when absent or malformed (a reader never trusts a hash blindly)."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    parts = text.split(",")
    try:
        return Position(float(parts[0]), float(parts[1]), int(parts[2]))
    except (IndexError, ValueError):
        return None


async def last_position(
    redis: aioredis.Redis, keys: MarketKeys, driver_id: str, *, not_before_ms: int
) -> Position | None:
    """The driver's last position if it is no older than `not_before_ms`."""
    raw: Any = await redis.hget(keys.positions, driver_id)
    position = parse_position(raw)
    return position if position is not None and position.ts >= not_before_ms else None
