"""Markets given to replicas by lease, with fencing tokens.

ETA and pricing keep per-market state in memory, so one replica at a time may own a market.
Ownership is a key per (service, market) — ``{prefix}:{market}:lease:{service}`` — that holds
``<token>:<owner>`` and expires after ``ttl_ms`` unless its owner renews it. The token comes from
INCR on a counter next to it and only ever grows, so every new owner holds a larger token than
any before it. A write that matters goes through `fenced_hset`: a script that compares the lease
with the writer's ``<token>:<owner>`` and writes in the same atomic step, so an owner that was
paused (GC, SIGSTOP, a slow disk) past its expiry is refused instead of overwriting the new
owner's state. Both keys carry the market's hash tag, so the check and the write share one slot
on a cluster. The scripts run by EVALSHA (loaded on first use), the way every other script in
the project runs, so the service users need no EVAL grant.

Replicas split the markets evenly: each counts the live replicas of its service (a ZSET of
member → last beat, its entries older than the lease time dropped) and owns at most
``ceil(markets / live)``; a replica holding more releases the surplus, so a newcomer gets its
share within a renewal period, and a dead owner's market is free when its lease expires.
"""

from __future__ import annotations

import asyncio
import math
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from ridepulse.pause import sleep_or_stop

# KEYS: lease, fence counter. ARGV: owner, ttl_ms, token held ("" when none).
# Renews when the caller still holds the lease (same token), takes it with a fresh token when it
# is free, else returns 0. Returns the token held after the call.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  if ARGV[3] ~= '' and current == ARGV[3] .. ':' .. ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(ARGV[3])
  end
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return token
"""

# KEYS: lease. ARGV: "<token>:<owner>". Deletes only one's own lease.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: lease, hash[, stream]. ARGV: "<token>:<owner>", the number of HSET arguments and them
# (field, value pairs), the number of fields to HDEL and them, then with a stream: its MAXLEN
# (approximate) and the entry's field, value pairs. Returns the entry id (or 1 without a
# stream) when written, nil when the fence refused the write.
_FENCED_HSET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return nil
end
local i = 2
local sets = tonumber(ARGV[i])
if sets > 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, i + 1, i + sets))
end
i = i + sets + 1
local deletes = tonumber(ARGV[i])
if deletes > 0 then
  redis.call('HDEL', KEYS[2], unpack(ARGV, i + 1, i + deletes))
end
i = i + deletes + 1
if KEYS[3] then
  return redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[i], '*', unpack(ARGV, i + 1))
end
return 1
"""


class LeaseLost(Exception):
    """The fence refused a write, or the market is not held: another replica owns it now. Not
    the event's fault — a consumer leaves its entry pending, unspent, for the owner to claim."""


MarketHook = Callable[[str], Awaitable[None]]


def lease_key(prefix: str, service: str, market: str) -> str:
    return f"{prefix}:{{{market}}}:lease:{service}"


def fence_key(prefix: str, service: str, market: str) -> str:
    return f"{prefix}:{{{market}}}:lease:{service}:fence"


def members_key(prefix: str, service: str) -> str:
    return f"{prefix}:lease-members:{service}"


def fair_share(markets: int, live_replicas: int) -> int:
    """The most markets one replica should own so that ``live_replicas`` cover them all."""
    if markets <= 0:
        return 0
    return math.ceil(markets / max(1, live_replicas))


def plan(
    markets: Sequence[str], owned: Sequence[str], share: int, owner: str
) -> tuple[list[str], list[str]]:
    """(to release, to try): give back the surplus beyond ``share`` (the last taken first), and
    while under it, try the markets not owned — in an order rotated by the owner's name so
    replicas starting together do not all race for the same market first."""
    owned_set = set(owned)
    release = list(owned)[share:] if len(owned) > share else []
    if len(owned) >= share:
        return release, []
    free = [m for m in markets if m not in owned_set]
    if not free:
        return [], []
    start = zlib.crc32(owner.encode()) % len(free)
    return [], free[start:] + free[:start]


