"""Rebuild the surge window at start, so a restart does not zero the surge (and then let it
spike while supply trickles back in): demand from the last window of ride.requested entries on
the ride stream (supply is read afresh on every tick: pricing/supply.py).

The consumer group may deliver some of the same requests again; the window counts a ride id
once, so the overlap is harmless."""

from __future__ import annotations

from typing import Any

from pricing.deps import PricingDeps
from pricing.handlers import count_request
from ridepulse.contracts.events import RideRequestedV1
from ridepulse.contracts.registry import decode
from ridepulse.errors import InvalidEvent

CHUNK = 1000
REQUESTED = b"ride.requested"


def count_requests_in(deps: PricingDeps, market: str, entries: Any) -> int:
    """Count the ride.requested entries among `entries` (XRANGE's reply) as demand; returns how
    many were new to the window."""
    counted = 0
    for _, fields in entries:
        if fields.get(b"type") != REQUESTED:
            continue
        try:
            event = decode(fields, market)
        except InvalidEvent:
            continue  # the consumer group dead-letters it; here it is simply not demand
        if isinstance(event.data, RideRequestedV1) and count_request(deps, market, event.data):
            counted += 1
    return counted


async def replay_demand(deps: PricingDeps, market: str, now_ms: int) -> int:
    """Count every ride requested in the window ending `now_ms`; returns how many were new."""
    window = deps.markets[market].window
    stream = deps.keys(market).rides
    start = f"{max(0, now_ms - window.window_ms)}-0"
    counted = 0
    while True:
        entries: Any = await deps.redis.xrange(stream, min=start, max="+", count=CHUNK)
        counted += count_requests_in(deps, market, entries)
        if len(entries) < CHUNK:
            return counted
        start = "(" + entries[-1][0].decode()
