"""Market leases against the real server: replicas split markets, a killed owner's market is
taken over within the lease time, and a paused old owner's write is refused by the fence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from ridepulse.leases import Announcement, LeaseKeeper, fenced_hset, lease_key
from ridepulse.settings import Settings
from tests.support.bus import wait_exit
from tests.support.lease_proc import scratch_hash
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

MARKETS = ["sf", "nyc"]
TTL_MS = 1500


async def test_a_paused_owner_write_after_expiry_is_refused(
    redis: aioredis.Redis, settings: Settings
) -> None:
    prefix = settings.key_prefix
    old = LeaseKeeper(redis, prefix, "pricing", "pricing@a-1", ["sf"], ttl_ms=300)
    await old.tick(int(time.time() * 1000))
    assert "sf" in old.held
    stale = old.fence("sf")
    lease, state = lease_key(prefix, "pricing", "sf"), scratch_hash(prefix, "sf")
    assert await fenced_hset(redis, lease, stale, state, {"cell": "1.5"})
    # the old owner misses its renewals; its lease expires and another replica takes the market
    await wait_until(lambda: _missing(redis, lease), timeout_s=10, what="the lease to expire")
    new = LeaseKeeper(redis, prefix, "pricing", "pricing@b-2", ["sf"], ttl_ms=300)
    await new.tick(int(time.time() * 1000))
    assert new.held["sf"] > old.held["sf"]  # the token only grows
    assert not await fenced_hset(redis, lease, stale, state, {"cell": "9.9"}, delete=["x"])
    assert await fenced_hset(redis, lease, new.fence("sf"), state, {"cell": "2.0"})
    assert await redis.hget(state, "cell") == b"2.0"
    # and the old owner learns it lost the market at its next renewal
    _, lost = await old.tick(int(time.time() * 1000))
    assert lost == {"sf"} and not old.held


async def test_fenced_hset_deletes_fields_only_while_the_lease_is_held(
    redis: aioredis.Redis, settings: Settings
) -> None:
    prefix = settings.key_prefix
    keeper = LeaseKeeper(redis, prefix, "pricing", "pricing@a-1", ["sf"], ttl_ms=5000)
    await keeper.tick(int(time.time() * 1000))
    lease, state = lease_key(prefix, "pricing", "sf"), scratch_hash(prefix, "sf")
    assert await fenced_hset(redis, lease, keeper.fence("sf"), state, {"a": "1", "b": "2"})
    assert await fenced_hset(redis, lease, keeper.fence("sf"), state, delete=["a"])
    assert await redis.hgetall(state) == {b"b": b"2"}
    await keeper.release_all()
    assert await redis.exists(lease) == 0


async def test_the_announcement_is_written_with_the_state_or_not_at_all(
    redis: aioredis.Redis, settings: Settings
) -> None:
    prefix = settings.key_prefix
    keeper = LeaseKeeper(redis, prefix, "pricing", "pricing@a-1", ["sf"], ttl_ms=5000)
    await keeper.tick(int(time.time() * 1000))
    lease, state = lease_key(prefix, "pricing", "sf"), scratch_hash(prefix, "sf")
    stream = f"{prefix}:{{sf}}:scratch-events"
    event = Announcement(stream, {b"type": b"surge.updated", b"data": b'{"cell":"2.0"}'}, 100)
    held = keeper.fence("sf")
    assert await fenced_hset(redis, lease, held, state, {"cell": "2.0"}, ["gone"], event)
    entries: Any = await redis.xrange(stream)
    assert [fields for _, fields in entries] == [event.fields]
    await keeper.release_all()  # the market is no longer this replica's
    assert not await fenced_hset(redis, lease, held, state, {"cell": "9.9"}, announce=event)
    assert await redis.xlen(stream) == 1  # refused: no stale announcement
    assert await redis.hgetall(state) == {b"cell": b"2.0"}


async def test_two_replicas_split_two_markets_and_a_killed_ones_market_is_taken_over(
    redis: aioredis.Redis, settings: Settings
) -> None:
    a = _start(settings)
    b = _start(settings)
    try:
        owners = await wait_until(
            lambda: _split(redis, settings.key_prefix), timeout_s=30, what="one market each"
        )
        victim_pid = int(owners["sf"].rsplit("-", 1)[1])
        victim, survivor = (a, b) if a.pid == victim_pid else (b, a)
        victim.send_signal(signal.SIGKILL)
        await wait_exit(victim, 10)
        killed_at = time.monotonic()
        taken = await wait_until(
            lambda: _owned_by_all(redis, settings.key_prefix, survivor.pid),
            timeout_s=30,
            what="the survivor to own both markets",
        )
        took_s = time.monotonic() - killed_at
        assert taken
        # the lease time plus a renewal period and the member list's expiry, with slack for a
        # loaded machine; far below a restart-and-replay of the old owner
        assert took_s < 3 * TTL_MS / 1000 + 5, took_s
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_a_stopped_owner_resumed_after_takeover_cannot_write(
    redis: aioredis.Redis, settings: Settings
) -> None:
    prefix = settings.key_prefix
    a = _start(settings, markets="sf")
    try:
        await wait_until(lambda: _owner(redis, prefix, "sf"), timeout_s=30, what="a to own sf")
        a_owner = await _owner(redis, prefix, "sf")
        a.send_signal(signal.SIGSTOP)
        b = _start(settings, markets="sf")
        try:
            await wait_until(
                lambda: _owner_pid_is(redis, prefix, "sf", b.pid), timeout_s=30, what="b owns sf"
            )
            await wait_until(
                lambda: _hash_owner_pid_is(redis, prefix, "sf", b.pid),
                timeout_s=30,
                what="b to write",
            )
            a.send_signal(signal.SIGCONT)
            refused = f"{prefix}:lease-test:refused:{a_owner}"
            await wait_until(lambda: redis.get(refused), timeout_s=30, what="a's refused write")
            # a's resumed write never landed: the state still shows b
            assert await _hash_owner_pid_is(redis, prefix, "sf", b.pid)
        finally:
            b.kill()
            b.wait()
    finally:
        a.send_signal(signal.SIGCONT)
        a.kill()
        a.wait()


def _start(settings: Settings, markets: str = ",".join(MARKETS)) -> subprocess.Popen[bytes]:
    assert settings.redis_url
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.lease_proc",
            "--redis-url",
            settings.redis_url,
            "--prefix",
            settings.key_prefix,
            "--markets",
            markets,
            "--ttl-ms",
            str(TTL_MS),
        ],
        cwd=os.getcwd(),
        env=dict(os.environ),
    )


async def _owner(redis: aioredis.Redis, prefix: str, market: str) -> str | None:
    raw: Any = await redis.get(lease_key(prefix, "lease-test", market))
    return raw.decode().split(":", 1)[1] if raw else None


async def _split(redis: aioredis.Redis, prefix: str) -> dict[str, str] | None:
    owners = {m: await _owner(redis, prefix, m) for m in MARKETS}
    if None in owners.values() or len(set(owners.values())) != len(MARKETS):
        return None
    return {m: o for m, o in owners.items() if o}


async def _owner_pid_is(redis: aioredis.Redis, prefix: str, market: str, pid: int) -> bool:
    owner = await _owner(redis, prefix, market)
    return owner is not None and owner.endswith(f"-{pid}")


async def _owned_by_all(redis: aioredis.Redis, prefix: str, pid: int) -> bool:
    return all([await _owner_pid_is(redis, prefix, m, pid) for m in MARKETS])


async def _hash_owner_pid_is(redis: aioredis.Redis, prefix: str, market: str, pid: int) -> bool:
    raw: Any = await redis.hget(scratch_hash(prefix, market), "owner")
    return raw is not None and raw.decode().endswith(f"-{pid}")


async def _missing(redis: aioredis.Redis, key: str) -> bool:
    return not await redis.exists(key)
