"""Real `ridepulse run <service>` replicas on market leases, for the pricing and eta lease
tests: start one, read who owns a market, wait for the split and for a takeover."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from ridepulse.leases import lease_key
from ridepulse.settings import Settings
from tests.support.waiting import wait_until

TTL_MS = 1500  # short leases, so a takeover is seconds into a test


def start_replica(
    settings: Settings, service: str, markets: str, **extra_env: str
) -> subprocess.Popen[bytes]:
    """One replica with leases on, fast reads and claims, and ``extra_env`` on top."""
    assert settings.redis_url
    env: dict[str, str] = dict(
        os.environ,
        RIDEPULSE_REDIS_URL=settings.redis_url,
        RIDEPULSE_KEY_PREFIX=settings.key_prefix,
        RIDEPULSE_DATA_DIR=str(settings.data_dir),
        RIDEPULSE_MARKETS=markets,
        RIDEPULSE_LEASES="1",
        RIDEPULSE_LEASE_TTL_MS=str(TTL_MS),
        RIDEPULSE_BLOCK_MS="200",
        RIDEPULSE_CLAIM_IDLE_MS="1000",
        RIDEPULSE_SECRET=settings.secret or "",
        **extra_env,
    )
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("ridepulse")), "run", service], cwd=os.getcwd(), env=env
    )


@contextmanager
def replicas(
    settings: Settings, service: str, markets: str, count: int = 2, **extra_env: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` replicas, each killed at the end if still running."""
    procs = [start_replica(settings, service, markets, **extra_env) for _ in range(count)]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def owner_pid(redis: aioredis.Redis, prefix: str, service: str, market: str) -> int | None:
    """The pid of the replica holding ``market`` (consumer names end in ``-<pid>``)."""
    raw: Any = await redis.get(lease_key(prefix, service, market))
    return int(raw.decode().rsplit("-", 1)[1]) if raw else None


async def wait_split(
    redis: aioredis.Redis, prefix: str, service: str, markets: Sequence[str]
) -> dict[str, int]:
    """Market → owner pid, once every market has an owner and no two share one."""

    async def split() -> dict[str, int] | None:
        owners = {m: await owner_pid(redis, prefix, service, m) for m in markets}
        if None in owners.values() or len(set(owners.values())) != len(markets):
            return None
        return {m: o for m, o in owners.items() if o}

    return await wait_until(split, timeout_s=60, what="one market each")


async def wait_takeover(
    redis: aioredis.Redis, prefix: str, service: str, markets: Sequence[str], pid: int
) -> float:
    """Seconds until ``pid`` owns every market; asserts it is within the lease time plus a
    renewal period and the member list's expiry, with slack for a loaded box."""
    started = time.monotonic()

    async def owns_all() -> bool:
        return all([await owner_pid(redis, prefix, service, m) == pid for m in markets])

    await wait_until(owns_all, timeout_s=60, what=f"{pid} to own {', '.join(markets)}")
    took_s = time.monotonic() - started
    assert took_s < 3 * TTL_MS / 1000 + 10, took_s
    return took_s


def split_owners(
    client: redis.Redis, service: str, markets: Sequence[str]
) -> dict[str, str] | None:
    """Market → owner's consumer name on a running platform (prefix `rp`), once every market
    has one and no two share one; else None (for wait_until_sync)."""
    got: dict[str, Any] = {m: client.get(f"rp:{{{m}}}:lease:{service}") for m in markets}
    if None in got.values():
        return None
    named = {m: v.decode().split(":", 1)[1] for m, v in got.items()}
    return named if len(set(named.values())) == len(markets) else None
