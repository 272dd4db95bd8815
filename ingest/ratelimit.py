"""Per-driver ping rate limit: a token bucket per driver, in this process's memory.

In memory because it sits on the hot path (a Redis round trip per ping would halve ingest
throughput); with N ingest replicas behind a balancer the effective limit is at most N×."""

from __future__ import annotations

import time

MAX_TRACKED_DRIVERS = 200_000


class PingRateLimiter:
    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, driver_id: str, cost: float = 1.0, now: float | None = None) -> bool:
        at = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(driver_id, (self.burst, at))
        tokens = min(self.burst, tokens + (at - last) * self.rate_per_s)
        if tokens < cost:
            self._buckets[driver_id] = (tokens, at)
            return False
        if len(self._buckets) >= MAX_TRACKED_DRIVERS and driver_id not in self._buckets:
            self._buckets.clear()  # bounded memory; a reset only ever grants a fresh burst
        self._buckets[driver_id] = (tokens - cost, at)
        return True
