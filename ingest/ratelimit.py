"""Rate limits: per-driver pings, per-rider requests, per-token WebSocket connections.

Pings: a token bucket per driver, in this process's memory, because it sits on the hot path (a
Redis round trip per ping would halve ingest throughput); with N ingest replicas behind a
balancer the effective limit is at most N×. A single ping and each ping of a fleet's batch
draw on the same bucket. Rider limits are counted in Redis (exact across replicas), per rider
and market: the counter lives in the market's slot, so a request never waits on another
market's shard, and a rider active in k markets at once gets k× the limit. WebSocket caps per
process, like the sockets themselves."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from itertools import repeat

import redis.asyncio as aioredis

from ridepulse.errors import RateLimited
from ridepulse.keys import MarketKeys

MAX_TRACKED_DRIVERS = 200_000
SWEEP_EVERY_S = 30.0
# a burst sent at one instant sums its pings' refill times in floats: 19 × 0.2 s may come out a
# hair over 3.8 s, which would refuse the 20th ping of a burst of 20
SLACK_S = 1e-6


class PingRateLimiter:
    """A token bucket per driver, held as the moment it is full again (the cell rate algorithm):
    a ping takes one token, which is 1/rate seconds of refill. One float per driver, so a
    batch's drivers are checked and charged in a few passes in C (allow_all), not one Python
    call per ping. A full bucket is the same as no bucket, so every SWEEP_EVERY_S the full
    ones are dropped: with driver ids coming and going, the table holds the recently active
    drivers, not every id ever seen (docs/reliability.md)."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._per_ping_s = 1.0 / rate_per_s
        self._full_at: dict[str, float] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._full_at)

    def sweep(self, now: float) -> None:
        """Drop the buckets that are full again at `now`."""
        self._full_at = {driver: at for driver, at in self._full_at.items() if at > now}
        self._next_sweep = now + SWEEP_EVERY_S

    def allow(self, driver_id: str, cost: float = 1.0, now: float | None = None) -> bool:
        at = self._clock(now)
        full_at = max(self._full_at.get(driver_id, at), at)
        if full_at > self._latest_full_at(at, cost):
            return False
        self._make_room(0 if driver_id in self._full_at else 1)
        self._full_at[driver_id] = full_at + cost * self._per_ping_s
        return True

    def allow_all(self, driver_ids: Sequence[str], now: float | None = None) -> bool:
        """All or nothing: True, one token taken per id, when every driver's bucket holds its
        pings; False, nothing taken, when any one does not (the caller then goes one by one)."""
        at = self._clock(now)
        full_at = self._full_at
        # each driver once (a fleet's usual batch), and full again one ping from now if its
        # bucket is full now; these passes run in C, not one Python call per ping
        once = dict.fromkeys(driver_ids, at + self._per_ping_s)
        if len(once) < len(driver_ids):
            return self._allow_counts(Counter(driver_ids), at)
        latest = max(map(full_at.get, once, repeat(at)), default=at)
        if latest > self._latest_full_at(at, 1.0):
            return False
        self._make_room(len(once))
        if latest <= at:  # every bucket full
            full_at.update(once)
        else:
            starts = map(max, map(full_at.get, once, repeat(at)), repeat(at))
            full_at.update(zip(once, map(self._per_ping_s.__add__, starts), strict=True))
        return True

    def _allow_counts(self, counts: Counter[str], at: float) -> bool:
        full_at, latest = self._full_at, self._latest_full_at(at, 1.0)
        starts = {driver: max(full_at.get(driver, at), at) for driver in counts}
        if any(starts[d] + (n - 1) * self._per_ping_s > latest for d, n in counts.items()):
            return False
        self._make_room(len(counts))
        for driver, n in counts.items():
            full_at[driver] = starts[driver] + n * self._per_ping_s
        return True

    def _clock(self, now: float | None) -> float:
        at = time.monotonic() if now is None else now
        if at >= self._next_sweep:
            self.sweep(at)
        return at

    def _latest_full_at(self, at: float, cost: float) -> float:
        """A bucket full again by this moment still holds `cost` tokens at `at`."""
        return at + (self.burst - cost) * self._per_ping_s + SLACK_S

    def _make_room(self, drivers: int) -> None:
        if len(self._full_at) + drivers > MAX_TRACKED_DRIVERS:
            self._full_at.clear()  # bounded memory; a reset only ever grants a fresh burst


async def limit_rider(
    redis: aioredis.Redis, keys: MarketKeys, rider_id: str, action: str, per_min: int
) -> None:
    """A fixed one-minute window per rider, action and market, counted in Redis so the limit holds
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
