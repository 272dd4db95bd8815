"""What a fresh dashboard reads back at start: the ride stream's recent window, by time, so the
KPIs over time windows and the finished rides match a process that has been running all along."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

StreamEntry = tuple[bytes, dict[bytes, bytes]]


async def read_back(
    redis: aioredis.Redis, stream: str, newest: bytes, window_ms: int, *, page: int, cap: int
) -> list[StreamEntry]:
    """The entries from `newest` back over `window_ms` of stream-id time (the server's clock
    when each was added), newest first, in XREVRANGE pages of `page`, at most `cap` of them:
    past the cap the oldest part of the window is left out, never the newest."""
    since_ms = int(newest.split(b"-")[0]) - window_ms
    entries: list[StreamEntry] = []
    upper = newest.decode()
    while len(entries) < cap:
        count = min(page, cap - len(entries))
        batch: Any = await redis.xrevrange(stream, max=upper, min=f"{since_ms}-0", count=count)
        entries.extend(batch)
        if len(batch) < count:
            break
        upper = f"({batch[-1][0].decode()}"  # exclusive: the next page starts below this entry
    return entries
