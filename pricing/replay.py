"""Rebuild the surge window at start, so a restart does not zero the surge (and then let it
spike while supply trickles back in): demand from the last window of ride.requested entries on
the ride stream, supply from the drivers' last positions and statuses.

The consumer group may deliver some of the same requests again; the window counts a ride id
once, so the overlap is harmless."""

from __future__ import annotations

from typing import Any

from pricing.deps import PricingDeps
from pricing.handlers import count_request
from ridepulse.contracts.events import RideRequestedV1
from ridepulse.contracts.registry import decode
from ridepulse.errors import InvalidEvent
from ridepulse.positions import parse_position

CHUNK = 1000
REQUESTED = b"ride.requested"


async def replay_demand(deps: PricingDeps, market: str, now_ms: int) -> int:
    """Count every ride requested in the window ending `now_ms`; returns how many were new."""
    window = deps.markets[market].window
    stream = deps.keys(market).rides
    start = f"{max(0, now_ms - window.window_ms)}-0"
    counted = 0
    while True:
        entries: Any = await deps.redis.xrange(stream, min=start, max="+", count=CHUNK)
        for _, fields in entries:
            if fields.get(b"type") != REQUESTED:
                continue
            try:
                event = decode(fields, market)
            except InvalidEvent:
                continue  # the consumer group dead-letters it; here it is simply not demand
            if isinstance(event.data, RideRequestedV1) and count_request(deps, market, event.data):
                counted += 1
        if len(entries) < CHUNK:
            return counted
        start = "(" + entries[-1][0].decode()


def _position(packed: bytes) -> tuple[float, float, int] | None:
    position = parse_position(packed)
    return None if position is None else (position.lat, position.lon, position.ts)


async def rebuild_supply(deps: PricingDeps, market: str) -> int:
    """Count the available drivers at their last positions (older ones the window drops)."""
    keys, window = deps.keys(market), deps.markets[market].window
    pipe = deps.redis.pipeline(transaction=False)
    pipe.hgetall(keys.driver_statuses)
    pipe.hgetall(keys.positions)
    statuses, positions = await pipe.execute()
    counted = 0
    for driver, status in statuses.items():
        position = _position(positions.get(driver, b"")) if status == b"available" else None
        if position is not None:
            lat, lon, ts = position
            window.add_driver(driver.decode(), deps.cell_of(lat, lon), ts)
            counted += 1
    return counted