@dataclass
class LeaseKeeper:
    """Holds this replica's leases for one service; `tick` renews, gives back and takes them.

    ``held`` maps market → fencing token. Callers check ``held`` before they touch a market's
    state and pass `fence(market)` to the writes that must be fenced.
    """

    redis: Redis
    prefix: str
    service: str
    owner: str
    markets: Sequence[str]
    ttl_ms: int = 5000
    held: dict[str, int] = field(default_factory=dict)

    def fence(self, market: str) -> str:
        """The value the lease holds while this replica owns ``market``."""
        return f"{self.held[market]}:{self.owner}"

    async def _acquire(self, market: str, token: int | None) -> int:
        keys = [
            lease_key(self.prefix, self.service, market),
            fence_key(self.prefix, self.service, market),
        ]
        got: Any = await self.redis.register_script(_ACQUIRE)(
            keys=keys, args=[self.owner, self.ttl_ms, "" if token is None else token]
        )
        return int(got)

    async def live_replicas(self, now_ms: int) -> int:
        key = members_key(self.prefix, self.service)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(key, {self.owner: now_ms})
        pipe.zremrangebyscore(key, "-inf", now_ms - self.ttl_ms)
        pipe.zcard(key)
        _, _, live = await pipe.execute()
        return int(live)

    async def tick(self, now_ms: int) -> tuple[set[str], set[str]]:
        """One round; returns (markets gained, markets lost)."""
        lost: set[str] = set()
        for market, token in list(self.held.items()):
            if await self._acquire(market, token) != token:
                lost.add(market)
                del self.held[market]
        share = fair_share(len(self.markets), await self.live_replicas(now_ms))
        release, candidates = plan(self.markets, list(self.held), share, self.owner)
        for market in release:
            await self.release(market)
            lost.add(market)
        gained: set[str] = set()
        for market in candidates:
            if len(self.held) >= share:
                break
            token = await self._acquire(market, None)
            if token:
                self.held[market] = token
                gained.add(market)
        return gained, lost

    async def release(self, market: str) -> None:
        """Give a market back at once (shutdown, surplus) instead of letting it expire."""
        if market not in self.held:
            return
        value = self.fence(market)
        del self.held[market]
        await self.redis.register_script(_RELEASE)(
            keys=[lease_key(self.prefix, self.service, market)], args=[value]
        )

    async def release_all(self) -> None:
        for market in list(self.held):
            await self.release(market)
        await self.redis.zrem(members_key(self.prefix, self.service), self.owner)

    def drop(self, market: str) -> None:
        """The fence refused this replica's write: the market is someone else's now (no release:
        the lease is not ours to delete)."""
        self.held.pop(market, None)

    async def run(
        self,
        stop: asyncio.Event,
        now_ms: Callable[[], int],
        *,
        on_gained: MarketHook | None = None,
        on_lost: MarketHook | None = None,
        on_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Tick every third of the lease time until ``stop``, then give every market back. Each
        round tells ``on_lost`` first, then ``on_gained`` (a market lost and taken again in one
        round is rebuilt); ``on_stop`` runs while the markets are still held (a last write)."""
        try:
            while not stop.is_set():
                gained, lost = await self.tick(now_ms())
                for market in sorted(lost):
                    if on_lost is not None:
                        await on_lost(market)
                for market in sorted(gained):
                    if on_gained is not None:
                        await on_gained(market)
                await sleep_or_stop(stop, self.ttl_ms / 3000)
            if on_stop is not None:
                await on_stop()
        finally:
            await self.release_all()


@dataclass(frozen=True, slots=True)
class Announcement:
    """A stream entry written in the same fenced step as the state it announces."""

    stream: str
    fields: dict[bytes, bytes]
    maxlen: int


async def fenced_hset(
    redis: Redis,
    lease: str,
    fence: str,
    key: str,
    mapping: dict[str, str] | None = None,
    delete: Sequence[str] = (),
    announce: Announcement | None = None,
) -> bool:
    """HSET ``mapping`` and HDEL ``delete`` on ``key`` only while ``lease`` holds ``fence``, and
    with ``announce`` XADD its entry, all in one atomic step: a replica that lost the market
    neither writes the state nor announces it. False when the fence refused."""
    sets = [part for name, value in (mapping or {}).items() for part in (name, value)]
    args: list[str | bytes | int] = [fence, len(sets), *sets, len(delete), *delete]
    keys = [lease, key]
    if announce is not None:
        keys.append(announce.stream)
        args += [announce.maxlen, *(p for f, v in announce.fields.items() for p in (f, v))]
    written: Any = await redis.register_script(_FENCED_HSET)(keys=keys, args=args)
    return written is not None
