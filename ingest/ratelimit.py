"""Rate limits: per-driver pings, per-rider requests, per-token WebSocket connections.

Pings: a token bucket per driver, in this process's memory, because it sits on the hot path (a
Redis round trip per ping would halve ingest throughput); with N ingest replicas behind a
balancer the effective limit is at most N×. Rider limits are counted in Redis (exact across
replicas); WebSocket caps per process, like the sockets themselves."""

from __future__ import annotations

import math
import time

import redis.asyncio as aioredis

from ridepulse.errors import RateLimited
from ridepulse.keys import GlobalKeys

MAX_TRACKED_DRIVERS = 200_000
SWEEP_EVERY_S = 30.0


class PingRateLimiter:
    """A token bucket per driver. A bucket that has refilled to its burst is the same as no
    bucket, so every SWEEP_EVERY_S the full ones are dropped: with driver ids coming and going,
    the table holds the recently active drivers, not every id ever seen (docs/reliability.md)."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._buckets)

    def sweep(self, now: float) -> None:
        """Drop the buckets that are full again at `now`."""
        rate, burst = self.rate_per_s, self.burst
        self._buckets = {
            driver: (tokens, last)
            for driver, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * rate < burst
        }
        self._next_sweep = now + SWEEP_EVERY_S

    def allow(self, driver_id: str, cost: float = 1.0, now: float | None = None) -> bool:
        at = time.monotonic() if now is None else now
        if at >= self._next_sweep:
            self.sweep(at)
        tokens, last = self._buckets.get(driver_id, (self.burst, at))
        tokens = min(self.burst, tokens + (at - last) * self.rate_per_s)
        if tokens < cost:
            self._buckets[driver_id] = (tokens, at)
            return False
        if len(self._buckets) >= MAX_TRACKED_DRIVERS and driver_id not in self._buckets:
            self._buckets.clear()  # bounded memory; a reset only ever grants a fresh burst
        self._buckets[driver_id] = (tokens - cost, at)
        return True


async def limit_rider(
    redis: aioredis.Redis, keys: GlobalKeys, rider_id: str, action: str, per_min: int
) -> None:
    """A fixed one-minute window per rider and action, counted in Redis so the limit holds
    across ingest replicas (unlike the ping bucket, these routes are not the hot path).
    RateLimited (429, Retry-After = the rest of the window) past `per_min`; 0 = no limit."""
    if per_min <= 0:
        return
    now = time.time()
    window = int(now // 60)
    key = keys.rider_rate(rider_id, action, window)
    pipe = redis.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, 120)  # outlives its window; a key per minute, gone two minutes later
    count, _ = await pipe.execute()
    if int(count) > per_min:
        retry_after_s = max(1, math.ceil((window + 1) * 60 - now))
        raise RateLimited(
            f"at most {per_min} {action} per minute; retry in {retry_after_s} s",
            retry_after_s=retry_after_s,
        )
