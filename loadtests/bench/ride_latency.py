"""Request → offered latency from the ride stream: both events carry the server's clock (the ride
scripts stamp `time` with Redis TIME), so the gap is what matching took, queueing included."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis


def request_to_offer_ms(events: Iterable[tuple[str, str, int]]) -> tuple[list[float], int]:
    """From (type, ride_id, time_ms) in stream order: the gap to each ride's first offer, and
    how many requested rides were never offered."""
    requested: dict[str, int] = {}
    offered: dict[str, int] = {}
    for event_type, ride_id, at in events:
        if event_type == "ride.requested":
            requested.setdefault(ride_id, at)
        elif event_type == "ride.offered":
            offered.setdefault(ride_id, at)
    gaps = [float(offered[r] - t) for r, t in requested.items() if r in offered]
    return gaps, sum(1 for r in requested if r not in offered)


async def ride_events(
    redis: aioredis.Redis, stream: str, since_ms: int, chunk: int = 5000
) -> list[tuple[str, str, int]]:
    """(type, ride_id, time_ms) of the ride stream from `since_ms` on."""
    out: list[tuple[str, str, int]] = []
    start = f"{since_ms}-0"
    while True:
        entries: Any = await redis.xrange(stream, min=start, max="+", count=chunk)
        for _entry_id, fields in entries:
            event_type = fields[b"type"].decode()
            if event_type in ("ride.requested", "ride.offered"):
                ride_id = orjson.loads(fields[b"data"]).get("ride_id", "")
                out.append((event_type, ride_id, int(fields[b"time"])))
        if len(entries) < chunk:
            return out
        start = "(" + entries[-1][0].decode()
